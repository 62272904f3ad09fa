package validate_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.txt from the current output (review the diff before committing)")

// testZone is the local zone the golden cases run as.
const testZone = "default"

// run loads one input file as `meshext validate` would and prints what
// validation makes of it: every problem (parse and validation) as
// FILE:LINE: KIND MESH/NAME: FIELD: message, then each valid resource with
// its labels and defaulted spec, so defaults and computed labels are pinned
// by the golden files too.
func run(t *testing.T, input string) (out string, problems, valids int) {
	t.Helper()
	set, loadErrs, err := resource.Load([]string{input}, resource.Options{Zone: testZone})
	require.NoError(t, err)
	valid, verrs := validate.WithOptions(set, validate.Options{Zone: testZone})
	var b strings.Builder
	all := append(loadErrs, verrs...)
	for _, p := range all {
		fmt.Fprintln(&b, p.Error())
	}
	if len(all) == 0 {
		fmt.Fprintln(&b, "no violations")
	}
	for _, o := range valid.Objects() {
		m := o.GetMeta()
		labels, _ := json.Marshal(m.Labels)
		fmt.Fprintf(&b, "valid %s %s/%s (%s) labels=%s\n", m.Kind, m.Mesh, m.Name, m.Source.Style, labels)
		var spec any
		switch r := o.(type) {
		case *resource.MeshExternalService:
			spec = r.Spec
		case *resource.HostnameGenerator:
			spec = r.Spec
		case *resource.MeshTrafficPermission:
			spec = r.Spec
		case *resource.Dataplane:
			spec = r.Networking
		case *resource.Mesh:
			spec = r.Routing
			if r.MTLS != nil {
				spec = struct {
					Routing *resource.MeshRouting `json:"routing,omitempty"`
					MTLS    *resource.MeshMTLS    `json:"mtls"`
				}{r.Routing, r.MTLS}
			}
		case *resource.ZoneEgress:
			spec = r.ZoneEgressSpec
		case *resource.Secret:
			spec = r.String() // never the data itself
		case resource.Policy:
			spec = r.SpecValue()
			role, _ := resource.ComputePolicyRole(r)
			fmt.Fprintf(&b, "  role=%s\n", role)
		}
		js, err := json.Marshal(spec)
		require.NoError(t, err)
		fmt.Fprintf(&b, "  %s\n", js)
	}
	return b.String(), len(all), len(valid.Objects())
}

// TestGolden runs every testdata/<case>.input.yaml and compares with
// <case>.golden.txt. Cases named *-valid must have no violations, *-invalid
// at least one, so a regenerated golden cannot silently accept a regression.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.input.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, input := range inputs {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			got, problems, valids := run(t, input)
			switch {
			case strings.HasSuffix(name, "-valid"):
				assert.Zero(t, problems, "a -valid case has no violations:\n%s", got)
				assert.NotZero(t, valids)
			case strings.HasSuffix(name, "-invalid"):
				assert.NotZero(t, problems, "an -invalid case has violations")
			default:
				t.Fatalf("case %s: name must end in -valid or -invalid", name)
			}
			golden := filepath.Join("testdata", name+".golden.txt")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file; run go test ./controller/validate -run TestGolden -update")
			assert.Equal(t, string(want), got)
		})
	}
}

