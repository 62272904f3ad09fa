package egress

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/meshext/meshext/plugin/core"
)

func config(t *testing.T, key string, policies ...core.Policy) []byte {
	t.Helper()
	b, err := json.Marshal(FilterConfig{
		Config: core.Config{
			Source:   core.Identity{Mesh: "default", Service: "web"},
			Services: []core.Service{{Name: "api", Mesh: "default", Cluster: "mes_api", Protocol: "http", Port: 443, Hostnames: []string{"api.ext"}}},
			Policies: policies,
		},
		TableKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func denyFrom(name string, from core.TargetRef) core.Policy {
	return core.Policy{Name: name, Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "api"},
		From: []core.From{{TargetRef: from, Default: core.Conf{Action: core.Deny}}}}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "empty",
		"{":                       "filter config",
		`{"source":{}}`:           "source",
		`{"bogus":1,"source":{}}`: "unknown field",
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error with %q", in, err, want)
		}
	}
}

func TestDecideVerdicts(t *testing.T) {
	c, err := Parse(config(t, "", denyFrom("deny-other", core.TargetRef{Kind: core.KindMeshService, Name: "other"})))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterHeader != DefaultClusterHeader {
		t.Fatalf("cluster header default = %q", c.ClusterHeader)
	}
	r := c.Decide("API.ext:443", "")
	if r.Verdict != Forward || r.Entry.Service.Cluster != "mes_api" || r.Source != "web" || r.ActionName() != "Allow" {
		t.Fatalf("owner: %+v", r)
	}
	r = c.Decide("api.ext", "spiffe://default/other")
	if r.Verdict != Reject || r.Source != "other" || r.Decision.Policy != "deny-other" {
		t.Fatalf("spiffe other: %+v", r)
	}
	body := r.DenyBody()
	for _, want := range []string{`"api"`, `"other"`, `MeshTrafficPermission "deny-other"`} {
		if !strings.Contains(body, want) {
			t.Errorf("deny body %q lacks %q", body, want)
		}
	}
	if r := c.Decide("api.ext", "spiffe://elsewhere/web"); r.Verdict != Reject || !strings.Contains(r.DenyBody(), "another mesh") {
		t.Fatalf("foreign mesh: %+v %q", r, r.DenyBody())
	}
	// Not a SPIFFE ID: falls back to the listener owner.
	if r := c.Decide("api.ext", "https://x/y"); r.Verdict != Forward || r.Source != "web" {
		t.Fatalf("non-spiffe SAN: %+v", r)
	}
	if r := c.Decide("nope.ext", ""); r.Verdict != NotFound || r.ActionName() != "NotFound" {
		t.Fatalf("unknown: %+v", r)
	}
	if b := NotFoundBody(strings.Repeat("x", 1000)); len(b) > 400 {
		t.Fatalf("404 body not bounded: %d bytes", len(b))
	}
}

// withOptions is raw (a FilterConfig) changed by set, parsed.
func withOptions(t *testing.T, raw []byte, set func(*FilterConfig)) (*Compiled, error) {
	t.Helper()
	var fc FilterConfig
	if err := json.Unmarshal(raw, &fc); err != nil {
		t.Fatal(err)
	}
	set(&fc)
	b, err := json.Marshal(fc)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(b)
}

func TestIgnoreClientCertificates(t *testing.T) {
	c, err := withOptions(t, config(t, "", denyFrom("deny-other", core.TargetRef{Kind: core.KindMeshService, Name: "other"})),
		func(fc *FilterConfig) { fc.IgnoreClientCertificates = true })
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Decide("api.ext", "spiffe://default/other"); r.Verdict != Forward || r.Source != "web" {
		t.Fatalf("%+v", r)
	}
}

func TestShadow(t *testing.T) {
	p := core.Policy{Name: "shadow", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMesh},
		From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.AllowWithShadowDeny}}}}
	c, err := Parse(config(t, "", p))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Decide("api.ext", "")
	if r.Verdict != Forward || !r.Shadow || !strings.Contains(r.ShadowLog(), `would be denied by MeshTrafficPermission "shadow"`) {
		t.Fatalf("%+v %q", r, r.ShadowLog())
	}
}

