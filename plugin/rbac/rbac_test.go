package rbac_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/envoytest"
	"github.com/meshext/meshext/plugin/rbac"
)

var source = core.Identity{Mesh: "default", Service: "web", Tags: map[string]string{"team": "a"}}

func entry(t *testing.T, forbid bool, policies ...core.Policy) *core.Entry {
	t.Helper()
	tab, err := core.Compile(&core.Config{
		Source:   source,
		Meshes:   []core.Mesh{{Name: "default", DefaultForbidMeshExternalServiceAccess: forbid}},
		Services: []core.Service{{Name: "db", Mesh: "default", Cluster: "mes_db", Protocol: "tcp", Port: 5432, Hostnames: []string{"db.ext"}}},
		Policies: policies,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab.Entries()[0]
}

func mtp(name string, kind, svc string, a core.Action) core.Policy {
	return core.Policy{Name: name, Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "db"},
		From: []core.From{{TargetRef: core.TargetRef{Kind: kind, Name: svc}, Default: core.Conf{Action: a}}}}
}

// rulesPolicy is a Kuma 2.12 rules policy for db: allow web and the
// batch-* services by prefix, deny batch-legacy.
func rulesPolicy() core.Policy {
	m := func(typ, v string) core.Match { return core.Match{SpiffeID: &core.StringMatch{Type: typ, Value: v}} }
	return core.Policy{Name: "rules", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMesh}, Rules: []core.Rule{{Default: core.RuleConf{
		Allow:               []core.Match{m(core.MatchExact, "spiffe://default/web")},
		AllowWithShadowDeny: []core.Match{m(core.MatchPrefix, "spiffe://default/batch-")},
		Deny:                []core.Match{m(core.MatchExact, "spiffe://default/batch-legacy")},
	}}}}
}

func TestRulesValidate(t *testing.T) {
	cases := map[string]*core.Entry{
		"rules":               entry(t, false, rulesPolicy()),
		"default allow":       entry(t, false),
		"default deny":        entry(t, true),
		"deny one":            entry(t, false, mtp("deny-web", core.KindMeshService, "web", core.Deny)),
		"allow one":           entry(t, true, mtp("allow-web", core.KindMeshService, "web", core.Allow)),
		"shadow mesh + named": entry(t, false, mtp("shadow", core.KindMesh, "", core.AllowWithShadowDeny), mtp("deny-api", core.KindMeshService, "api", core.Deny)),
	}
	for name, e := range cases {
		for _, mode := range []rbac.Mode{rbac.ByListenerOwner, rbac.ByClientCertificate} {
			if err := rbac.Network(e, mode, "db").ValidateAll(); err != nil {
				t.Errorf("%s mode %d: network RBAC invalid: %v", name, mode, err)
			}
			if err := rbac.HTTPPerRoute(e, mode).ValidateAll(); err != nil {
				t.Errorf("%s mode %d: HTTP RBAC invalid: %v", name, mode, err)
			}
		}
	}
}

func TestOwnerMode(t *testing.T) {
	enf, shadow := rbac.Rules(entry(t, true), rbac.ByListenerOwner)
	if enf.Action != rbacv3.RBAC_DENY || enf.Policies["meshext:mesh-default"] == nil || shadow != nil {
		t.Fatalf("forbid default: %v / %v", enf, shadow)
	}
	enf, shadow = rbac.Rules(entry(t, false, mtp("shadow", core.KindMeshService, "web", core.AllowWithShadowDeny)), rbac.ByListenerOwner)
	if enf.Action != rbacv3.RBAC_ALLOW || shadow == nil || shadow.Action != rbacv3.RBAC_DENY || shadow.Policies["mtp:shadow"] == nil {
		t.Fatalf("shadow: %v / %v", enf, shadow)
	}
}