// TestEveryRuleHasAGoldenCase guards coverage: each message the validator
// can produce appears in at least one golden file.
func TestEveryRuleHasAGoldenCase(t *testing.T) {
	text := allGoldens(t)
	for _, want := range []string{
		// Kuma v2.14 MeshExternalService
		"name: must not be longer than 63 characters",
		"spec.match.type: unrecognized type 'UnknownMatchType' - only 'HostnameGenerator' is supported",
		"spec.match.port: port must be a valid (1-65535)",
		`spec.match.protocol: "protocol" must be one of ["tcp", "grpc", "http", "http2"]`,
		"spec.endpoints[1].port: port must be a valid (1-65535)",
		"spec.endpoints[3].address: address has to be a valid IP or hostname",
		`spec.tls.version.min: "min" must be one of ["TLSAuto", "TLS10", "TLS11", "TLS12", "TLS13"]`,
		`spec.tls.version.max: "max" must be one of ["TLSAuto", "TLS10", "TLS11", "TLS12", "TLS13"]`,
		"spec.tls.version.min: min version must be lower than max",
		"spec.tls.verification.serverName: must be a valid DNS name",
		`spec.tls.verification.mode: "mode" must be one of ["SkipSAN", "SkipCA", "SkipAll", "Secured"]`,
		`spec.tls.verification.subjectAltNames[0].type: "type" must be one of ["Prefix", "Exact"]`,
		"spec.tls.verification.clientKey: must be defined when clientCert is defined",
		"spec.tls.verification.clientCert: must be defined when clientKey is defined",
		"spec.extension.type: must not be empty",
		// admission and labels
		"namespace: resource type MeshExternalService can be created only in the system namespace:kuma-system",
		"namespace: resource type HostnameGenerator can be created only in the system namespace:kuma-system",
		`labels["kuma.io/mesh"]: kuma.io/mesh label must not differ from mesh set on resource`,
		`labels["kuma.io/origin"]: the origin label must be set to 'zone'`,
		`labels["kuma.io/zone"]: kuma.io/zone label should have default value`,
		// meshext additions to MeshExternalService
		"spec.endpoints[0].port: must not be defined when endpoint is a unix path",
		"address: unix socket path must be an absolute file path",
		"address: unix socket path must be at most 107 bytes long",
		"spec.endpoints[0].priority: must be between 0 and 128",
		"spec.tls.verification.caCert: must have exactly one of inline, inlineString, secret",
		"spec.tls.verification.clientKey.inline: must be valid base64",
		"spec.tls.verification.clientKey.inline: must not be empty",
		"spec.tls.verification.caCert.inlineString: must not be empty",
		"spec.tls.verification.clientCert.secret: must not be empty",
		"spec.tls.verification.subjectAltNames[0].value: must not be empty",
		// HostnameGenerator
		"spec.selector: exact one selector (meshService, meshExternalService) must be defined",
		"spec.template: must not be empty",
		"spec.template: couldn't parse template: template: :1: bad character U+005B '['",
		"spec.template: couldn't render template with stub values:",
		`spec.template: template renders to ".name.mesh" which is not a valid DNS name: a lowercase RFC 1123 subdomain must consist of`,
		"must be no more than 253 characters",
		`spec.template: couldn't parse template: template: :1:3: function "printf" is not allowed in hostname templates (allowed: label, lower, upper, trimPrefix, trimSuffix, replace, eq, ne, not, and, or)`,
		"spec.template: couldn't parse template: template: :1:3: a variable is not supported in hostname templates",
		"spec.template: couldn't parse template: template: :1:9: range is not supported in hostname templates",
		"spec.template: couldn't parse template: template: define and block actions are not supported in hostname templates",
		"error calling replace: rendering needs more than 1024 bytes (a hostname is at most 253)",
		"spec.template: couldn't parse template: template: must be at most 4096 bytes",
		// MeshTrafficPermission
		"spec.targetRef.name: must be set with kind MeshExternalService",
		"spec.targetRef.tags: cannot be set with kind MeshExternalService",
		"spec.targetRef.kind: value is not supported",
		"spec.targetRef.name: cannot be set with kind Mesh",
		"spec: at least one of 'from' or 'rules' has to be defined",
		"spec: field 'from' must be empty when 'rules' is defined",
		"spec.rules[0]: at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined",
		"spiffeID: must be a valid Spiffe ID: scheme is missing or invalid",
		"spiffeID: must be a valid Spiffe ID: path cannot have a trailing slash",
		`sni.type: unrecognized type "Prefix", supported values are: Exact`,
		"sni.value: must be set",
		"spec.targetRef.labels: either labels or name and namespace must be specified",
		// Mesh mTLS
		"mtls.backends: cannot have more than 1 backends",
		`mtls.backends[1].name: "ca-1" name is already used for another backend`,
		"mtls.backends[0].dpCert.rotation.expiration: has to be a valid format",
		"mtls.backends[1].type: could not find installed plugin for this type",
		"mtls.enabledBackend: has to be set to one of the backends in the mesh",
		"mtls: has to be set when zoneEgress enabled",
		`name must be valid dns name`,
		"conf.key: has to be defined",
		// ZoneEgress
		"networking.port: port must be in the range [1, 65535]",
		"networking.admin.port: must differ from port",
		"networking.address: must not be 0.0.0.0 or ::",
		"networking.address: address has to be valid IP address or domain name",
		"spec.from[0].targetRef.tags: cannot be set with kind MeshService",
		"spec.from[1].targetRef.tags: must be set with kind MeshSubset",
		"spec.from[1].targetRef.name: cannot be set with kind MeshSubset",
		"spec.from[2].targetRef.name: must be set with kind MeshServiceSubset",
		"spec.from[2].targetRef.tags: must be set with kind MeshServiceSubset",
		"spec.from[4].targetRef.kind: value is not supported",
		"spec.from[5].targetRef.kind: must be defined",
		`spec.from[0].default.action: "action" must be one of ["Allow", "Deny", "AllowWithShadowDeny"]`,
		"spec.from[1].default.action: must be defined",
		// Dataplane
		"networking.address: must be a valid IP address",
		"networking.address: must not be empty",
		"networking.inbound[0].port: port must be in the range from 1 to 65535",
		"networking.inbound[0].servicePort: servicePort must be in the range from 1 to 65535",
		`networking.inbound[0].tags["kuma.io/service"]: tag has to exist`,
		`networking.inbound[1].tags["kuma.io/service"]: tag value must be non-empty`,
		"networking.outbound[0].port: port must be in the range from 1 to 65535",
		"networking.outbound[1].backendRef.kind: value is not supported",
		"networking.outbound[2].backendRef.name: must be set with kind MeshExternalService",
		"networking.outbound[3].address: must be a valid IP address",
		"networking.outbound[4].backendRef: must be defined",
		"networking.outbound[2].port: port 8080 on 127.0.0.1 is already used by networking.outbound[1]",
		"networking.outbound[0].port: port 16379 on 127.0.0.1 is already used by networking.inbound[0]",
		"networking.transparentProxying.redirectPortOutbound: port must be in the range from 1 to 65535",
		"networking.admin.port: port must be in the range from 1 to 65535",
		// Secret
		"Secret default/blank: data: must not be empty",
		// names: Kuma's universal rules, the Kubernetes API server's, and
		// the labels that go into Envoy cluster names
		"name: invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
		"name: value length must less or equal 253",
		"mesh: invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols.",
		"metadata.name: a lowercase RFC 1123 subdomain must consist of",
		"metadata.namespace: a lowercase RFC 1123 label must consist of",
		`labels["kuma.io/mesh"]: invalid characters. Valid characters are`,
		`labels["kuma.io/display-name"]: a lowercase RFC 1123 subdomain must consist of`,
		`labels["k8s.kuma.io/namespace"]: a lowercase RFC 1123 label must consist of`,
		`labels["kuma.io/zone"]: a lowercase RFC 1123 label must consist of`,
		`labels["kuma.io/zone"]: must be no more than 63 characters`,
		// parse errors keep their file and line
		"testdata/yaml-syntax-invalid.input.yaml:",
		"spec.match.protocl: unknown field",
	} {
		assert.Contains(t, text, want, "no golden case shows this rule")
	}
}

