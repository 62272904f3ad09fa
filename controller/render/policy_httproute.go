package render

import (
	"cmp"
	"reflect"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/plugin/egress"
)

// routeEntry is one match of a route table before it becomes Envoy's.
type routeEntry struct {
	name string
	// key names the MeshHTTPRoute whose route-level confs apply (nil: the
	// service's confs).
	key     *policy.RouteKey
	match   resource.HTTPRouteMatch
	filters []resource.HTTPRouteFilter
	// refs are the backendRefs (nil = the service itself), set by origin.
	refs   *[]resource.PolicyBackendRef
	origin policy.Origin
}

var catchAllPath = resource.HTTPPathMatch{Type: resource.PathPrefix, Value: "/"}

// routeTable is the route table of HTTP service s on node n, as Kuma builds
// an outbound's (meshhttproute's prepareRoutes, v2.14): one route per match
// of every effective MeshHTTPRoute rule, sorted by Kuma's CompareMatch,
// then the catch-all "/" unless a rule has exactly that match. Without a
// MeshHTTPRoute, an HTTP service's MeshTCPRoute (Kuma uses it only then)
// splits its requests by weight; without either, everything goes to s.
// h is the node's hop to s (direct, or via the egresses).
func (r *renderer) routeTable(n *Node, s *model.Service, eff *policy.Effective, h hop) ([]*routev3.Route, error) {
	var entries []routeEntry
	catchAll := resource.HTTPRouteMatch{Path: &catchAllPath}
	switch {
	case eff != nil && len(eff.HTTPRules) > 0:
		for _, rule := range eff.HTTPRules {
			key := policy.RouteKey{Mesh: rule.Origin.Mesh, Name: rule.Origin.Name}
			var filters []resource.HTTPRouteFilter
			if rule.Conf.Filters != nil {
				filters = *rule.Conf.Filters
			}
			o := rule.Origin
			for _, f := range rule.Fields {
				if f.Path == "backendRefs" {
					o = f.Origin
				}
			}
			for _, m := range rule.Matches {
				entries = append(entries, routeEntry{name: r.routeName(rule.Origin), key: &key, match: m, filters: filters, refs: rule.Conf.BackendRefs, origin: o})
			}
		}
		slices.SortStableFunc(entries, func(a, b routeEntry) int { return compareMatch(a.match, b.match) })
		if !slices.ContainsFunc(entries, func(e routeEntry) bool { return reflect.DeepEqual(e.match, catchAll) }) {
			entries = append(entries, routeEntry{match: catchAll})
		}
	case confOf[resource.TCPRouteConf](eff, resource.KindMeshTCPRoute) != nil:
		// Kuma turns the listener into a TCP proxy; meshext splits requests
		// instead of connections, which keeps HTTP authorization and each
		// backend's Host.
		c := eff.Confs[resource.KindMeshTCPRoute]
		entries = []routeEntry{{match: catchAll, refs: c.Value.(*resource.TCPRouteConf).BackendRefs, origin: fieldOrigin(c, "backendRefs")}}
	default:
		entries = []routeEntry{{match: catchAll}}
	}
	var out []*routev3.Route
	for _, e := range entries {
		if e.match.Path == nil {
			// Envoy needs a path matcher: no path is every path.
			e.match.Path = &catchAllPath
		}
		rs, err := r.envoyRoutes(n, s, eff, e, h)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// routeName is Kuma's name for the routes of a MeshHTTPRoute rule on a
// real resource: the route's KRI.
func (r *renderer) routeName(o policy.Origin) string {
	p := r.world.Policies.Policy(o)
	if p == nil {
		return ""
	}
	m := p.GetMeta()
	return "kri_mhttpr_" + m.Mesh + "_" + m.Labels[resource.LabelZone] + "_" + m.Labels[resource.LabelNamespace] + "_" + m.DisplayName() + "_"
}

// compareMatch is Kuma's CompareMatch (Gateway API precedence): a path
// before none, Exact before PathPrefix before RegularExpression, a longer
// prefix or expression first; then a method before none; then more
// headers, then more query parameters first.
func compareMatch(a, b resource.HTTPRouteMatch) int {
	if c := comparePath(a.Path, b.Path); c != 0 {
		return c
	}
	switch {
	case a.Method != nil && b.Method == nil:
		return -1
	case a.Method == nil && b.Method != nil:
		return 1
	}
	if c := cmp.Compare(listLen(b.Headers), listLen(a.Headers)); c != 0 {
		return c
	}
	return cmp.Compare(listLen(b.QueryParams), listLen(a.QueryParams))
}

func comparePath(a, b *resource.HTTPPathMatch) int {
	switch {
	case a != nil && b == nil:
		return -1
	case a == nil && b != nil:
		return 1
	case a == nil:
		return 0
	}
	rank := map[string]int{resource.PathExact: 0, resource.PathPrefix: 1, resource.PathRegularExpression: 2}
	if a.Type != b.Type {
		return cmp.Compare(rank[a.Type], rank[b.Type])
	}
	if a.Type == resource.PathExact {
		return 0
	}
	return cmp.Compare(len(b.Value), len(a.Value))
}

func listLen[T any](l *[]T) int {
	if l == nil {
		return 0
	}
	return len(*l)
}

// envoyMatch is one Envoy match of a MeshHTTPRoute match; prefix says it
// came from a PathPrefix (rewrites of the prefix depend on it).
type envoyMatch struct {
	m      *routev3.RouteMatch
	prefix bool
}

// envoyMatches turns a match into Envoy's. A PathPrefix other than "/"
// becomes two: the exact path and the path followed by "/", so /api
// matches /api and /api/x but not /apix (Kuma does the same rather than
// use path_separated_prefix, whose prefix rewrite doubles the slash).
func envoyMatches(m resource.HTTPRouteMatch) []envoyMatch {
	var out []envoyMatch
	switch p := m.Path; p.Type {
	case resource.PathExact:
		out = []envoyMatch{{m: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p.Value}}}}
	case resource.PathRegularExpression:
		out = []envoyMatch{{m: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: p.Value}}}}}
	default:
		if p.Value == "/" {
			out = []envoyMatch{{m: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, prefix: true}}
			break
		}
		trimmed := strings.TrimSuffix(p.Value, "/")
		out = []envoyMatch{
			{m: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: trimmed}}, prefix: true},
			{m: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: trimmed + "/"}}, prefix: true},
		}
	}
	for _, em := range out {
		if m.Method != nil {
			em.m.Headers = append(em.m.Headers, &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: exactHeader(*m.Method)})
		}
		if m.QueryParams != nil {
			seen := map[string]bool{}
			for _, q := range *m.QueryParams {
				if seen[q.Name] {
					continue // Kuma keeps the first match of a name
				}
				seen[q.Name] = true
				sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: q.Value}}
				if q.Type == resource.QueryRegularExpression {
					sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: q.Value}}}
				}
				em.m.QueryParameters = append(em.m.QueryParameters, &routev3.QueryParameterMatcher{
					Name: q.Name, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm},
				})
			}
		}
		if m.Headers != nil {
			seen := map[string]bool{}
			for _, h := range *m.Headers {
				if seen[h.Name] {
					continue
				}
				seen[h.Name] = true
				em.m.Headers = append(em.m.Headers, headerMatcher(h))
			}
		}
	}
	return out
}

