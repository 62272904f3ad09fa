// Package rbac renders the same authorization the meshext filter makes as
// native Envoy RBAC, for the places the Go filter cannot be: TCP
// MeshExternalServices (network RBAC before tcp_proxy) and HTTP listeners
// rendered with --plugin=off (HTTP RBAC). Input is a compiled core.Entry, so
// both paths share one source of truth.
package rbac

import (
	"fmt"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	mtlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/rbac/principals/mtls_authenticated/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/plugin/core"
)

// Filter names to use in listener filter chains.
const (
	NetworkFilterName = "envoy.filters.network.rbac"
	HTTPFilterName    = "envoy.filters.http.rbac"
)

// Mode says how the listener knows the source.
type Mode int

const (
	// ByListenerOwner: plaintext listener of one Dataplane; every
	// connection is the Config's Source, so the decision is fixed
	// (allow-all or deny-all).
	ByListenerOwner Mode = iota
	// ByClientCertificate: the listener requires and validates client
	// certificates against the mesh CA; sources are told apart by the URI
	// SAN spiffe://<mesh>/<service> (tags are not visible here, so
	// MeshSubset rules needing tags other than kuma.io/service never match,
	// exactly as in the filter for SPIFFE sources).
	ByClientCertificate
)

// Policy keys in the rendered RBAC (they appear in Envoy's RBAC stats and
// the rbac dynamic metadata): "mtp:<policy>" for a MeshTrafficPermission,
// "meshext:<reason>" for defaults and the mesh boundary.
func policyKey(d core.Decision) string {
	if d.Reason == core.ReasonPolicy {
		return "mtp:" + d.Policy
	}
	return "meshext:" + d.Reason.String()
}

// Rules renders the enforced rules and, when some source passes only by
// AllowWithShadowDeny, shadow rules that would deny it (nil otherwise).
func Rules(e *core.Entry, mode Mode) (enforce, shadow *rbacv3.RBAC) {
	if mode == ByListenerOwner {
		d := e.Decide()
		anyone := []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
		pol := map[string]*rbacv3.Policy{policyKey(d): policy(anyone)}
		switch d.Action {
		case core.Deny:
			return &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: pol}, nil
		case core.AllowWithShadowDeny:
			return &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: pol}, &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: pol}
		}
		return &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: pol}, nil
	}

	mesh := e.Service.Mesh
	prefix := "spiffe://" + mesh + "/"
	if rm := e.RuleMatches(); rm != nil {
		return ruleMatches(rm, prefix)
	}
	byService, others := e.SPIFFEDecisions()
	names := make([]string, 0, len(byService))
	for s := range byService {
		names = append(names, s)
	}
	sort.Strings(names)

	// group collects exact-identity principals per deciding policy.
	group := func(keep func(core.Decision) bool) map[string][]*rbacv3.Principal {
		g := map[string][]*rbacv3.Principal{}
		for _, s := range names {
			if d := byService[s]; keep(d) {
				g[policyKey(d)] = append(g[policyKey(d)], spiffe(exact(prefix+s)))
			}
		}
		return g
	}
	toPolicies := func(g map[string][]*rbacv3.Principal) map[string]*rbacv3.Policy {
		m := make(map[string]*rbacv3.Policy, len(g))
		for k, ps := range g {
			m[k] = policy(ps)
		}
		return m
	}
	// notNamed matches a mesh identity no byService entry names.
	notNamed := func() *rbacv3.Principal {
		inMesh := spiffe(prefixMatch(prefix))
		if len(names) == 0 {
			return inMesh
		}
		var named []*rbacv3.Principal
		for _, s := range names {
			named = append(named, spiffe(exact(prefix+s)))
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
			inMesh,
			{Identifier: &rbacv3.Principal_NotId{NotId: &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: named}}}}},
		}}}}
	}

	if others.Allowed() {
		// Everyone in the mesh passes unless named with Deny: a DENY list,
		// plus everything that is not a validated identity of this mesh.
		g := group(func(d core.Decision) bool { return d.Action == core.Deny })
		g[policyKey(core.Decision{Action: core.Deny, Reason: core.ReasonForeignMesh})] = []*rbacv3.Principal{
			{Identifier: &rbacv3.Principal_NotId{NotId: spiffe(prefixMatch(prefix))}},
		}
		enforce = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: toPolicies(g)}
	} else {
		// Nobody passes unless named with Allow/AllowWithShadowDeny.
		g := group(core.Decision.Allowed)
		enforce = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: toPolicies(g)}
	}

	sg := group(func(d core.Decision) bool { return d.Action == core.AllowWithShadowDeny })
	if others.Action == core.AllowWithShadowDeny {
		sg[policyKey(others)] = append(sg[policyKey(others)], notNamed())
	}
	if len(sg) > 0 {
		shadow = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: toPolicies(sg)}
	}
	return enforce, shadow
}

