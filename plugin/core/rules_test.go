package core

import (
	"strings"
	"testing"
)

func rulesPolicy(name string, target TargetRef, conf RuleConf) Policy {
	return Policy{Name: name, Mesh: "default", TargetRef: target, Rules: []Rule{{Default: conf}}}
}

func spiffeExact(v string) Match  { return Match{SpiffeID: &StringMatch{Type: MatchExact, Value: v}} }
func spiffePrefix(v string) Match { return Match{SpiffeID: &StringMatch{Type: MatchPrefix, Value: v}} }
func sniExact(v string) Match     { return Match{SNI: &StringMatch{Type: MatchExact, Value: v}} }

func id(svc string) *Identity { return &Identity{Mesh: "default", Service: svc} }

func rulesTable(t *testing.T, policies ...Policy) *Table {
	t.Helper()
	a := svc("api", 443, "242.0.0.1", "api.ext")
	a.SNI = "a0000000000000001.api.443.default.mes"
	b := svc("billing", 443, "242.0.0.2", "billing.ext")
	b.SNI = "a0000000000000002.billing.443.default.mes"
	return mustCompile(t, &Config{Source: web, Services: []Service{a, b}, Policies: policies})
}

func decide(t *testing.T, tab *Table, host, src string) Decision {
	t.Helper()
	e := tab.Lookup(host)
	if e == nil {
		t.Fatalf("no entry for %s", host)
	}
	return e.DecideFor(id(src))
}

// Kuma's order: a deny match wins, then allowWithShadowDeny, then allow;
// nothing matching is a deny naming the rules policies.
func TestRulesOrderAndDefaultDeny(t *testing.T) {
	tab := rulesTable(t, rulesPolicy("allow-web", toMesh, RuleConf{
		Allow:               []Match{spiffeExact("spiffe://default/web"), spiffePrefix("spiffe://default/batch")},
		Deny:                []Match{spiffeExact("spiffe://default/batch-legacy")},
		AllowWithShadowDeny: []Match{spiffeExact("spiffe://default/batch-2")},
	}))
	for _, c := range []struct {
		src    string
		action Action
		reason Reason
		policy string
	}{
		{"web", Allow, ReasonPolicy, "allow-web"},
		{"web2", Deny, ReasonRulesDefault, "allow-web"}, // exact means exact
		{"batch", Allow, ReasonPolicy, "allow-web"},
		{"batch-1", Allow, ReasonPolicy, "allow-web"}, // prefix is a string prefix, as in Envoy
		{"batch-legacy", Deny, ReasonPolicy, "allow-web"},
		{"batch-2", AllowWithShadowDeny, ReasonPolicy, "allow-web"},
		{"other", Deny, ReasonRulesDefault, "allow-web"},
	} {
		d := decide(t, tab, "api.ext", c.src)
		if d.Action != c.action || d.Reason != c.reason || d.Policy != c.policy {
			t.Errorf("%s: got %+v, want %s/%s/%s", c.src, d, c.action, c.reason, c.policy)
		}
	}
	if d := tab.Lookup("api.ext").DecideFor(&Identity{Mesh: "other", Service: "web"}); d.Reason != ReasonForeignMesh {
		t.Errorf("foreign mesh: %+v", d)
	}
}

// An sni condition is settled per MES: it narrows a match to the MES whose
// SNI it names, and a Mesh-wide rules policy makes every MES default-deny.
func TestRulesSNI(t *testing.T) {
	tab := rulesTable(t, rulesPolicy("api-only", toMesh, RuleConf{Allow: []Match{
		sniExact("a0000000000000001.api.443.default.mes"),
		{SpiffeID: &StringMatch{Type: MatchExact, Value: "spiffe://default/web"}, SNI: &StringMatch{Type: MatchExact, Value: "a0000000000000002.billing.443.default.mes"}},
	}}))
	if d := decide(t, tab, "api.ext", "anyone"); d.Action != Allow {
		t.Errorf("api by sni: %+v", d)
	}
	if d := decide(t, tab, "billing.ext", "web"); d.Action != Allow {
		t.Errorf("billing for web: %+v", d)
	}
	if d := decide(t, tab, "billing.ext", "other"); d.Action != Deny || d.Reason != ReasonRulesDefault {
		t.Errorf("billing for other: %+v", d)
	}
	rm := tab.Lookup("billing.ext").RuleMatches()
	if rm == nil || len(rm.Allow) != 1 || rm.Allow[0].Any || rm.Allow[0].Value != "spiffe://default/web" {
		t.Errorf("billing matches: %+v", rm)
	}
}

// Rules take over an MES from from[] policies and the mesh default; an MES
// that no rules policy targets keeps them.
func TestRulesTakeOverFromPolicies(t *testing.T) {
	tab := rulesTable(t,
		mtp("from-deny", toMesh, from(KindMesh, "", nil, Deny)),
		rulesPolicy("api-rules", toMES("api"), RuleConf{Allow: []Match{spiffeExact("spiffe://default/web")}}),
	)
	if d := decide(t, tab, "api.ext", "web"); d.Action != Allow || d.Policy != "api-rules" {
		t.Errorf("api: %+v", d)
	}
	if d := decide(t, tab, "billing.ext", "web"); d.Action != Deny || d.Policy != "from-deny" {
		t.Errorf("billing: %+v", d)
	}
	if tab.Lookup("billing.ext").RuleMatches() != nil {
		t.Error("billing has rules")
	}
	// The listener owner is decided the same way.
	if d := tab.Lookup("api.ext").Decide(); d.Action != Allow || d.Policy != "api-rules" {
		t.Errorf("owner: %+v", d)
	}
}

