package render

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/stretchr/testify/assert"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testenv"
)

// Each test here names the Kuma quirk (kuma-mes-reference.md §1) it pins down.

func renderOne(t *testing.T, s *model.Service, opts Options) (*Node, *model.Service) {
	t.Helper()
	out := mustRender(t, world(s), opts)
	return onlyNode(t, out), s
}

func validationOf(up *tlsv3.UpstreamTlsContext) (*tlsv3.CertificateValidationContext, *tlsv3.SdsSecretConfig) {
	cv := up.GetCommonTlsContext().GetCombinedValidationContext()
	return cv.GetDefaultValidationContext(), cv.GetValidationContextSdsSecretConfig()
}

func hasCluster(n *Node, name string) bool {
	for _, c := range n.Clusters {
		if c.Name == name {
			return true
		}
	}
	return false
}

func TestF1SecuredWithoutTrustAnchorsFailsClosed(t *testing.T) {
	for _, mode := range []string{resource.ModeSecured, resource.ModeSkipSAN} {
		t.Run(mode, func(t *testing.T) {
			tl := tlsSecured()
			tl.Mode, tl.CA, tl.SystemCAPath = mode, nil, ""
			s := withTLS(svc("api", "http", 443, ep("api.example.com", 443)), tl)
			s.Conditions = []model.Condition{{Type: model.ConditionReady, Status: model.StatusTrue, Reason: "Ready"}}
			ok := svc("ok", "tcp", 22, ep("10.0.0.1", 22))
			out := mustRender(t, world(s, ok), Options{})
			n := onlyNode(t, out)
			if hasCluster(n, s.ClusterName()) {
				t.Fatalf("%s without any CA was rendered; it must not be (fail closed)", mode)
			}
			if !strings.Contains(s.Broken, "trust anchors") {
				t.Errorf("Broken = %q, want it to explain the missing trust anchors", s.Broken)
			}
			var cond model.Condition
			for _, c := range s.Conditions {
				if c.Type == ConditionRendered {
					cond = c
				}
			}
			if cond.Status != "False" || cond.Reason != ReasonRenderError {
				t.Errorf("Rendered condition = %+v, want False/%s", cond, ReasonRenderError)
			}
			for _, c := range s.Conditions {
				if c.Type == model.ConditionReady && c.Status != model.StatusFalse {
					t.Errorf("Ready condition %+v, want False once Render marks the service Broken", c)
				}
			}
			// Rendering the same World again keeps the reason.
			mustRender(t, world(s, ok), Options{})
			for _, c := range s.Conditions {
				if c.Type == ConditionRendered && c.Reason != ReasonRenderError {
					t.Errorf("second render: Rendered reason %q, want %q", c.Reason, ReasonRenderError)
				}
			}
			if !hasCluster(n, ok.ClusterName()) {
				t.Error("the other service was dropped too; failures must stay per service")
			}
			for _, l := range n.Listeners {
				for _, fc := range l.FilterChains {
					if fc.Name == s.ClusterName() {
						t.Errorf("listener %s still routes to the unrendered service", l.Name)
					}
				}
			}
		})
	}
}

func TestF1RenderRefusesModelThatForgotToMarkBroken(t *testing.T) {
	// Belt and braces: even if model.Build failed to mark the service Broken,
	// Secured with no CA never reaches Envoy.
	tl := tlsSecured()
	tl.CA = nil
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("10.0.0.1", 443)), tl), Options{})
	if hasCluster(n, s.ClusterName()) || s.Broken == "" {
		t.Fatalf("rendered=%v broken=%q; want not rendered and broken", hasCluster(n, s.ClusterName()), s.Broken)
	}
}