// Network is the envoy.filters.network.rbac config for a TCP MES filter
// chain; put it before tcp_proxy. A denied connection is closed.
func Network(e *core.Entry, mode Mode, statPrefix string) *netrbacv3.RBAC {
	enforce, shadow := Rules(e, mode)
	return &netrbacv3.RBAC{Rules: enforce, ShadowRules: shadow, StatPrefix: statPrefix, ShadowRulesStatPrefix: "shadow_"}
}

// HTTP is the envoy.filters.http.rbac config (403 on deny) for an HTTP MES
// when no Go filter runs (--plugin=off). On a listener shared by several
// MES attach HTTPPerRoute to each MES's virtual host or route instead and
// keep an empty HTTP RBAC filter in the chain.
func HTTP(e *core.Entry, mode Mode) *httprbacv3.RBAC {
	enforce, shadow := Rules(e, mode)
	return &httprbacv3.RBAC{Rules: enforce, ShadowRules: shadow, ShadowRulesStatPrefix: "shadow_"}
}

// HTTPPerRoute wraps HTTP for typed_per_filter_config[HTTPFilterName].
func HTTPPerRoute(e *core.Entry, mode Mode) *httprbacv3.RBACPerRoute {
	return &httprbacv3.RBACPerRoute{Rbac: HTTP(e, mode)}
}

func policy(principals []*rbacv3.Principal) *rbacv3.Policy {
	return &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals:  principals,
	}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefixMatch(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

// spiffe matches a validated client certificate with a URI SAN matching m
// (envoy.rbac.principals.mtls_authenticated: unlike Principal.authenticated
// it requires the certificate to have been validated).
func spiffe(m *matcherv3.StringMatcher) *rbacv3.Principal {
	cfg, err := anypb.New(&mtlsv3.Config{SanMatcher: &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: m,
	}})
	if err != nil {
		panic(fmt.Sprintf("rbac: marshal mtls_authenticated: %v", err)) // static message type, cannot fail
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Custom{Custom: &corev3.TypedExtensionConfig{
		Name: "envoy.rbac.principals.mtls_authenticated", TypedConfig: cfg,
	}}}
}

// ruleMatches renders a rules[] decision (core.RuleMatches) for validated
// client certificates: an ALLOW list whose every principal is a mesh
// identity that matches an allow or allowWithShadowDeny entry and no deny
// entry (so deny wins, and anything else is denied, as in Kuma), plus
// shadow rules that would deny the allowWithShadowDeny matches that pass.
func ruleMatches(rm *core.RuleMatches, prefix string) (enforce, shadow *rbacv3.RBAC) {
	inMesh := spiffe(prefixMatch(prefix))
	principal := func(m core.IDMatch) *rbacv3.Principal {
		switch {
		case m.Any:
			return inMesh
		case m.Prefix:
			return spiffe(prefixMatch(m.Value))
		}
		return spiffe(exact(m.Value))
	}
	var denied *rbacv3.Principal
	if len(rm.Deny) > 0 {
		var ids []*rbacv3.Principal
		for _, m := range rm.Deny {
			ids = append(ids, principal(m))
		}
		denied = &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
	}
	// byPolicy groups matches by their policy, keeping first-seen order.
	byPolicy := func(lists ...[]core.IDMatch) map[string][]*rbacv3.Principal {
		g := map[string][]*rbacv3.Principal{}
		for _, l := range lists {
			for _, m := range l {
				g["mtp:"+m.Policy] = append(g["mtp:"+m.Policy], principal(m))
			}
		}
		return g
	}
	and := func(ids ...*rbacv3.Principal) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
	}
	allowed := map[string]*rbacv3.Policy{}
	for key, ps := range byPolicy(rm.AllowWithShadowDeny, rm.Allow) {
		ids := []*rbacv3.Principal{inMesh, {Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}}
		if denied != nil {
			ids = append(ids, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: denied}})
		}
		allowed[key] = policy([]*rbacv3.Principal{and(ids...)})
	}
	enforce = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: allowed}
	if len(rm.AllowWithShadowDeny) > 0 {
		sp := map[string]*rbacv3.Policy{}
		for key, ps := range byPolicy(rm.AllowWithShadowDeny) {
			ids := []*rbacv3.Principal{inMesh, {Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}}
			if denied != nil {
				ids = append(ids, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: denied}})
			}
			sp[key] = policy([]*rbacv3.Principal{and(ids...)})
		}
		shadow = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: sp}
	}
	return enforce, shadow
}