func exactHeader(v string) *routev3.HeaderMatcher_StringMatch {
	return &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}
}

// headerMatcher is Kuma's HeaderMatch as Envoy's (type defaults to Exact;
// an empty Prefix is Present).
func headerMatcher(h resource.HeaderMatch) *routev3.HeaderMatcher {
	t := resource.HeaderMatchExact
	if h.Type != nil {
		t = *h.Type
	}
	hm := &routev3.HeaderMatcher{Name: h.Name}
	switch t {
	case resource.HeaderMatchPresent:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case resource.HeaderMatchAbsent:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}
	case resource.HeaderMatchRegularExpression:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}}}}
	case resource.HeaderMatchPrefix:
		if h.Value == "" {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		} else {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Value}}}
		}
	default:
		hm.HeaderMatchSpecifier = exactHeader(h.Value)
	}
	return hm
}

// envoyRoutes builds the Envoy routes of one entry: its action (a redirect,
// the backends, or a direct 403 when the node may reach none of them), its
// filters, and per route MeshTimeout, MeshRetry and hash policies.
func (r *renderer) envoyRoutes(n *Node, s *model.Service, eff *policy.Effective, e routeEntry, h hop) ([]*routev3.Route, error) {
	var redirect *resource.HTTPRequestRedirect
	var rewrite *resource.HTTPURLRewrite
	for _, f := range e.filters {
		switch f.Type {
		case resource.FilterRequestRedirect:
			redirect = f.RequestRedirect
		case resource.FilterURLRewrite:
			rewrite = f.URLRewrite
		}
	}
	if rewrite != nil && rewrite.Hostname != nil && h.viaEgress {
		r.note(n, "%s/%s: %s: URLRewrite hostname %q reaches only endpoints given by IP: the egress sends a DNS endpoint's own name as Host",
			s.Mesh, s.Name, cmp.Or(e.name, "route"), *rewrite.Hostname)
	}
	var base *routev3.RouteAction
	var direct *routev3.DirectResponseAction
	if redirect == nil {
		var err error
		if base, direct, err = r.routeAction(n, s, eff, e, h); err != nil {
			return nil, err
		}
	}
	var out []*routev3.Route
	ems := envoyMatches(e.match)
	for i, em := range ems {
		rt := &routev3.Route{Name: e.name, Match: em.m}
		switch {
		case redirect != nil:
			rt.Action = &routev3.Route_Redirect{Redirect: redirectAction(redirect, em)}
		case direct != nil:
			rt.Action = &routev3.Route_DirectResponse{DirectResponse: direct}
		default:
			// The last match takes base itself, unless a rewrite changes it.
			action := base
			if i < len(ems)-1 || rewrite != nil {
				action = proto.Clone(base).(*routev3.RouteAction)
			}
			if rewrite != nil {
				urlRewrite(rewrite, em, action)
			}
			rt.Action = &routev3.Route_Route{Route: action}
		}
		for _, f := range e.filters {
			switch {
			case f.Type == resource.FilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
				add, remove := headerModifier(f.RequestHeaderModifier)
				rt.RequestHeadersToAdd = append(rt.RequestHeadersToAdd, add...)
				rt.RequestHeadersToRemove = append(rt.RequestHeadersToRemove, remove...)
			case f.Type == resource.FilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
				add, remove := headerModifier(f.ResponseHeaderModifier)
				rt.ResponseHeadersToAdd = append(rt.ResponseHeadersToAdd, add...)
				rt.ResponseHeadersToRemove = append(rt.ResponseHeadersToRemove, remove...)
			}
		}
		if r.opts.pluginOn() {
			// The meshext filter names its cluster in this header; it
			// must not leave the mesh.
			rt.RequestHeadersToRemove = append(rt.RequestHeadersToRemove, egress.DefaultClusterHeader)
		}
		out = append(out, rt)
	}
	return out, nil
}

