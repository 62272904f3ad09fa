package validate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

var (
	pathMatchTypes  = []string{resource.PathExact, resource.PathPrefix, resource.PathRegularExpression}
	queryMatchTypes = []string{resource.QueryExact, resource.QueryRegularExpression}
	filterTypes     = []string{resource.FilterRequestHeaderModifier, resource.FilterResponseHeaderModifier,
		resource.FilterRequestRedirect, resource.FilterURLRewrite, resource.FilterRequestMirror}
	rewriteTypes      = []string{resource.RewriteReplaceFullPath, resource.RewriteReplacePrefixMatch}
	redirectSchemes   = []string{"http", "https"}
	redirectStatuses  = []int{301, 302, 303, 307, 308}
	backendRefKinds   = []string{resource.RefMeshService, resource.RefMeshServiceSubset, resource.RefMeshExternalService, resource.RefMeshMultiZoneService}
	maxHeaderModifier = 16
)

// meshHTTPRoute applies Kuma v2.14's MeshHTTPRoute validator in its order,
// with its schema's enums and limits; then meshext's refusals: routes to
// and backendRefs of kinds other than MeshExternalService, and RequestMirror
// (Kuma mirrors only to a MeshService).
func meshHTTPRoute(v *violations, r *resource.MeshHTTPRoute) {
	s := &r.Spec
	top := topRef(v, s.TargetRef, roleOpts(policyRole(v, r), topKindsGateway))
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		toRef(v, at, &to.TargetRef, toKindsUnder(top, toKindsRoutes, []string{resource.RefMesh}, resource.RefMeshGateway))
		for j := range to.Rules {
			rule := &to.Rules[j]
			rat := fmt.Sprintf("%s.rules[%d]", at, j)
			httpMatches(v, rat+".matches", rule.Matches)
			httpFilters(v, rat+".default.filters", top, rule.Default.Filters, rule.Matches)
			if rule.Default.BackendRefs != nil {
				backendRefs(v, rat+".default.backendRefs", *rule.Default.BackendRefs)
			}
		}
		if top != resource.RefMeshGateway && to.Hostnames != nil && len(*to.Hostnames) > 0 {
			v.add(at+".hostnames", msgMustNotBeDefined)
		}
	}
}

func httpMatches(v *violations, at string, matches []resource.HTTPRouteMatch) {
	if len(matches) == 0 { // Kuma's schema: minItems 1
		v.add(at, "must have at least one element")
	}
	for i, m := range matches {
		mat := fmt.Sprintf("%s[%d]", at, i)
		if p := m.Path; p != nil {
			switch p.Type {
			case resource.PathRegularExpression:
			case resource.PathPrefix:
				if p.Value != "/" {
					if strings.HasSuffix(p.Value, "/") {
						v.add(mat+".path.value", "does not need a trailing slash because only a `/`-separated prefix or an entire path is matched")
					}
					if !strings.HasPrefix(p.Value, "/") {
						v.add(mat+".path.value", "must be an absolute path")
					}
				}
			case resource.PathExact:
				if !strings.HasPrefix(p.Value, "/") {
					v.add(mat+".path.value", "must be an absolute path")
				}
			default:
				v.add(mat+".path.type", "%s", mustBeOneOf("type", pathMatchTypes...))
			}
			if p.Value == "" && p.Type == resource.PathRegularExpression {
				v.add(mat+".path.value", msgMustNotBeEmpty)
			}
		}
		if m.Method != nil && !slices.Contains(resource.HTTPMethods, *m.Method) {
			v.add(mat+".method", "%s", mustBeOneOf("method", resource.HTTPMethods...))
		}
		if m.QueryParams != nil {
			seen := map[string]bool{}
			for j, q := range *m.QueryParams {
				qat := fmt.Sprintf("%s.queryParams[%d]", mat, j)
				if seen[q.Name] {
					v.add(qat+".name", "multiple entries for name %s", q.Name)
				}
				seen[q.Name] = true
				if !slices.Contains(queryMatchTypes, q.Type) {
					v.add(qat+".type", "%s", mustBeOneOf("type", queryMatchTypes...))
				}
				if q.Name == "" {
					v.add(qat+".name", msgMustNotBeEmpty)
				}
			}
		}
		if m.Headers != nil {
			for j, h := range *m.Headers {
				hat := fmt.Sprintf("%s.headers[%d]", mat, j)
				typ := resource.HeaderMatchExact
				if h.Type != nil {
					typ = *h.Type
				}
				if (typ == resource.HeaderMatchPresent || typ == resource.HeaderMatchAbsent) && h.Value != "" {
					v.add(hat+".value", msgMustNotBeDefined)
				}
				headerMatchSchema(v, hat, h)
			}
		}
	}
}