// allGoldens is every golden file's text, for the coverage tests.
func allGoldens(t *testing.T) string {
	t.Helper()
	goldens, err := filepath.Glob(filepath.Join("testdata", "*.golden.txt"))
	require.NoError(t, err)
	var all strings.Builder
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		require.NoError(t, err)
		all.Write(b)
	}
	return all.String()
}

// TestFullInvalidMirrorsKuma pins Kuma v2.14's full-invalid case: 13
// violations in Kuma's order.
func TestFullInvalidMirrorsKuma(t *testing.T) {
	set, loadErrs, err := resource.Load([]string{filepath.Join("testdata", "mes-full-invalid.input.yaml")}, resource.Options{})
	require.NoError(t, err)
	require.Empty(t, loadErrs)
	valid, problems := validate.Validate(set)
	assert.Empty(t, valid.MeshExternalServices)
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.Field)
		assert.Positive(t, p.Line)
	}
	assert.Equal(t, []string{
		"spec.match.type", "spec.match.port", "spec.match.protocol",
		"spec.endpoints[0].port", "spec.endpoints[1].port", "spec.endpoints[2].port", "spec.endpoints[3].address",
		"spec.tls.version.min", "spec.tls.version.max",
		"spec.tls.verification.serverName", "spec.tls.verification.mode",
		"spec.tls.verification.subjectAltNames[0].type", "spec.tls.verification.clientKey",
	}, fields)
}