// routeAction sends an entry to its backends, or returns the direct
// response for an entry without any backend the node may reach. Via the
// egresses the retry policy keeps the egress failover (and there is no
// MeshLoadBalancingStrategy: the egress balances over the endpoints).
func (r *renderer) routeAction(n *Node, s *model.Service, eff *policy.Effective, e routeEntry, h hop) (*routev3.RouteAction, *routev3.DirectResponseAction, error) {
	var weighted []*routev3.WeightedCluster_ClusterWeight
	var reached []*model.Service
	deniedBody := ""
	for _, b := range r.backends(n, s, e.origin, e.refs) {
		if b.denied != "" {
			r.note(n, "%s/%s: route backend %s/%s left out: this node may not reach it", s.Mesh, s.Name, b.svc.Mesh, b.svc.Name)
			deniedBody = b.denied
			continue
		}
		if b.weight == 0 {
			continue
		}
		weighted = append(weighted, &routev3.WeightedCluster_ClusterWeight{Name: b.svc.ClusterName(), Weight: wrapperspb.UInt32(b.weight)})
		reached = append(reached, b.svc)
	}
	if len(weighted) == 0 {
		if deniedBody != "" {
			return nil, directResponse(403, deniedBody), nil
		}
		return nil, directResponse(503, "meshext: no backend of this route is available\n"), nil
	}
	a := &routev3.RouteAction{}
	if !h.viaEgress {
		// The backend's own name as Host (DNS endpoints; IP endpoints keep
		// the client's). Via the egresses their route rewrites it.
		autoHostRewrite(a, reached...)
	}
	if len(weighted) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: weighted[0].Name}
	} else {
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: weighted}}
	}
	if t := routeConfOf[resource.MeshTimeoutConf](eff, e.key, resource.KindMeshTimeout); t != nil {
		routeTimeouts(t, a)
	} else if s.Protocol == resource.ProtocolGRPC {
		// Streams may live for hours; Envoy's 15 s default would cut them.
		a.Timeout = durationpb.New(0)
	}
	if rc := routeConfOf[resource.MeshRetryConf](eff, e.key, resource.KindMeshRetry); rc != nil {
		p, err := retryPolicy(rc, s.Protocol)
		if err != nil {
			return nil, nil, err
		}
		a.RetryPolicy = p
	}
	if h.viaEgress {
		a.RetryPolicy = withEgressFailover(a.RetryPolicy)
	}
	a.HashPolicy = hashPolicies(routeConfOf[resource.MeshLoadBalancingStrategyConf](eff, e.key, resource.KindMeshLoadBalancingStrategy))
	return a, nil, nil
}