// allPathPrefix is the opposite of Kuma's hasAnyMatchesWithoutPrefix.
func allPathPrefix(matches []resource.HTTPRouteMatch) bool {
	for _, m := range matches {
		if m.Path == nil || m.Path.Type != resource.PathPrefix {
			return false
		}
	}
	return true
}

func httpFilters(v *violations, at, top string, filters *[]resource.HTTPRouteFilter, matches []resource.HTTPRouteMatch) {
	if filters == nil {
		return
	}
	for i, f := range *filters {
		fat := fmt.Sprintf("%s[%d]", at, i)
		switch f.Type {
		case resource.FilterRequestHeaderModifier:
			if f.RequestHeaderModifier == nil {
				v.add(fat+".requestHeaderModifier", msgMustBeDefined)
			} else {
				headerModifier(v, fat+".requestHeaderModifier", f.RequestHeaderModifier)
			}
		case resource.FilterResponseHeaderModifier:
			if f.ResponseHeaderModifier == nil {
				v.add(fat+".responseHeaderModifier", msgMustBeDefined)
			} else {
				headerModifier(v, fat+".responseHeaderModifier", f.ResponseHeaderModifier)
			}
		case resource.FilterRequestRedirect:
			rr := f.RequestRedirect
			if rr == nil {
				v.add(fat+".requestRedirect", msgMustBeDefined)
				continue
			}
			rewriteTarget(v, fat+".requestRedirect", rr.Path, rr.Hostname, matches)
			if rr.Scheme != nil && !slices.Contains(redirectSchemes, *rr.Scheme) {
				v.add(fat+".requestRedirect.scheme", "%s", mustBeOneOf("scheme", redirectSchemes...))
			}
			if rr.Port != nil && !validPort(int64(*rr.Port)) {
				v.add(fat+".requestRedirect.port", messagePort)
			}
			if !slices.Contains(redirectStatuses, rr.StatusCode) {
				v.add(fat+".requestRedirect.statusCode", "must be one of 301, 302, 303, 307, 308")
			}
			pathRewrite(v, fat+".requestRedirect.path", rr.Path)
		case resource.FilterURLRewrite:
			u := f.URLRewrite
			if u == nil {
				v.add(fat+".urlRewrite", msgMustBeDefined)
				continue
			}
			rewriteTarget(v, fat+".urlRewrite", u.Path, u.Hostname, matches)
			if u.HostToBackendHostname != nil && *u.HostToBackendHostname {
				if top != resource.RefMeshGateway {
					v.add(fat+".urlRewrite.hostToBackendHostname", "can only be set with MeshGateway")
				}
				if u.Hostname != nil {
					v.add(fat+".urlRewrite.hostToBackendHostname", "cannot be set together with hostname")
				}
			}
			pathRewrite(v, fat+".urlRewrite.path", u.Path)
		case resource.FilterRequestMirror:
			m := f.RequestMirror
			if m == nil {
				v.add(fat+".requestMirror", msgMustBeDefined)
				continue
			}
			ref := m.BackendRef.TargetRef()
			if policyRef(v, fat+".requestMirror.backendRef", &ref, refOpts{kinds: []string{resource.RefMeshService, resource.RefMeshServiceSubset}}) {
				v.add(fat+".requestMirror", "meshext does not support RequestMirror: Kuma mirrors only to a MeshService, and meshext routes only to MeshExternalServices")
			}
		default:
			v.add(fat+".type", "%s", mustBeOneOf("type", filterTypes...))
		}
	}
}