func TestCertModeShapes(t *testing.T) {
	enf, _ := rbac.Rules(entry(t, false, mtp("deny-web", core.KindMeshService, "web", core.Deny)), rbac.ByClientCertificate)
	if enf.Action != rbacv3.RBAC_DENY || enf.Policies["mtp:deny-web"] == nil || enf.Policies["meshext:foreign-mesh"] == nil {
		t.Fatalf("%v", enf)
	}
	if js := protojson.Format(enf.Policies["mtp:deny-web"]); !strings.Contains(js, "spiffe://default/web") {
		t.Fatalf("principal lacks SPIFFE ID: %s", js)
	}
	enf, _ = rbac.Rules(entry(t, true, mtp("allow-web", core.KindMeshService, "web", core.Allow)), rbac.ByClientCertificate)
	if enf.Action != rbacv3.RBAC_ALLOW || len(enf.Policies) != 1 || enf.Policies["mtp:allow-web"] == nil {
		t.Fatalf("%v", enf)
	}
	// Default deny with no allow: an ALLOW RBAC with no policies denies everyone.
	enf, _ = rbac.Rules(entry(t, true), rbac.ByClientCertificate)
	if enf.Action != rbacv3.RBAC_ALLOW || len(enf.Policies) != 0 {
		t.Fatalf("%v", enf)
	}
}

// startEcho runs a line echo server: a client that gets its line back was
// let through.
func startEcho(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testnet.EchoServer(t)))
}