func TestF2VersionBoundsInEveryMode(t *testing.T) {
	cases := []struct {
		min, max string
		lo, hi   tlsv3.TlsParameters_TlsProtocol
	}{
		{resource.TLSAuto, resource.TLSAuto, tlsv3.TlsParameters_TLSv1_2, tlsv3.TlsParameters_TLSv1_3},
		{resource.TLS13, resource.TLS13, tlsv3.TlsParameters_TLSv1_3, tlsv3.TlsParameters_TLSv1_3},
		{resource.TLS12, resource.TLSAuto, tlsv3.TlsParameters_TLSv1_2, tlsv3.TlsParameters_TLSv1_3},
		{resource.TLSAuto, resource.TLS11, tlsv3.TlsParameters_TLSv1_1, tlsv3.TlsParameters_TLSv1_1},
	}
	modes := []string{resource.ModeSecured, resource.ModeSkipSAN, resource.ModeSkipCA, resource.ModeSkipAll}
	for _, mode := range modes {
		for _, noCA := range []bool{false, true} {
			if noCA && (mode == resource.ModeSecured || mode == resource.ModeSkipSAN) {
				continue // F1: not rendered at all
			}
			for _, c := range cases {
				tl := tlsSecured()
				tl.Mode, tl.MinVersion, tl.MaxVersion = mode, c.min, c.max
				if noCA {
					tl.CA = nil
				}
				n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
				p := upstreamTLSOf(t, n, s.ClusterName()).GetCommonTlsContext().GetTlsParams()
				if p.GetTlsMinimumProtocolVersion() != c.lo || p.GetTlsMaximumProtocolVersion() != c.hi {
					t.Errorf("mode %s noCA=%v %s..%s: got %v..%v, want %v..%v", mode, noCA, c.min, c.max,
						p.GetTlsMinimumProtocolVersion(), p.GetTlsMaximumProtocolVersion(), c.lo, c.hi)
				}
			}
		}
	}
}

func TestF2LegacyVersionsGetCBCSuitesAndBadRangeIsAnError(t *testing.T) {
	p, err := tlsParams(resource.TLS10, resource.TLS12)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.CipherSuites) == 0 {
		t.Error("min TLS 1.0 without CBC suites cannot handshake: Envoy's client defaults are AEAD only")
	}
	if p, _ := tlsParams(resource.TLS12, resource.TLS13); len(p.CipherSuites) != 0 {
		t.Error("modern ranges must keep Envoy's default suites")
	}
	if _, err := tlsParams(resource.TLS13, resource.TLS12); err == nil {
		t.Error("min above max must be an error")
	}
	if _, err := tlsParams("TLS14", resource.TLSAuto); err == nil {
		t.Error("unknown version must be an error")
	}
}

func TestF3SkipCAKeepsSANMatchersWithAcceptUntrusted(t *testing.T) {
	tl := tlsSecured()
	tl.Mode = resource.ModeSkipCA
	tl.ClientCert, tl.ClientKey = fakeClientCert, fakeClientKey
	tl.SANs = []resource.SubjectAltName{{Type: resource.SANExact, Value: "api.example.com"}}
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
	up := upstreamTLSOf(t, n, s.ClusterName())
	def, sds := validationOf(up)
	if def.GetTrustChainVerification() != tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED {
		t.Errorf("trust_chain_verification = %v, want ACCEPT_UNTRUSTED", def.GetTrustChainVerification())
	}
	if len(def.GetMatchTypedSubjectAltNames()) != 1 || def.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "api.example.com" {
		t.Errorf("SAN matchers = %v, want the user's SAN kept", def.GetMatchTypedSubjectAltNames())
	}
	// Envoy refuses SAN matchers without trusted_ca: the CA secret must exist.
	if sds.GetName() == "" || secretByName(n, sds.GetName()).GetValidationContext().GetTrustedCa() == nil {
		t.Error("SkipCA with SAN matchers needs the trusted_ca secret")
	}
	if len(up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) != 1 {
		t.Error("SkipCA dropped the client certificate")
	}
}

func TestF3SkipCAWithSystemCAUsesTheBundle(t *testing.T) {
	tl := tlsSecured()
	tl.Mode, tl.CA, tl.SystemCAPath = resource.ModeSkipCA, nil, systemCAPath
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
	_, sds := validationOf(upstreamTLSOf(t, n, s.ClusterName()))
	if got := secretByName(n, sds.GetName()).GetValidationContext().GetTrustedCa().GetFilename(); got != systemCAPath {
		t.Errorf("trusted_ca filename = %q, want %q", got, systemCAPath)
	}
}