// rewriteTarget is what Kuma checks in both a redirect and a rewrite: a
// prefix replacement needs prefix matches, and the hostname is a DNS name.
func rewriteTarget(v *violations, at string, path *resource.HTTPPathRewrite, hostname *string, matches []resource.HTTPRouteMatch) {
	if path != nil && path.ReplacePrefixMatch != nil && !allPathPrefix(matches) {
		v.add(at+".path.replacePrefixMatch", "can only appear if all matches match a path prefix")
	}
	preciseHostname(v, at+".hostname", hostname)
}

func headerModifier(v *violations, at string, m *resource.HTTPHeaderModifier) {
	if m.Set == nil && m.Add == nil && m.Remove == nil {
		v.add(at, "must have at least one defined: set, add, remove")
		return
	}
	seen := map[string]bool{}
	add := func(field string, i int, name string) {
		if seen[name] {
			v.add(fmt.Sprintf("%s.%s[%d].name", at, field, i), "duplicate header name")
		}
		seen[name] = true
	}
	for _, l := range []struct {
		field string
		kv    *[]resource.HeaderKeyValue
	}{{"set", m.Set}, {"add", m.Add}} {
		if l.kv == nil {
			continue
		}
		for i, kv := range *l.kv {
			add(l.field, i, kv.Name)
			headerName(v, fmt.Sprintf("%s.%s[%d].name", at, l.field, i), kv.Name)
		}
		if len(*l.kv) > maxHeaderModifier {
			v.add(at+"."+l.field, "must have at most %d items", maxHeaderModifier)
		}
	}
	if m.Remove != nil {
		for i, name := range *m.Remove {
			add("remove", i, name)
		}
		if len(*m.Remove) > maxHeaderModifier {
			v.add(at+".remove", "must have at most %d items", maxHeaderModifier)
		}
	}
}

// preciseHostname is Kuma's validatePreciseHostname.
func preciseHostname(v *violations, at string, h *string) {
	if h == nil {
		return
	}
	if _, err := netip.ParseAddr(*h); err == nil {
		v.add(at, "cannot be an IP address")
		return
	}
	for _, msg := range dns1123Subdomain(*h) {
		v.add(at, "%s", msg)
	}
}

// pathRewrite checks the rewrite type and that its value is the one set
// (meshext: the other would be silently ignored).
func pathRewrite(v *violations, at string, p *resource.HTTPPathRewrite) {
	if p == nil {
		return
	}
	switch p.Type {
	case resource.RewriteReplaceFullPath:
		if p.ReplaceFullPath == nil {
			v.add(at+".replaceFullPath", "must be set when type is %s", p.Type)
		}
		if p.ReplacePrefixMatch != nil {
			v.add(at+".replacePrefixMatch", "must not be set when type is %s", p.Type)
		}
	case resource.RewriteReplacePrefixMatch:
		if p.ReplacePrefixMatch == nil {
			v.add(at+".replacePrefixMatch", "must be set when type is %s", p.Type)
		}
		if p.ReplaceFullPath != nil {
			v.add(at+".replaceFullPath", "must not be set when type is %s", p.Type)
		}
	default:
		v.add(at+".type", "%s", mustBeOneOf("type", rewriteTypes...))
	}
}

// backendRefs is Kuma's validateBackendRefs for routes, then meshext's
// refusal of backends that are not MeshExternalServices.
func backendRefs(v *violations, at string, refs []resource.PolicyBackendRef) {
	for i := range refs {
		b := &refs[i]
		bat := fmt.Sprintf("%s[%d]", at, i)
		ref := b.TargetRef()
		ok := policyRef(v, bat, &ref, refOpts{kinds: backendRefKinds})
		if b.Kind == resource.RefMeshMultiZoneService && b.Port == nil {
			v.add(bat+".port", "must be defined with kind MeshMultiZoneService")
		}
		if !ok {
			continue
		}
		if b.Kind != resource.RefMeshExternalService {
			v.add(bat+".kind", "meshext routes only to MeshExternalServices: kind %s is not supported", b.Kind)
		} else if b.Port != nil {
			v.add(bat+".port", "is only supported when the backendRef is a MeshService")
		}
	}
}