// Several policies: MES-targeted ones first, then by name; the default
// deny names them all.
func TestRulesSeveralPolicies(t *testing.T) {
	tab := rulesTable(t,
		rulesPolicy("b-mesh", toMesh, RuleConf{Deny: []Match{spiffeExact("spiffe://default/web")}}),
		rulesPolicy("a-mesh", toMesh, RuleConf{Deny: []Match{spiffeExact("spiffe://default/web")}}),
		rulesPolicy("z-api", toMES("api"), RuleConf{Deny: []Match{spiffeExact("spiffe://default/web")}}),
	)
	if d := decide(t, tab, "api.ext", "web"); d.Policy != "z-api" {
		t.Errorf("api: %+v", d)
	}
	if d := decide(t, tab, "billing.ext", "web"); d.Policy != "a-mesh" {
		t.Errorf("billing: %+v", d)
	}
	if d := decide(t, tab, "api.ext", "other"); d.Policy != "z-api,a-mesh,b-mesh" || d.PolicyOrReason() != "z-api,a-mesh,b-mesh" {
		t.Errorf("default: %+v", d)
	}
}

func TestIDMatchPartwise(t *testing.T) {
	for _, c := range []struct {
		m    IDMatch
		src  Identity
		want bool
	}{
		{IDMatch{Value: "spiffe://default/web"}, Identity{Mesh: "default", Service: "web"}, true},
		{IDMatch{Value: "spiffe://default/we"}, Identity{Mesh: "default", Service: "web"}, false},
		{IDMatch{Value: "spiffe://default/we", Prefix: true}, Identity{Mesh: "default", Service: "web"}, true},
		{IDMatch{Value: "spiffe://default", Prefix: true}, Identity{Mesh: "default", Service: "web"}, true},
		{IDMatch{Value: "spiffe://default", Prefix: true}, Identity{Mesh: "default2", Service: "web"}, true},
		{IDMatch{Value: "spiffe://default/", Prefix: true}, Identity{Mesh: "default2", Service: "web"}, false},
		{IDMatch{Value: "spiffe://default/web/x", Prefix: true}, Identity{Mesh: "default", Service: "web"}, false},
		{IDMatch{Value: "spiffe://default/webx"}, Identity{Mesh: "default", Service: "web"}, false},
		{IDMatch{Any: true}, Identity{Mesh: "default", Service: "web"}, true},
	} {
		if got := c.m.Matches(&c.src); got != c.want {
			t.Errorf("%+v on %+v = %v", c.m, c.src, got)
		}
	}
}

func TestRulesCompileErrors(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{Name: "x", Mesh: "default", TargetRef: toMesh, From: []From{from(KindMesh, "", nil, Allow)}, Rules: []Rule{{}}}, "exclusive"},
		{rulesPolicy("x", toMesh, RuleConf{Allow: []Match{{SpiffeID: &StringMatch{Type: "Regex", Value: "spiffe://a"}}}}), "not Exact or Prefix"},
		{rulesPolicy("x", toMesh, RuleConf{Allow: []Match{spiffeExact("http://a/b")}}), "not a SPIFFE ID"},
		{rulesPolicy("x", toMesh, RuleConf{Deny: []Match{{SNI: &StringMatch{Type: MatchPrefix, Value: "a"}}}}), "want type Exact"},
		{rulesPolicy("x", TargetRef{Kind: "Dataplane"}, RuleConf{Allow: []Match{spiffeExact("spiffe://a/b")}}), "targetRef kind"},
	} {
		_, err := Compile(&Config{Source: web, Services: []Service{svc("api", 443, "", "api.ext")}, Policies: []Policy{c.p}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.p, err, c.want)
		}
	}
	// An empty match is skipped (Kuma), leaving a default deny.
	tab := rulesTable(t, rulesPolicy("empty", toMesh, RuleConf{Allow: []Match{{}}}))
	if d := decide(t, tab, "api.ext", "web"); d.Action != Deny || d.Reason != ReasonRulesDefault {
		t.Errorf("empty match: %+v", d)
	}
}

// Deciding with rules does not allocate.
func TestRulesDecideDoesNotAllocate(t *testing.T) {
	tab := rulesTable(t, rulesPolicy("p", toMesh, RuleConf{
		Deny:  []Match{spiffePrefix("spiffe://default/legacy")},
		Allow: []Match{spiffeExact("spiffe://default/web")},
	}))
	e := tab.Lookup("api.ext")
	allocs := testing.AllocsPerRun(1000, func() {
		src, _ := ParseSPIFFE("spiffe://default/other")
		_ = e.DecideFor(&src)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per decision", allocs)
	}
}