func TestF4TypedSANMatchers(t *testing.T) {
	tl := tlsSecured()
	tl.SANs = []resource.SubjectAltName{
		{Type: resource.SANExact, Value: "spiffe://example.org/ns/a/sa/b"},
		{Type: resource.SANExact, Value: "192.0.2.7"},
		{Type: resource.SANExact, Value: "2001:db8::7"},
		{Type: resource.SANExact, Value: "*.example.com"},
		{Type: resource.SANPrefix, Value: "https://idp.example.com/"},
	}
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
	def, _ := validationOf(upstreamTLSOf(t, n, s.ClusterName()))
	want := []struct {
		typ    tlsv3.SubjectAltNameMatcher_SanType
		exact  string
		prefix string
	}{
		{tlsv3.SubjectAltNameMatcher_URI, "spiffe://example.org/ns/a/sa/b", ""},
		{tlsv3.SubjectAltNameMatcher_IP_ADDRESS, "192.0.2.7", ""},
		{tlsv3.SubjectAltNameMatcher_IP_ADDRESS, "2001:db8::7", ""},
		{tlsv3.SubjectAltNameMatcher_DNS, "*.example.com", ""},
		{tlsv3.SubjectAltNameMatcher_URI, "", "https://idp.example.com/"},
	}
	got := def.GetMatchTypedSubjectAltNames()
	if len(got) != len(want) {
		t.Fatalf("got %d matchers, want one per value (%d): %v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].SanType != w.typ || got[i].GetMatcher().GetExact() != w.exact || got[i].GetMatcher().GetPrefix() != w.prefix {
			t.Errorf("matcher %d = %v, want %v exact=%q prefix=%q", i, got[i], w.typ, w.exact, w.prefix)
		}
	}
}

func TestF5PerEndpointSNI(t *testing.T) {
	// No serverName: each endpoint gets its own name as SNI (auto_host_sni from
	// Endpoint.hostname), not endpoints[0]'s.
	s := withTLS(svc("multi", "http", 443, ep("a.example.com", 443), ep("b.example.net", 443)), tlsSecured())
	n, _ := renderOne(t, s, Options{})
	up := upstreamTLSOf(t, n, s.ClusterName())
	if !up.AutoHostSni || up.Sni != "" {
		t.Errorf("auto_host_sni=%v sni=%q, want per-host SNI and no static sni", up.AutoHostSni, up.Sni)
	}
	if !up.AutoSniSanValidation {
		t.Error("implicit SAN check should follow the SNI actually sent (auto_sni_san_validation)")
	}
	var hosts []string
	for _, c := range n.Clusters {
		if c.Name != s.ClusterName() {
			continue
		}
		for _, l := range c.LoadAssignment.Endpoints {
			for _, e := range l.LbEndpoints {
				hosts = append(hosts, e.GetEndpoint().GetHostname())
			}
		}
	}
	if strings.Join(hosts, ",") != "a.example.com,b.example.net" {
		t.Errorf("endpoint hostnames = %v, want each endpoint's own name", hosts)
	}

	// With serverName: static sni, no auto_host_sni (the host name would win).
	tl := tlsSecured()
	tl.ServerName = "api.example.com"
	n, s = renderOne(t, withTLS(svc("one", "http", 443, ep("a.example.com", 443), ep("b.example.net", 443)), tl), Options{})
	up = upstreamTLSOf(t, n, s.ClusterName())
	if up.Sni != "api.example.com" || up.AutoHostSni {
		t.Errorf("sni=%q auto_host_sni=%v, want serverName as static sni only", up.Sni, up.AutoHostSni)
	}
}

func TestF6ALPNPerProtocol(t *testing.T) {
	for proto, want := range map[string]string{"grpc": "h2", "http2": "h2", "http": "http/1.1", "tcp": ""} {
		n, s := renderOne(t, withTLS(svc("x", proto, 443, ep("x.example.com", 443)), tlsSecured()), Options{})
		got := strings.Join(upstreamTLSOf(t, n, s.ClusterName()).GetCommonTlsContext().GetAlpnProtocols(), ",")
		if got != want {
			t.Errorf("%s: ALPN %q, want %q", proto, got, want)
		}
	}
}

