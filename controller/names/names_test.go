package names_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// The pairs issue 12 found folding under the old '_' mapping, and their kin.
var adversarial = [][2]string{
	{"a/b_c", "a_b/c"}, {"web/1", "web_1"}, {"bank/api", "bank_api"},
	{"", "%"}, {"%", "%25"}, {".", "%2E"}, {"..", "_.."}, {"A", "a"}, {"a b", "a_b"},
	{"a\x00b", "a_b"}, {"é", "_"}, {"sds", "%73ds"}, {"x.json", "x%2Ejson"},
}

func TestPathElementAdversarialPairs(t *testing.T) {
	for _, p := range adversarial {
		a, b := names.PathElement(p[0]), names.PathElement(p[1])
		assert.NotEqual(t, a, b, "%q and %q fold into %q", p[0], p[1], a)
		checkSafeElement(t, p[0], a)
		checkSafeElement(t, p[1], b)
	}
	assert.Equal(t, "default.web-1", names.PathElement("default.web-1"), "valid node ids keep their name")
	assert.Equal(t, "default_api___zone-1_extsvc_443_ca", names.PathElement("default_api___zone-1_extsvc_443_ca"))
	assert.Equal(t, "a%2Fb_c", names.PathElement("a/b_c"))
	assert.Equal(t, "%2E.%2Fetc", names.PathElement("../etc"), "only a leading dot is escaped")
}

// checkSafeElement: one path element that stays in its directory, is not
// hidden, fits a file name, and decodes back to its input.
func checkSafeElement(t *testing.T, in, e string) {
	t.Helper()
	require.NotEmpty(t, e)
	assert.NotContains(t, e, "/")
	assert.NotContains(t, e, "\x00")
	assert.False(t, strings.HasPrefix(e, "."), "%q -> hidden %q", in, e)
	assert.LessOrEqual(t, len(e), names.MaxPathElement)
	assert.Empty(t, strings.Trim(e, "abcdefghijklmnopqrstuvwxyz0123456789_.-%ABCDEF"), "%q -> %q", in, e)
	if !strings.Contains(e, "%%") {
		assert.Equal(t, in, decode(t, e), "short encodings decode back")
	}
}

// decode inverts PathElement's short form: the proof that it is injective.
func decode(t *testing.T, e string) string {
	t.Helper()
	if e == "%" {
		return ""
	}
	var b []byte
	for i := 0; i < len(e); i++ {
		if e[i] != '%' {
			b = append(b, e[i])
			continue
		}
		require.Less(t, i+2, len(e), "truncated escape in %q", e)
		v, err := strconv.ParseUint(e[i+1:i+3], 16, 8)
		require.NoError(t, err, e)
		b = append(b, byte(v))
		i += 2
	}
	return string(b)
}

// TestPathElementExhaustive: every string of up to three bytes over an
// alphabet of separators, escapes, case and non-ASCII maps to its own file name.
func TestPathElementExhaustive(t *testing.T) {
	alphabet := []byte{'a', 'A', '_', '/', '.', '%', '-', '2', 'F', 0, ' ', 0xc3, 0xa9}
	seen := map[string]string{}
	var walk func(prefix []byte)
	walk = func(prefix []byte) {
		s := string(prefix)
		e := names.PathElement(s)
		if other, dup := seen[e]; dup {
			t.Fatalf("%q and %q both encode to %q", other, s, e)
		}
		seen[e] = s
		if len(prefix) == 3 {
			return
		}
		for _, c := range alphabet {
			walk(append(prefix, c))
		}
	}
	walk(nil)
	assert.Len(t, seen, 1+13+13*13+13*13*13)
	// Upper case appears only in escapes, so a case-insensitive file system
	// keeps the names apart too.
	lower := map[string]string{}
	for e, s := range seen {
		if other, dup := lower[strings.ToLower(e)]; dup {
			t.Fatalf("%q and %q differ only in case (%q)", other, s, e)
		}
		lower[strings.ToLower(e)] = s
	}
}