// TestExamplesValidate: every seed example validates and stays in the valid set.
func TestExamplesValidate(t *testing.T) {
	examples := filepath.Join("..", "..", "examples")
	set, loadErrs, err := resource.Load([]string{examples}, resource.Options{})
	require.NoError(t, err)
	require.Empty(t, loadErrs)
	valid, problems := validate.Validate(set)
	for _, p := range problems {
		t.Errorf("example does not validate: %s", p)
	}
	assert.Equal(t, len(set.Objects()), len(valid.Objects()))
	assert.Equal(t, set.Files, valid.Files)
	files, err := resource.ExpandPaths([]string{examples})
	require.NoError(t, err)
	assert.Len(t, set.Files, len(files), "every example file is read")
	assert.Len(t, set.Policies, len(resource.PolicyKinds), "examples/policies holds one valid policy per kind")
}

// TestBrokenResourceAffectsOnlyItself: one bad MES among good ones.
func TestBrokenResourceAffectsOnlyItself(t *testing.T) {
	src := `type: MeshExternalService
name: good-1
spec: {match: {port: 80}, endpoints: [{address: 1.1.1.1, port: 80}]}
---
type: MeshExternalService
name: bad
spec: {match: {port: 0}, endpoints: [{address: 1.1.1.1, port: 80}]}
---
type: MeshExternalService
name: good-2
spec: {match: {port: 81}, endpoints: [{address: 1.1.1.1, port: 80}]}
`
	objs, perrs := resource.ParseBytes("mix.yaml", []byte(src))
	require.Empty(t, perrs)
	set := &resource.Set{}
	for _, o := range objs {
		require.Nil(t, set.Add(o))
	}
	valid, problems := validate.Validate(set)
	require.Len(t, problems, 1)
	assert.Equal(t, "mix.yaml:7: MeshExternalService default/bad: spec.match.port: port must be a valid (1-65535)", problems[0].Error())
	var names []string
	for _, m := range valid.MeshExternalServices {
		names = append(names, m.Name)
	}
	assert.Equal(t, []string{"good-1", "good-2"}, names)
	// Object agrees with Validate, and a missing secret is not a validation error.
	assert.Empty(t, validate.Object(set.MeshExternalService("default", "good-1"), nil))
}

// TestObjectToleratesHandBuiltResources: zero values and nil parts never panic.
func TestObjectToleratesHandBuiltResources(t *testing.T) {
	secret := ""
	objs := []resource.Object{
		&resource.MeshExternalService{Meta: resource.Meta{Kind: resource.KindMeshExternalService, Name: "x", Mesh: "default"},
			Spec: resource.MeshExternalServiceSpec{TLS: &resource.TLS{Verification: &resource.Verification{CACert: &resource.DataSource{Secret: &secret}}}}},
		&resource.MeshExternalService{Meta: resource.Meta{Kind: resource.KindMeshExternalService, Name: "y"}, Spec: resource.MeshExternalServiceSpec{TLS: &resource.TLS{}}},
		&resource.HostnameGenerator{Meta: resource.Meta{Kind: resource.KindHostnameGenerator, Name: "h"}},
		&resource.MeshTrafficPermission{Meta: resource.Meta{Kind: resource.KindMeshTrafficPermission, Name: "p"}},
		&resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Name: "d"}},
		&resource.Mesh{Meta: resource.Meta{Kind: resource.KindMesh, Name: "m"}},
		&resource.Secret{Meta: resource.Meta{Kind: resource.KindSecret, Name: "s"}},
	}
	for _, o := range objs {
		errs := validate.Object(o, nil)
		for _, e := range errs {
			assert.NotEmpty(t, e.Message)
			_ = e.Error()
		}
	}
	valid, problems := validate.Validate(nil)
	assert.Empty(t, valid.Objects())
	assert.Empty(t, problems)
	assert.Nil(t, validate.Object(nil, nil))
}