func TestGRPCMessage(t *testing.T) {
	if got := GRPCMessage("a \"b\" 100%\n"); got != `a "b" 100%25` {
		t.Fatalf("got %q", got)
	}
	if got := GRPCMessage("é"); got != "%C3%A9" {
		t.Fatalf("got %q", got)
	}
}

// A config update under the same TableKey must reach holders of the older
// Live at once; without a key, configs stay independent.
func TestLoadSharedSwap(t *testing.T) {
	key := t.Name()
	old, err := Load(config(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if r := old.Current().Decide("api.ext", ""); r.Verdict != Forward {
		t.Fatalf("before: %+v", r)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // concurrent readers while the swap happens (run with -race)
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			if old.Current().Decide("api.ext", "").Entry == nil {
				t.Error("reader saw no entry")
				return
			}
		}
	}()
	if _, err := Load(config(t, key, denyFrom("deny-web", core.TargetRef{Kind: core.KindMeshService, Name: "web"}))); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if r := old.Current().Decide("api.ext", ""); r.Verdict != Reject || r.Decision.Policy != "deny-web" {
		t.Fatalf("old holder after swap: %+v", r)
	}
	// A rejected config leaves the live one untouched.
	if _, err := Load([]byte(`{"source":{},"tableKey":"` + key + `"}`)); err == nil {
		t.Fatal("bad config accepted")
	}
	if r := old.Current().Decide("api.ext", ""); r.Verdict != Reject {
		t.Fatalf("after rejected load: %+v", r)
	}
	private, err := Load(config(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(config(t, "", denyFrom("deny-web", core.TargetRef{Kind: core.KindMeshService, Name: "web"}))); err != nil {
		t.Fatal(err)
	}
	if r := private.Current().Decide("api.ext", ""); r.Verdict != Forward {
		t.Fatalf("private config changed by another load: %+v", r)
	}
}

// At an egress every caller needs a verified SPIFFE identity: a request
// without one is denied, never attributed to the listener's source.
func TestRequireClientCertificate(t *testing.T) {
	c, err := withOptions(t, config(t, ""), func(fc *FilterConfig) { fc.RequireClientCertificate = true })
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"", "https://x/y", "spiffe://default"} {
		r := c.Decide("api.ext", peer)
		if r.Verdict != Reject || r.Decision.Reason != core.ReasonUnauthenticated || r.Source != "" {
			t.Fatalf("peer %q: %+v", peer, r)
		}
		if !strings.Contains(r.DenyBody(), "no verified client certificate") {
			t.Errorf("body %q", r.DenyBody())
		}
	}
	if r := c.Decide("api.ext", "spiffe://default/web"); r.Verdict != Forward || r.Source != "web" || !r.FromCertificate {
		t.Fatalf("verified: %+v", r)
	}
	_, err = withOptions(t, config(t, ""), func(fc *FilterConfig) { fc.RequireClientCertificate, fc.IgnoreClientCertificates = true, true })
	if err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Fatalf("both flags: %v", err)
	}
}

// A rules default deny names the policies in the 403.
func TestRulesDenyBody(t *testing.T) {
	p := core.Policy{Name: "only-web", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMesh},
		Rules: []core.Rule{{Default: core.RuleConf{Allow: []core.Match{{SpiffeID: &core.StringMatch{Type: core.MatchExact, Value: "spiffe://default/web"}}}}}}}
	c, err := Parse(config(t, "", p))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Decide("api.ext", "spiffe://default/batch")
	if r.Verdict != Reject || !strings.Contains(r.DenyBody(), `MeshTrafficPermission rules "only-web" (no rule allows this source)`) {
		t.Fatalf("%+v %q", r, r.DenyBody())
	}
	if r := c.Decide("api.ext", "spiffe://default/web"); r.Verdict != Forward {
		t.Fatalf("web: %+v", r)
	}
}