func TestF7MaterialTravelsBySDSNotInTheCluster(t *testing.T) {
	tl := tlsSecured()
	tl.ClientCert, tl.ClientKey = fakeClientCert, fakeClientKey
	s := withTLS(svc("mtls", "tcp", 443, ep("api.example.com", 443)), tl)
	for _, opts := range []Options{{}, {SecretsVia: SecretsFile, SecretsDir: "/run/meshext/secrets"}} {
		n, _ := renderOne(t, s, opts)
		for _, c := range n.Clusters {
			b, err := proto.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range [][]byte{fakeCA, fakeClientCert, fakeClientKey} {
				if bytes.Contains(b, m) {
					t.Errorf("cluster %s inlines PEM material; it must reference SDS secrets", c.Name)
				}
			}
		}
		up := upstreamTLSOf(t, n, s.ClusterName())
		refs := []*tlsv3.SdsSecretConfig{up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0]}
		_, ca := validationOf(up)
		refs = append(refs, ca)
		wantNames := []string{names.ClientSecret(s.ClusterName()), names.CASecret(fakeCA)}
		for i, r := range refs {
			if r.GetName() != wantNames[i] || secretByName(n, r.GetName()) == nil {
				t.Errorf("SDS ref %q, want %q with a matching secret", r.GetName(), wantNames[i])
			}
			switch opts.SecretsVia {
			case SecretsFile:
				if got := r.GetSdsConfig().GetPathConfigSource().GetPath(); got != "/run/meshext/secrets/"+wantNames[i]+".json" {
					t.Errorf("file SDS path %q", got)
				}
			default:
				if r.GetSdsConfig().GetAds() == nil {
					t.Errorf("SDS ref %s not over ADS", r.GetName())
				}
			}
		}
		if got := secretByName(n, names.ClientSecret(s.ClusterName())).GetTlsCertificate().GetPrivateKey().GetInlineBytes(); !bytes.Equal(got, fakeClientKey) {
			t.Error("client key secret does not hold the key")
		}
	}
}

func TestF7RotatingAClientCertificateChangesOnlyTheSecret(t *testing.T) {
	render := func(cert []byte) (*clusterv3.Cluster, *tlsv3.Secret, string) {
		tl := tlsSecured()
		tl.ClientCert, tl.ClientKey = cert, fakeClientKey
		n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
		for _, c := range n.Clusters {
			if c.Name == s.ClusterName() {
				return c, secretByName(n, names.ClientSecret(s.ClusterName())), version(t, n)
			}
		}
		t.Fatal("no cluster")
		return nil, nil, ""
	}
	c1, s1, v1 := render(fakeClientCert)
	c2, s2, v2 := render([]byte("-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n"))
	if !proto.Equal(c1, c2) {
		t.Error("rotating the client certificate changed the cluster; it must change only the SDS secret")
	}
	if proto.Equal(s1, s2) {
		t.Error("rotating the client certificate did not change the secret")
	}
	if v1 == v2 {
		t.Error("node version did not change with the secret")
	}
}

// A CA bundle is one secret named by its content, shared by every service
// that trusts it; editing one service's caCert moves only that cluster to
// the new bundle's secret.
func TestF7CABundlesAreSharedByContent(t *testing.T) {
	rotated := []byte("-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n")
	mk := func(name string, ca []byte) *model.Service {
		tl := tlsSecured()
		tl.CA = ca
		return withTLS(svc(name, "tcp", 443, ep(name+".example.com", 443)), tl)
	}
	caRef := func(n *Node, cluster string) string {
		_, ref := validationOf(upstreamTLSOf(t, n, cluster))
		return ref.GetName()
	}
	before := onlyNode(t, mustRender(t, world(mk("a", fakeCA), mk("b", fakeCA)), Options{}))
	after := onlyNode(t, mustRender(t, world(mk("a", fakeCA), mk("b", rotated)), Options{}))
	a, b := mk("a", nil).ClusterName(), mk("b", nil).ClusterName()
	shared := names.CASecret(fakeCA)
	assert.Equal(t, shared, caRef(before, a))
	assert.Equal(t, shared, caRef(before, b))
	count := 0
	for _, sec := range before.Secrets {
		if sec.Name == shared {
			count++
		}
	}
	assert.Equal(t, 1, count, "a shared bundle is listed once per node")
	assert.Equal(t, shared, caRef(after, a), "the service whose caCert did not change keeps its secret")
	assert.Equal(t, names.CASecret(rotated), caRef(after, b))
	assert.True(t, proto.Equal(clusterByName(before, a), clusterByName(after, a)), "editing b's caCert must not touch a's cluster")
	assert.Equal(t, rotated, secretByName(after, names.CASecret(rotated)).GetValidationContext().GetTrustedCa().GetInlineBytes())
}