func directResponse(status uint32, body string) *routev3.DirectResponseAction {
	return &routev3.DirectResponseAction{Status: status, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}}
}

// headerModifier is Kuma's headerModifiers: set overwrites, add appends.
func headerModifier(m *resource.HTTPHeaderModifier) ([]*corev3.HeaderValueOption, []string) {
	var add []*corev3.HeaderValueOption
	if m.Set != nil {
		for _, h := range *m.Set {
			add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, Value: h.Value},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
		}
	}
	if m.Add != nil {
		for _, h := range *m.Add {
			add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, Value: h.Value},
				AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
		}
	}
	var remove []string
	if m.Remove != nil {
		remove = *m.Remove
	}
	return add, remove
}

// replaceAll rewrites a whole path.
func replaceAll(with string) *matcherv3.RegexMatchAndSubstitute {
	return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: `.*`}, Substitution: with}
}

// prefixRewrite is ReplacePrefixMatch on the "prefix/" half of a prefix
// match: the matched "prefix/" becomes "with/", so /api/x with "/v2" is
// /v2/x, as Gateway API says (Kuma passes "with" as is, giving /v2x).
func prefixRewrite(with string) string { return strings.TrimSuffix(with, "/") + "/" }

// urlRewrite is Kuma's URLRewrite filter: a Host, a full path, or the
// matched prefix (only on a PathPrefix match).
func urlRewrite(rw *resource.HTTPURLRewrite, em envoyMatch, a *routev3.RouteAction) {
	if rw.Hostname != nil {
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: *rw.Hostname}
	}
	if p := rw.Path; p != nil {
		switch {
		case p.Type == resource.RewriteReplaceFullPath && p.ReplaceFullPath != nil:
			a.RegexRewrite = replaceAll(*p.ReplaceFullPath)
		case p.Type == resource.RewriteReplacePrefixMatch && p.ReplacePrefixMatch != nil && em.prefix:
			if em.m.GetPath() != "" {
				a.RegexRewrite = replaceAll(*p.ReplacePrefixMatch)
			} else {
				a.PrefixRewrite = prefixRewrite(*p.ReplacePrefixMatch)
			}
		}
	}
}

// redirectAction is Kuma's RequestRedirect filter.
func redirectAction(rr *resource.HTTPRequestRedirect, em envoyMatch) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{}
	if rr.Hostname != nil {
		ra.HostRedirect = *rr.Hostname
	}
	if rr.Port != nil {
		ra.PortRedirect = uint32(*rr.Port)
	}
	if rr.Scheme != nil {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *rr.Scheme}
	}
	if p := rr.Path; p != nil {
		switch {
		case p.Type == resource.RewriteReplaceFullPath && p.ReplaceFullPath != nil:
			ra.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: replaceAll(*p.ReplaceFullPath)}
		case p.Type == resource.RewriteReplacePrefixMatch && p.ReplacePrefixMatch != nil && em.prefix:
			if em.m.GetPath() != "" {
				ra.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: replaceAll(*p.ReplacePrefixMatch)}
			} else {
				ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefixRewrite(*p.ReplacePrefixMatch)}
			}
		}
	}
	switch rr.StatusCode {
	case 301:
		ra.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 303:
		ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		ra.ResponseCode = routev3.RedirectAction_FOUND
	}
	return ra
}