func TestPathElementLongNames(t *testing.T) {
	long := strings.Repeat("a", names.MaxPathElement)
	assert.Equal(t, long, names.PathElement(long), "up to the limit the name stays")
	a, b := names.PathElement(long+"b"), names.PathElement(long+"c")
	assert.NotEqual(t, a, b)
	assert.Contains(t, a, "%%")
	checkSafeElement(t, long+"b", a)
	huge := strings.Repeat("/", 1000)
	checkSafeElement(t, huge, names.PathElement(huge))
	// A node id of two maximal names still fits a file name, with ".json".
	node := names.NodeID(strings.Repeat("m", 253), strings.Repeat("n", 253))
	assert.LessOrEqual(t, len(names.PathElement(node)+".json"), 255)
}

func FuzzPathElement(f *testing.F) {
	for _, p := range adversarial {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, eb := names.PathElement(a), names.PathElement(b)
		checkSafeElement(t, a, ea)
		if a != b && ea == eb {
			t.Fatalf("%q and %q both encode to %q", a, b, ea)
		}
	})
}

func TestLegacyDestinationIsKumas(t *testing.T) {
	// Kuma's destinationname.ResolveLegacyFromKRI: mesh, name, namespace,
	// zone, short name, port, joined by '_'.
	assert.Equal(t, "default_mes-http__default_extsvc_80",
		names.LegacyDestination("default", "mes-http", "", "default", "extsvc", 80))
	m := &resource.Meta{Kind: resource.KindMeshExternalService, Name: "api", Mesh: "payments",
		Labels: map[string]string{resource.LabelDisplayName: "bank", resource.LabelNamespace: "kuma-system", resource.LabelZone: "zone-1"}}
	assert.Equal(t, "payments_bank_kuma-system_zone-1_extsvc_443", names.MeshExternalServiceCluster(m, 443))
	assert.Equal(t, "a_b___extsvc_0", names.LegacyDestination("a", "b", "", "", names.ExtSvcShortName, 0))
}

type destination struct {
	mesh, name, namespace, zone string
	port                        uint32
}

// validDestination reports whether meshext's validator admits a
// MeshExternalService with these names (so the test follows the rules as
// written, not a copy of them), and returns its cluster name.
func validDestination(d destination) (string, bool) {
	port := int64(d.port)
	labels := map[string]string{resource.LabelZone: d.zone, resource.LabelNamespace: d.namespace}
	m := &resource.MeshExternalService{
		Meta: resource.Meta{Kind: resource.KindMeshExternalService, Name: d.name, Mesh: d.mesh, Labels: labels,
			Source: resource.Source{Style: resource.StyleUniversal}},
		Spec: resource.MeshExternalServiceSpec{
			Match:     resource.Match{Port: &port, Protocol: resource.ProtocolTCP},
			Endpoints: []resource.Endpoint{{Address: "127.0.0.1", Port: 80}},
		},
	}
	if d.port == 0 {
		m.Spec.Match.Port = nil // omitted: every port
	}
	if len(validate.Object(m, nil)) > 0 {
		return "", false
	}
	return names.MeshExternalServiceCluster(&m.Meta, d.port), true
}

// splitDestination reads a cluster name back from the right, as the package
// comment argues it can be: name, namespace, zone and port hold no '_'.
func splitDestination(s string) (destination, bool) {
	parts := strings.Split(s, "_")
	n := len(parts)
	if n < 6 || parts[n-2] != names.ExtSvcShortName {
		return destination{}, false
	}
	port, err := strconv.ParseUint(parts[n-1], 10, 32)
	if err != nil {
		return destination{}, false
	}
	return destination{mesh: strings.Join(parts[:n-5], "_"), name: parts[n-5], namespace: parts[n-4], zone: parts[n-3], port: uint32(port)}, true
}