// A caCert from a Secret is one SDS secret per Secret, whatever its content,
// so rotating the Secret changes that secret and no cluster.
func TestF7CAFromASecretIsOneSecretPerSecret(t *testing.T) {
	mk := func(name string, ca []byte) *model.Service {
		tl := tlsSecured()
		tl.CA, tl.CASource = ca, "secret:bank-ca"
		return withTLS(svc(name, "tcp", 443, ep(name+".example.com", 443)), tl)
	}
	rotated := []byte("-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n")
	before := onlyNode(t, mustRender(t, world(mk("a", fakeCA), mk("b", fakeCA)), Options{}))
	after := onlyNode(t, mustRender(t, world(mk("a", rotated), mk("b", rotated)), Options{}))
	name := names.SecretCASecret("default", "bank-ca")
	for _, n := range []*Node{before, after} {
		for _, svc := range []string{"a", "b"} {
			_, ref := validationOf(upstreamTLSOf(t, n, mk(svc, nil).ClusterName()))
			assert.Equal(t, name, ref.GetName())
		}
	}
	for _, svc := range []string{"a", "b"} {
		c := mk(svc, nil).ClusterName()
		assert.True(t, proto.Equal(clusterByName(before, c), clusterByName(after, c)), "rotating the Secret must not touch cluster %s", c)
	}
	assert.Equal(t, rotated, secretByName(after, name).GetValidationContext().GetTrustedCa().GetInlineBytes())
}

func TestF8SkipSANKeepsServerName(t *testing.T) {
	tl := tlsSecured()
	tl.Mode, tl.ServerName = resource.ModeSkipSAN, "internal.example.com"
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("10.0.0.1", 443), ep("lb.example.com", 443)), tl), Options{})
	up := upstreamTLSOf(t, n, s.ClusterName())
	if up.Sni != "internal.example.com" || up.AutoHostSni {
		t.Errorf("sni=%q auto_host_sni=%v, want serverName kept in SkipSAN", up.Sni, up.AutoHostSni)
	}
	def, sds := validationOf(up)
	if len(def.GetMatchTypedSubjectAltNames()) != 0 || up.AutoSniSanValidation {
		t.Error("SkipSAN must not check SANs")
	}
	if sds == nil {
		t.Error("SkipSAN must still verify the chain")
	}
}

func TestF9ExplicitSANsReplaceTheImplicitName(t *testing.T) {
	tl := tlsSecured()
	tl.ServerName = "front.example.com"
	tl.SANs = []resource.SubjectAltName{{Type: resource.SANExact, Value: "backend.example.com"}}
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("front.example.com", 443)), tl), Options{})
	up := upstreamTLSOf(t, n, s.ClusterName())
	def, _ := validationOf(up)
	var names []string
	for _, m := range def.GetMatchTypedSubjectAltNames() {
		names = append(names, m.GetMatcher().GetExact())
	}
	if strings.Join(names, ",") != "backend.example.com" || up.AutoSniSanValidation {
		t.Errorf("SAN matchers %v (auto=%v), want only the explicit SAN: explicit SANs narrow, never widen", names, up.AutoSniSanValidation)
	}
	if up.Sni != "front.example.com" {
		t.Errorf("sni %q, want serverName still sent", up.Sni)
	}

	// Without explicit SANs the implicit name is serverName, typed.
	tl = tlsSecured()
	tl.ServerName = "front.example.com"
	n, s = renderOne(t, withTLS(svc("api", "tcp", 443, ep("10.0.0.1", 443)), tl), Options{})
	def, _ = validationOf(upstreamTLSOf(t, n, s.ClusterName()))
	if m := def.GetMatchTypedSubjectAltNames(); len(m) != 1 || m[0].SanType != tlsv3.SubjectAltNameMatcher_DNS || m[0].GetMatcher().GetExact() != "front.example.com" {
		t.Errorf("implicit matcher %v, want DNS exact front.example.com", m)
	}
}

