package validate

import (
	"fmt"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// meshTrafficPermissionRules checks Kuma 2.12's spec.rules with its
// messages (meshtrafficpermission validator.go, mesh.ValidateMatch): each
// rule has a list, each spiffeID is a valid SPIFFE ID, each sni an Exact
// DNS-1123 subdomain. meshext also refuses a spiffeID type other than
// Exact and Prefix (Kuma's CRD enum) and a match with neither field, which
// Kuma skips without a word.
func meshTrafficPermissionRules(v *violations, rules []resource.TrafficPermRule) {
	for i, rule := range rules {
		at := fmt.Sprintf("spec.rules[%d]", i)
		d := &rule.Default
		if len(d.Deny) == 0 && len(d.Allow) == 0 && len(d.AllowWithShadowDeny) == 0 {
			v.add(at, "at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined")
		}
		for _, list := range []struct {
			field   string
			matches []resource.TrafficPermMatch
		}{{"allow", d.Allow}, {"allowWithShadowDeny", d.AllowWithShadowDeny}, {"deny", d.Deny}} {
			for j, m := range list.matches {
				trafficPermMatch(v, fmt.Sprintf("%s.default.%s[%d]", at, list.field, j), m)
			}
		}
	}
}

func trafficPermMatch(v *violations, at string, m resource.TrafficPermMatch) {
	if m.SpiffeID == nil && m.SNI == nil {
		v.add(at, "at least one of 'spiffeID' or 'sni' has to be defined")
	}
	if id := m.SpiffeID; id != nil {
		if msg := spiffeIDProblem(id.Value); msg != "" {
			v.add(at+".spiffeID", "must be a valid Spiffe ID: %s", msg)
		}
		if id.Type != resource.MatchExact && id.Type != resource.MatchPrefix {
			v.add(at+".spiffeID.type", "%s", mustBeOneOf("type", resource.MatchExact, resource.MatchPrefix))
		}
	}
	if sni := m.SNI; sni != nil {
		switch sni.Type {
		case resource.MatchExact:
		case "":
			v.add(at+".sni.type", "must be set")
		default:
			v.add(at+".sni.type", "unrecognized type %q, supported values are: Exact", sni.Type)
		}
		if sni.Value == "" {
			v.add(at+".sni.value", "must be set")
		} else {
			for _, e := range dns1123Subdomain(sni.Value) {
				v.add(at+".sni.value", "%s", e)
			}
		}
	}
}

// spiffeIDProblem is why s is not a SPIFFE ID, in the words of the go-spiffe
// parser Kuma uses (spiffeid.FromString), or "".
func spiffeIDProblem(s string) string {
	const scheme = "spiffe://"
	if s == "" {
		return "cannot be empty"
	}
	if !strings.HasPrefix(s, scheme) {
		return "scheme is missing or invalid"
	}
	rest := s[len(scheme):]
	td, path, _ := strings.Cut(rest, "/")
	if td == "" {
		return "trust domain is missing"
	}
	for i := 0; i < len(td); i++ {
		if c := td[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
		}
	}
	if len(rest) == len(td) {
		return "" // no path
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		switch {
		case seg == "" && i == len(segs)-1:
			return "path cannot have a trailing slash"
		case seg == "":
			return "path cannot contain empty segments"
		case seg == "." || seg == "..":
			return "path cannot contain dot segments"
		}
		for j := 0; j < len(seg); j++ {
			if c := seg[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
			}
		}
	}
	return ""
}