func jsonOf(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type obj = map[string]any

// tcpListener is a listener: [network RBAC, tcp_proxy -> echo], with
// downstream mTLS when tlsCtx is set.
func tcpListener(t *testing.T, name string, r proto.Message, tlsCtx obj) obj {
	rb := map[string]any{}
	if err := json.Unmarshal(jsonOf(t, r), &rb); err != nil {
		t.Fatal(err)
	}
	rb["@type"] = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
	chain := obj{"filters": []any{
		obj{"name": rbac.NetworkFilterName, "typed_config": rb},
		obj{"name": "envoy.filters.network.tcp_proxy", "typed_config": obj{
			"@type":       "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
			"stat_prefix": name, "cluster": "echo"}},
	}}
	if tlsCtx != nil {
		chain["transport_socket"] = obj{"name": "envoy.transport_sockets.tls", "typed_config": tlsCtx}
	}
	return obj{
		"name":          name,
		"address":       obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
		"filter_chains": []any{chain},
	}
}

// TestNetworkRBACInEnvoy renders RBAC for a TCP MES and runs it in the
// real Envoy: allowed connections echo, denied ones are closed.
func TestNetworkRBACInEnvoy(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	dir := t.TempDir()
	echo := startEcho(t)

	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(testpki.DNSNames("db.ext"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	caPath, certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := ca.WriteCertPEM(caPath); err != nil {
		t.Fatal(err)
	}
	if err := server.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	client := func(issuer *testpki.CA, uri string) tls.Certificate {
		l, err := issuer.Issue(testpki.URIs(uri), testpki.ClientAuth())
		if err != nil {
			t.Fatal(err)
		}
		return l.TLS
	}
	mtls := obj{
		"@type":                      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"require_client_certificate": true,
		"common_tls_context": obj{
			"tls_certificates":   []any{obj{"certificate_chain": obj{"filename": certPath}, "private_key": obj{"filename": keyPath}}},
			"validation_context": obj{"trusted_ca": obj{"filename": caPath}},
		},
	}

	denyDefault := entry(t, true)
	allowDefault := entry(t, false)
	certPolicies := entry(t, false, mtp("deny-api", core.KindMeshService, "api", core.Deny))
	certAllowList := entry(t, true, mtp("allow-web", core.KindMeshService, "web", core.Allow))
	certRules := entry(t, false, rulesPolicy())

	host, port, _ := net.SplitHostPort(echo)
	boot := obj{
		"admin": obj{"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}}},
		"static_resources": obj{
			"clusters": []any{obj{"name": "echo", "type": "STATIC", "connect_timeout": "2s",
				"load_assignment": obj{"cluster_name": "echo", "endpoints": []any{obj{"lb_endpoints": []any{
					obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": json.Number(port)}}}}}}}}}},
			"listeners": []any{
				tcpListener(t, "owner_denied", rbac.Network(denyDefault, rbac.ByListenerOwner, "owner_denied"), nil),
				tcpListener(t, "owner_allowed", rbac.Network(allowDefault, rbac.ByListenerOwner, "owner_allowed"), nil),
				tcpListener(t, "cert_denylist", rbac.Network(certPolicies, rbac.ByClientCertificate, "cert_denylist"), mtls),
				tcpListener(t, "cert_allowlist", rbac.Network(certAllowList, rbac.ByClientCertificate, "cert_allowlist"), mtls),
				tcpListener(t, "cert_rules", rbac.Network(certRules, rbac.ByClientCertificate, "cert_rules"), mtls),
			},
		},
	}
	bootJSON, err := json.Marshal(boot)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs strings.Builder
	var logMu sync.Mutex
	env, err := envoytest.StartStatic(ctx, dir, envoyBin, bootJSON,
		[]string{"owner_denied", "owner_allowed", "cert_denylist", "cert_allowlist", "cert_rules"}, lockedWriter{&logMu, &logs})
	if err != nil {
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer env.Stop()

	// roundTrip says whether a line came back (true) or the connection was
	// closed without data (false).
	roundTrip := func(c net.Conn) (bool, error) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return false, nil
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if line == "ping\n" {
			return true, nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, errors.New("timed out instead of being closed")
		}
		return false, nil
	}
	plain := func(listener string) (bool, error) {
		c, err := net.Dial("tcp", env.Listeners[listener])
		if err != nil {
			return false, err
		}
		return roundTrip(c)
	}
	withCert := func(listener string, cert *tls.Certificate) (bool, error) {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "db.ext", MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", env.Listeners[listener], cfg)
		if err != nil {
			return false, nil // handshake refused: not let through
		}
		return roundTrip(c)
	}
	web := client(ca, "spiffe://default/web")
	api := client(ca, "spiffe://default/api")
	foreign := client(ca, "spiffe://other/web")
	forged := client(otherCA, "spiffe://default/web")
	batch1 := client(ca, "spiffe://default/batch-1")
	batchLegacy := client(ca, "spiffe://default/batch-legacy")

	checks := []struct {
		name string
		run  func() (bool, error)
		want bool
	}{
		{"owner, mesh forbids by default", func() (bool, error) { return plain("owner_denied") }, false},
		{"owner, mesh allows by default", func() (bool, error) { return plain("owner_allowed") }, true},
		{"deny list: web passes", func() (bool, error) { return withCert("cert_denylist", &web) }, true},
		{"deny list: api denied by policy", func() (bool, error) { return withCert("cert_denylist", &api) }, false},
		{"deny list: other mesh denied", func() (bool, error) { return withCert("cert_denylist", &foreign) }, false},
		{"deny list: cert from another CA refused", func() (bool, error) { return withCert("cert_denylist", &forged) }, false},
		{"deny list: no client cert refused", func() (bool, error) { return withCert("cert_denylist", nil) }, false},
		{"allow list: web allowed", func() (bool, error) { return withCert("cert_allowlist", &web) }, true},
		{"allow list: api denied by default", func() (bool, error) { return withCert("cert_allowlist", &api) }, false},
		{"rules: web allowed", func() (bool, error) { return withCert("cert_rules", &web) }, true},
		{"rules: batch-1 allowed by prefix", func() (bool, error) { return withCert("cert_rules", &batch1) }, true},
		{"rules: batch-legacy denied, deny wins", func() (bool, error) { return withCert("cert_rules", &batchLegacy) }, false},
		{"rules: api denied by the rules default", func() (bool, error) { return withCert("cert_rules", &api) }, false},
		{"rules: other mesh denied", func() (bool, error) { return withCert("cert_rules", &foreign) }, false},
	}
	for _, c := range checks {
		got, err := c.run()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: let through = %v, want %v", c.name, got, c.want)
		}
	}
	stats, err := env.Stats(ctx, `rbac\.(allowed|denied)|shadow`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"owner_denied.rbac.denied: 1", "cert_denylist.rbac.denied: 2", "cert_allowlist.rbac.allowed: 1",
		"cert_rules.rbac.allowed: 2", "cert_rules.rbac.denied: 3", "cert_rules.rbac.shadow_.shadow_denied: 1"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lack %q:\n%s", want, stats)
		}
	}
	if t.Failed() {
		logMu.Lock()
		t.Logf("envoy log:\n%s", logs.String())
		logMu.Unlock()
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
