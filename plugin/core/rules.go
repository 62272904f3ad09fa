package core

import (
	"fmt"
	"sort"
	"strings"
)

// RuleMatches is what the rules[] policies that apply to one MES say,
// compiled for it: sni conditions are settled at compile time against the
// MES's SNI (a match naming another SNI is dropped, one naming this SNI
// keeps only its spiffeID condition), so deciding compares the source's
// SPIFFE ID only. Lists are ordered MES-targeted policies first, then by
// policy name, then as written.
type RuleMatches struct {
	Deny, AllowWithShadowDeny, Allow []IDMatch
	// Policies lists the rules policies, comma separated: the Decision.Policy
	// of a default deny.
	Policies string
}

// IDMatch matches the SPIFFE ID spiffe://<mesh>/<service> of a source:
// equal to Value, or starting with it when Prefix; Any matches every
// source of the mesh (a match with an sni condition only).
type IDMatch struct {
	Value  string
	Prefix bool
	Any    bool
	Policy string
}

// Matches reports whether the source's SPIFFE ID matches. It does not
// allocate: the ID is compared part by part.
func (m *IDMatch) Matches(id *Identity) bool {
	if m.Any {
		return true
	}
	const scheme = "spiffe://"
	n := len(scheme) + len(id.Mesh) + 1 + len(id.Service)
	v := m.Value
	if len(v) > n || !m.Prefix && len(v) != n {
		return false
	}
	v, ok := cutPart(v, scheme)
	if ok {
		v, ok = cutPart(v, id.Mesh)
	}
	if ok {
		v, ok = cutPart(v, "/")
	}
	if ok {
		_, ok = cutPart(v, id.Service)
	}
	return ok
}

// cutPart consumes part from the front of v; a v that ends inside part
// matches as a prefix (ok, nothing left).
func cutPart(v, part string) (string, bool) {
	if len(v) <= len(part) {
		return "", v == part[:len(v)]
	}
	return v[len(part):], v[:len(part)] == part
}

func (rm *RuleMatches) decide(id *Identity) Decision {
	for i := range rm.Deny {
		if rm.Deny[i].Matches(id) {
			return Decision{Action: Deny, Policy: rm.Deny[i].Policy, Reason: ReasonPolicy}
		}
	}
	for i := range rm.AllowWithShadowDeny {
		if rm.AllowWithShadowDeny[i].Matches(id) {
			return Decision{Action: AllowWithShadowDeny, Policy: rm.AllowWithShadowDeny[i].Policy, Reason: ReasonPolicy}
		}
	}
	for i := range rm.Allow {
		if rm.Allow[i].Matches(id) {
			return Decision{Action: Allow, Policy: rm.Allow[i].Policy, Reason: ReasonPolicy}
		}
	}
	return Decision{Action: Deny, Policy: rm.Policies, Reason: ReasonRulesDefault}
}

// RuleMatches returns the compiled rules for this MES, or nil when no
// rules policy applies (from[] policies and the mesh default decide).
// Callers must not modify it.
func (e *Entry) RuleMatches() *RuleMatches { return e.matches }

// ruleMatch is one compiled match of a rules policy, before its sni
// condition is settled per MES.
type ruleMatch struct {
	sni string // "" = no sni condition
	id  IDMatch
}

// compiledRules is one rules policy.
type compiledRules struct {
	name                string
	mesOnly             bool
	deny, shadow, allow []ruleMatch
	hasRules            bool
}

func compileRules(p *Policy) (*compiledRules, error) {
	if len(p.From) > 0 {
		return nil, fmt.Errorf("from and rules are exclusive")
	}
	cr := &compiledRules{name: p.Name, mesOnly: p.TargetRef.Kind == KindMeshExternalService, hasRules: true}
	for i, r := range p.Rules {
		for _, list := range []struct {
			field string
			in    []Match
			out   *[]ruleMatch
		}{{"deny", r.Default.Deny, &cr.deny}, {"allowWithShadowDeny", r.Default.AllowWithShadowDeny, &cr.shadow}, {"allow", r.Default.Allow, &cr.allow}} {
			for j, m := range list.in {
				at := fmt.Sprintf("rules[%d].default.%s[%d]", i, list.field, j)
				rm := ruleMatch{id: IDMatch{Policy: p.Name, Any: true}}
				if m.SpiffeID == nil && m.SNI == nil {
					continue // Kuma skips an empty match
				}
				if s := m.SpiffeID; s != nil {
					switch s.Type {
					case MatchExact, MatchPrefix:
					default:
						return nil, fmt.Errorf("%s.spiffeID: type %q is not Exact or Prefix", at, s.Type)
					}
					if !strings.HasPrefix(s.Value, "spiffe://") {
						return nil, fmt.Errorf("%s.spiffeID: %q is not a SPIFFE ID", at, s.Value)
					}
					rm.id = IDMatch{Value: s.Value, Prefix: s.Type == MatchPrefix, Policy: p.Name}
				}
				if s := m.SNI; s != nil {
					if s.Type != MatchExact || s.Value == "" {
						return nil, fmt.Errorf("%s.sni: want type Exact and a value", at)
					}
					rm.sni = s.Value
				}
				*list.out = append(*list.out, rm)
			}
		}
	}
	return cr, nil
}

// matchesFor settles the sni conditions of the policies that apply to e.
func matchesFor(e *Entry, policies []*compiledRules) *RuleMatches {
	if len(policies) == 0 {
		return nil
	}
	ps := append([]*compiledRules(nil), policies...)
	sort.SliceStable(ps, func(a, b int) bool {
		if ps[a].mesOnly != ps[b].mesOnly {
			return ps[a].mesOnly
		}
		return ps[a].name < ps[b].name
	})
	rm := &RuleMatches{}
	names := make([]string, 0, len(ps))
	keep := func(out *[]IDMatch, in []ruleMatch) {
		for _, m := range in {
			if m.sni == "" || m.sni == e.sni {
				*out = append(*out, m.id)
			}
		}
	}
	for _, p := range ps {
		names = append(names, p.name)
		keep(&rm.Deny, p.deny)
		keep(&rm.AllowWithShadowDeny, p.shadow)
		keep(&rm.Allow, p.allow)
	}
	rm.Policies = strings.Join(names, ",")
	return rm
}