func TestSkipAllKeepsClientCertAndVerifiesNothing(t *testing.T) {
	tl := tlsSecured()
	tl.Mode = resource.ModeSkipAll
	tl.ClientCert, tl.ClientKey = fakeClientCert, fakeClientKey
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
	up := upstreamTLSOf(t, n, s.ClusterName())
	if up.GetCommonTlsContext().GetValidationContextType() != nil {
		t.Error("SkipAll must have no validation context")
	}
	if len(up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()) != 1 {
		t.Error("SkipAll dropped the client certificate (Kuma does; meshext keeps it)")
	}
	if secretByName(n, names.CASecret(tl.CA)) != nil {
		t.Error("SkipAll shipped an unused CA secret")
	}
}

func TestF11DefaultOutlierDetection(t *testing.T) {
	n, s := renderOne(t, svc("api", "tcp", 443, prio(ep("a.example.com", 443), 0), prio(ep("b.example.com", 443), 1)), Options{})
	for _, c := range n.Clusters {
		if c.Name == s.ClusterName() {
			od := c.GetOutlierDetection()
			if od.GetConsecutive_5Xx().GetValue() == 0 || od.GetMaxEjectionPercent().GetValue() != 100 {
				t.Errorf("outlier detection %v, want consecutive failures ejecting up to 100%%", od)
			}
			if len(c.LoadAssignment.Endpoints) != 2 || c.LoadAssignment.Endpoints[1].Priority != 1 {
				t.Errorf("priorities not rendered: %v", c.LoadAssignment.Endpoints)
			}
			return
		}
	}
	t.Fatal("cluster missing")
}

// Outlier detection and host rewrite only where they do something: one
// endpoint has nowhere to fail over to, and Envoy rewrites the Host only
// to a DNS-name endpoint's name.
func TestNothingInTheHotPathNobodyAskedFor(t *testing.T) {
	routeOf := func(n *Node) *routev3.RouteAction {
		for _, l := range n.Listeners {
			for _, fc := range l.FilterChains {
				for _, f := range fc.Filters {
					if f.GetTypedConfig().MessageIs(&hcmv3.HttpConnectionManager{}) {
						return hcmOf(t, f).GetRouteConfig().VirtualHosts[0].Routes[0].GetRoute()
					}
				}
			}
		}
		t.Fatal("no HTTP listener")
		return nil
	}
	clusterOf := func(n *Node, s *model.Service) *clusterv3.Cluster {
		for _, c := range n.Clusters {
			if c.Name == s.ClusterName() {
				return c
			}
		}
		t.Fatal("cluster missing")
		return nil
	}
	for _, c := range []struct {
		name             string
		svc              *model.Service
		outlier, rewrite bool
	}{
		{"one IP endpoint", svc("ip", "http", 80, ep("10.0.0.1", 80)), false, false},
		{"one DNS endpoint", svc("dns", "http", 80, ep("httpbin.org", 80)), false, true},
		{"two IP endpoints", svc("ips", "http", 80, ep("10.0.0.1", 80), ep("10.0.0.2", 80)), true, false},
		{"IP and DNS endpoints", svc("mixed", "http", 80, ep("10.0.0.1", 80), prio(ep("backup.example.com", 80), 1)), true, true},
	} {
		n, s := renderOne(t, c.svc, Options{})
		if got := clusterOf(n, s).GetOutlierDetection() != nil; got != c.outlier {
			t.Errorf("%s: outlier detection %v, want %v", c.name, got, c.outlier)
		}
		if got := routeOf(n).GetAutoHostRewrite().GetValue(); got != c.rewrite {
			t.Errorf("%s: auto_host_rewrite %v, want %v", c.name, got, c.rewrite)
		}
	}
}

// Without a MeshAccessLog nothing is logged (Kuma's default), with
// Kuma's default policies applied: every seed example, every service kind.
func TestNoAccessLogWithoutMeshAccessLog(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "examples")
	var paths []string
	for _, f := range []string{"dataplane.yaml", "hostname-generator.yaml", "mes-grpc.yaml", "mes-grpcs.yaml", "mes-http.yaml", "mes-https.yaml", "mes-tcp-mtls.yaml", "mes-tcp-tls.yaml", "mes-tcp.yaml"} {
		paths = append(paths, filepath.Join(dir, f))
	}
	w := buildExamples(t, paths...)
	out := mustRender(t, w, Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"})
	for _, id := range out.NodeIDs() {
		for _, l := range out.Nodes[id].Listeners {
			if js := string(rawJSON(t, l)); strings.Contains(js, "accessLog") || strings.Contains(js, "access_log") {
				t.Errorf("node %s: listener %s logs without a MeshAccessLog", id, l.Name)
			}
		}
	}
}