// TestDestinationInjectiveOnValidNames: over every short mesh and name made
// of the characters that matter ('_', '.', '-'), every valid service gets
// its own cluster name, and the name splits back into its parts.
func TestDestinationInjectiveOnValidNames(t *testing.T) {
	var words []string
	var gen func(string)
	gen = func(p string) {
		if p != "" {
			words = append(words, p)
		}
		if len(p) == 3 {
			return
		}
		for _, c := range []string{"a", "_", ".", "-"} {
			gen(p + c)
		}
	}
	gen("")
	seen := map[string]destination{}
	valid := 0
	for _, mesh := range words {
		for _, name := range words {
			for _, ns := range []string{"", "a", "a-b"} {
				for _, zone := range []string{"", "a", "b"} {
					for _, port := range []uint32{0, 80} {
						d := destination{mesh, name, ns, zone, port}
						c, ok := validDestination(d)
						if !ok {
							continue
						}
						valid++
						if other, dup := seen[c]; dup {
							t.Fatalf("%+v and %+v share cluster %q", other, d, c)
						}
						seen[c] = d
						back, ok := splitDestination(c)
						require.True(t, ok, c)
						require.Equal(t, d, back, c)
					}
				}
			}
		}
	}
	assert.Greater(t, valid, 5000, "the enumeration reaches many valid names")
}

func FuzzDestination(f *testing.F) {
	f.Add("a_b", "c", "", "zone", uint16(80), "a", "b_c", "", "zone", uint16(80))
	f.Add("a", "b.c", "ns", "z", uint16(0), "a.b", "c", "ns", "z", uint16(0))
	f.Add("default", "api", "", "default", uint16(443), "default", "api", "", "default", uint16(4430))
	f.Fuzz(func(t *testing.T, m1, n1, ns1, z1 string, p1 uint16, m2, n2, ns2, z2 string, p2 uint16) {
		a := destination{m1, n1, ns1, z1, uint32(p1)}
		b := destination{m2, n2, ns2, z2, uint32(p2)}
		ca, okA := validDestination(a)
		cb, okB := validDestination(b)
		if okA {
			if back, ok := splitDestination(ca); !ok || back != a {
				t.Fatalf("%q does not split back into %+v (got %+v)", ca, a, back)
			}
		}
		if okA && okB && a != b && ca == cb {
			t.Fatalf("%+v and %+v share cluster %q", a, b, ca)
		}
	})
}

func TestSecretNamesStayApart(t *testing.T) {
	c1 := names.LegacyDestination("default", "api", "", "z", names.ExtSvcShortName, 443)
	c2 := names.LegacyDestination("default", "api-ca", "", "z", names.ExtSvcShortName, 443)
	all := []string{names.CASecret([]byte("bundle one")), names.ClientSecret(c1), names.CASecret([]byte("bundle two")), names.ClientSecret(c2),
		names.SystemCASecret("/etc/ssl/certs/ca-certificates.crt"), names.SystemCASecret("/other"),
		names.SecretCASecret("default", "api-ca"), names.SecretCASecret("default_x", "y"), names.SecretCASecret("default", "x_y")}
	seen := map[string]bool{}
	for _, s := range all {
		assert.False(t, seen[s], "secret name %q twice", s)
		seen[s] = true
		assert.NotEqual(t, c1, s)
	}
}

func TestCASecretIsTheBundlesContent(t *testing.T) {
	one := []byte("-----BEGIN CERTIFICATE-----\none\n-----END CERTIFICATE-----\n")
	assert.Equal(t, names.CASecret(one), names.CASecret(append([]byte{}, one...)), "the same bundle must share one secret")
	assert.NotEqual(t, names.CASecret(one), names.CASecret(append(append([]byte{}, one...), '\n')), "a changed bundle must be a new secret")
}

func TestNodeIDFoldsAndIsKumas(t *testing.T) {
	assert.Equal(t, "default.web", names.NodeID("default", "web"))
	// Kuma's node id is not injective: Claims settles it (see claims_test.go).
	assert.Equal(t, names.NodeID("a.b", "c"), names.NodeID("a", "b.c"))
}