// TestGoldenInputsAreSorted keeps golden file names discoverable per kind.
func TestGoldenInputsHaveGoldens(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "*.input.yaml"))
	goldens, _ := filepath.Glob(filepath.Join("testdata", "*.golden.txt"))
	var a, b []string
	for _, i := range inputs {
		a = append(a, strings.TrimSuffix(filepath.Base(i), ".input.yaml"))
	}
	for _, g := range goldens {
		b = append(b, strings.TrimSuffix(filepath.Base(g), ".golden.txt"))
	}
	sort.Strings(a)
	sort.Strings(b)
	assert.Equal(t, a, b, "every input has a golden file and no golden is orphaned")
}

// TestHostileNamesRejectedOnEveryKind: NUL, "../", '/', spaces, upper case
// and non-ASCII letters fail validation on every kind, in both styles, at the
// field the user wrote them in.
func TestHostileNamesRejectedOnEveryKind(t *testing.T) {
	bodies := map[resource.Kind]struct{ universal, kubernetes string }{
		resource.KindMeshExternalService: {"spec: {match: {port: 80}, endpoints: [{address: 127.0.0.1, port: 80}]}",
			"spec: {match: {port: 80}, endpoints: [{address: 127.0.0.1, port: 80}]}"},
		resource.KindHostnameGenerator: {"spec: {selector: {meshExternalService: {}}, template: '{{ .DisplayName }}.mesh'}",
			"spec: {selector: {meshExternalService: {}}, template: '{{ .DisplayName }}.mesh'}"},
		resource.KindMeshTrafficPermission: {"spec: {targetRef: {kind: Mesh}, from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}",
			"spec: {targetRef: {kind: Mesh}, from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]}"},
		resource.KindDataplane: {"networking: {address: 127.0.0.1}", "spec: {networking: {address: 127.0.0.1}}"},
		resource.KindMesh:      {"", "spec: {}"},
		resource.KindSecret:    {"data: eA==", "type: system.kuma.io/secret\ndata: {value: eA==}"},
	}
	hostile := []string{"a\\0b", "../x", "a/b", "a b", "Web", "café", "a_b", "-a", "a.", "\\n"}
	for kind, body := range bodies {
		for _, name := range hostile {
			quoted := `"` + name + `"`
			apiVersion := "kuma.io/v1alpha1"
			if kind == resource.KindSecret {
				apiVersion = "v1"
			}
			for style, doc := range map[string]string{
				"name":          fmt.Sprintf("type: %s\nname: %s\n%s\n", kind, quoted, body.universal),
				"metadata.name": fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: {name: %s, namespace: kuma-system}\n%s\n", apiVersion, kind, quoted, body.kubernetes),
			} {
				if kind != resource.KindMesh && kind != resource.KindHostnameGenerator && style == "name" {
					// and as the mesh of a mesh-scoped kind, which keeps
					// Kuma's older character set
					doc += fmt.Sprintf("---\ntype: %s\nname: ok\nmesh: %s\n%s\n", kind, quoted, body.universal)
				}
				objs, perrs := resource.ParseBytes("hostile.yaml", []byte(doc))
				require.Empty(t, perrs, doc)
				for _, o := range objs {
					m := o.GetMeta()
					errs := validate.Object(o, nil)
					field := style
					if m.Name == "ok" {
						field = "mesh"
						if name == "a_b" || name == "a." || name == "-a" {
							continue // valid in a mesh name (Kuma's backward-compatible set)
						}
					}
					var fields []string
					for _, e := range errs {
						fields = append(fields, e.Field)
					}
					assert.Contains(t, fields, field, "%s %q as %s: %v", kind, name, field, errs)
				}
			}
		}
	}
}