func TestAllowRenegotiationAndClientCertPairing(t *testing.T) {
	tl := tlsSecured()
	tl.AllowRenegotiation = true
	n, s := renderOne(t, withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
	if !upstreamTLSOf(t, n, s.ClusterName()).AllowRenegotiation {
		t.Error("allowRenegotiation not rendered")
	}
	tl = tlsSecured()
	tl.ClientCert = fakeClientCert
	_, s = renderOne(t, withTLS(svc("half", "tcp", 443, ep("api.example.com", 443)), tl), Options{})
	if !strings.Contains(s.Broken, "together") {
		t.Errorf("client cert without key: Broken = %q, want a pairing error", s.Broken)
	}
}

func TestUnixEndpointsCannotMixWithDNS(t *testing.T) {
	_, s := renderOne(t, svc("mix", "tcp", 80, ep("unix:///run/a.sock", 0), ep("a.example.com", 80)), Options{})
	if !strings.Contains(s.Broken, "unix") {
		t.Errorf("Broken = %q, want the unix/DNS mix explained", s.Broken)
	}
}

func TestUnixOnlySecuredNeedsAName(t *testing.T) {
	_, s := renderOne(t, withTLS(svc("sock", "tcp", 80, ep("unix:///run/a.sock", 0)), tlsSecured()), Options{})
	if !strings.Contains(s.Broken, "serverName") {
		t.Errorf("Broken = %q, want a hint to set serverName", s.Broken)
	}
}

func TestBadOptionsAreErrors(t *testing.T) {
	for _, o := range []Options{
		{UpstreamDNS: "localhost:53"},
		{UpstreamDNS: "127.0.0.1"},
		{SecretsVia: "carrier-pigeon"},
		{SecretsVia: SecretsFile},
		{SecretsVia: SecretsFile, SecretsDir: "relative/dir"},
		{AccessLogFIFODir: "relative/fifos"},
	} {
		if _, err := Render(world(), o); err == nil {
			t.Errorf("Render(%+v) accepted bad options", o)
		}
	}
}

func TestRenderIsDeterministicAndIdempotent(t *testing.T) {
	mk := func() *model.World {
		return world(withTLS(svc("a", "http", 443, ep("a.example.com", 443)), tlsSecured()), svc("b", "tcp", 22, ep("10.0.0.1", 22)))
	}
	w := mk()
	o1 := mustRender(t, w, Options{})
	o2 := mustRender(t, w, Options{}) // same world again: no stacked conditions
	o3 := mustRender(t, mk(), Options{})
	if version(t, o1.Nodes["default"]) != version(t, o2.Nodes["default"]) || version(t, o1.Nodes["default"]) != version(t, o3.Nodes["default"]) {
		t.Error("versions differ between identical renders")
	}
	n := 0
	for _, c := range w.Services[0].Conditions {
		if c.Type == ConditionRendered {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d Rendered conditions after two renders, want 1", n)
	}
	o4 := mustRender(t, world(withTLS(svc("a", "http", 443, ep("a.example.com", 443)), tlsSecured()), svc("b", "tcp", 23, ep("10.0.0.1", 22))), Options{})
	if version(t, o4.Nodes["default"]) == version(t, o1.Nodes["default"]) {
		t.Error("version did not change when a port changed")
	}
}

func TestNoDataplanesGivesDefaultNodeWithTransparentListenerOnly(t *testing.T) {
	n := onlyNode(t, mustRender(t, world(svc("a", "tcp", 22, ep("10.0.0.1", 22))), Options{}))
	if n.ID != DefaultNodeID || len(n.Listeners) != 1 || n.Listeners[0].Name != TransparentListenerName {
		t.Fatalf("node %s listeners %d, want default with only the transparent listener", n.ID, len(n.Listeners))
	}
	sa := n.Listeners[0].GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != DefaultRedirectPortOutbound {
		t.Errorf("transparent listener on %s:%d, want 127.0.0.1:15001", sa.GetAddress(), sa.GetPortValue())
	}
}

func TestSecretPathIsOneSafeElement(t *testing.T) {
	for name, want := range map[string]string{
		"default_api__default_extsvc_443_ca": "/d/default_api__default_extsvc_443_ca.json",
		"a/../../etc/passwd":                 "/d/a%2F..%2F..%2Fetc%2Fpasswd.json",
		"..":                                 "/d/%2E..json",
		"ü":                                  "/d/%C3%BC.json",
		"bank/api":                           "/d/bank%2Fapi.json",
		"bank_api":                           "/d/bank_api.json",
	} {
		if got := SecretPath("/d", name); got != want {
			t.Errorf("SecretPath(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestIPv6LiteralInDNSClusterIsResolvable(t *testing.T) {
	family := func(s *model.Service) string {
		n, _ := renderOne(t, s, Options{})
		for _, c := range n.Clusters {
			if c.Name == s.ClusterName() {
				dc := &dnsv3.DnsCluster{}
				if err := c.GetClusterType().GetTypedConfig().UnmarshalTo(dc); err != nil {
					t.Fatal(err)
				}
				return dc.DnsLookupFamily.String()
			}
		}
		t.Fatal("no cluster")
		return ""
	}
	if got := family(svc("v4", "tcp", 443, ep("api.example.com", 443), ep("10.0.0.1", 443))); got != "V4_ONLY" {
		t.Errorf("IPv4 + DNS: %s, want V4_ONLY", got)
	}
	if got := family(svc("v6", "tcp", 443, ep("api.example.com", 443), ep("2001:db8::1", 443))); got != "V4_PREFERRED" {
		t.Errorf("IPv6 literal + DNS: %s, want V4_PREFERRED", got)
	}
}

func TestDiscoveryResponseJSONRoundTrips(t *testing.T) {
	n := onlyNode(t, mustRender(t, world(withTLS(svc("api", "http", 443, ep("api.example.com", 443)), tlsSecured()), svc("db", "tcp", 5432, ep("10.0.0.1", 5432))), Options{}))
	for name, enc := range map[string]func() ([]byte, error){"cds": n.CDS, "lds": n.LDS} {
		b, err := enc()
		if err != nil {
			t.Fatal(err)
		}
		dr := &discoveryv3.DiscoveryResponse{}
		if err := protojson.Unmarshal(b, dr); err != nil {
			t.Fatalf("%s: not a DiscoveryResponse: %v\n%s", name, err, b)
		}
		if dr.VersionInfo != version(t, n) {
			t.Errorf("%s: version %q, want %q", name, dr.VersionInfo, version(t, n))
		}
		var want []proto.Message
		if name == "cds" {
			for _, c := range n.Clusters {
				want = append(want, c)
			}
		} else {
			for _, l := range n.Listeners {
				want = append(want, l)
			}
		}
		if len(dr.Resources) != len(want) {
			t.Fatalf("%s: %d resources, want %d", name, len(dr.Resources), len(want))
		}
		for i, a := range dr.Resources {
			got, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want[i]) {
				t.Errorf("%s: resource %d differs after the JSON round trip", name, i)
			}
		}
	}
	if _, err := DiscoveryResponseJSON(ClusterType, "v", []proto.Message{n.Listeners[0]}); err == nil {
		t.Error("a listener in a cluster response must be an error")
	}
}

func TestOmittedMatchPortMatchesEveryPortOnTheVIP(t *testing.T) {
	// Envoy does not fall back from a destination port's chains to port-less
	// ones, so the port-less service needs a chain for every port in use.
	anyPort := svc("any", "tcp", 0, ep("10.0.0.4", 443))
	n := onlyNode(t, mustRender(t, world(anyPort, svc("web", "http", 80, ep("10.0.0.6", 80)), svc("db", "tcp", 5432, ep("10.0.0.5", 5432))), Options{}))
	var got []string
	for _, fc := range n.Listeners[0].FilterChains {
		if fc.FilterChainMatch.PrefixRanges[0].AddressPrefix != anyPort.VIP.String() {
			continue
		}
		p := "*"
		if dp := fc.FilterChainMatch.DestinationPort; dp != nil {
			p = fmt.Sprint(dp.Value)
		}
		got = append(got, p)
	}
	if strings.Join(got, ",") != "*,80,5432" {
		t.Errorf("chains for the port-less VIP on ports %v, want *,80,5432", got)
	}
}
