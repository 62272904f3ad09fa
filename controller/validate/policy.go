package validate

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"

	"github.com/meshext/meshext/controller/resource"
)

// This file holds what the targetRef policy kinds share: Kuma's targetRef
// validator (pkg/core/resources/apis/mesh ValidateTargetRef), its tag and
// name rules, and meshext's refusals of what does not shape
// MeshExternalService traffic. Each kind's own rules live in its file.

// Messages of Kuma's validators package.
const (
	msgMustBeDefined     = "must be defined"
	msgMustBeSet         = "must be set"
	msgMustNotBeSet      = "must not be set"
	msgMustNotBeDefined  = "must not be defined"
	msgMustNotBeEmpty    = "must not be empty"
	msgGreaterThanZero   = "must be greater than 0"
	msgWhenDefinedGT0    = "must be greater than zero when defined"
	msgWhenDefinedNonNeg = "must not be negative when defined"
	msgDefinedAndGT0     = "must be defined and greater than zero"
	msgPercentRange      = "must be in inclusive range [0.0, 100.0]"
	msgUintPercentRange  = "must be in inclusive range [0, 100]"
	msgValidNumber       = "string must be a valid number"
	msgValidPath         = "must be a valid path when defined"
)

var (
	// Kuma's NameCharacterSet, tag and selector character sets.
	nameCharacterSet     = regexp.MustCompile(`^[0-9a-z.\-_]*$`)
	tagNameCharacterSet  = regexp.MustCompile(`^[a-zA-Z0-9.\-_:/]*$`)
	tagValueCharacterSet = regexp.MustCompile(`^[a-zA-Z0-9.\-_:]*$`)
	selectorCharacterSet = regexp.MustCompile(`^([a-zA-Z0-9.\-_:/]*|\*)$`)
	// govalidator.IsFilePath's Unix form (meshext runs Envoy on Linux only,
	// so the Windows form Kuma also accepts is refused).
	unixPathRE = regexp.MustCompile(`^(/[^/\x00]*)+/?$`)
	// Kuma's HeaderName schema pattern.
	headerNameRE = regexp.MustCompile("^[a-z0-9!#$%&'*+\\-.^_`|~]+$")
)

var proxyTypes = []string{resource.ProxyTypeSidecar, resource.ProxyTypeGateway}

// refOpts are Kuma's ValidateTargetRefOpts.
type refOpts struct {
	kinds []string
	// kindsErr replaces "value 'X' is not supported" (Kuma's SupportedKindsError).
	kindsErr                   string
	gatewayListenerTagsAllowed bool
	// inbound is Kuma's IsInboundPolicy: the policy has from or rules
	// (which meshext refuses separately).
	inbound bool
}

// policyRef applies Kuma's ValidateTargetRef to ref at path at. It reports
// whether the kind was supported (the rest of the checks ran).
func policyRef(v *violations, at string, ref *resource.PolicyTargetRef, opts refOpts) bool {
	if ref.Kind == "" {
		v.add(at+".kind", msgMustBeDefined)
		return false
	}
	if !slices.Contains(opts.kinds, ref.Kind) {
		if opts.kindsErr != "" {
			v.add(at+".kind", "%s", opts.kindsErr)
		} else {
			v.add(at+".kind", "value '%s' is not supported", ref.Kind)
		}
		return false
	}
	notSet := func(field string, set bool) {
		if set {
			v.add(at+"."+field, "%s with kind %s", msgMustNotBeSet, ref.Kind)
		}
	}
	name := func() {
		if !nameCharacterSet.MatchString(ref.Name) {
			v.add(at+".name", "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.")
		}
	}
	ptypes := func() {
		if ref.ProxyTypes != nil && len(*ref.ProxyTypes) == 0 {
			v.add(at+".proxyTypes", "must be undefined or have at least one element")
		}
		if ref.ProxyTypes != nil {
			for i, t := range *ref.ProxyTypes {
				if !slices.Contains(proxyTypes, t) { // Kuma's schema enum
					v.add(fmt.Sprintf("%s.proxyTypes[%d]", at, i), "%s", mustBeOneOf("proxyTypes", proxyTypes...))
				}
			}
		}
	}
	hasPT := ref.ProxyTypes != nil && len(*ref.ProxyTypes) > 0
	switch ref.Kind {
	case resource.RefMesh:
		if ref.Name != "" {
			v.add(at+".name", "using name with kind %s is not yet supported", ref.Kind)
		}
		notSet("mesh", ref.Mesh != "")
		notSet("tags", len(ref.Tags) > 0)
		notSet("labels", len(ref.Labels) > 0)
		notSet("namespace", ref.Namespace != "")
		notSet("sectionName", ref.SectionName != "")
		ptypes()
	case resource.RefDataplane:
		notSet("tags", len(ref.Tags) > 0)
		notSet("mesh", ref.Mesh != "")
		notSet("proxyTypes", hasPT)
		if len(ref.Labels) > 0 && (ref.Name != "" || ref.Namespace != "") {
			v.add(at+".labels", "either labels or name and namespace must be specified")
		}
		if !opts.inbound && ref.SectionName != "" {
			v.add(at+".sectionName", "can only be used with inbound policies")
		}
	case resource.RefMeshSubset:
		notSet("name", ref.Name != "")
		notSet("mesh", ref.Mesh != "")
		tags(v, at+".tags", ref.Tags, tagValueCharacterSet, "tag value must consist of alphanumeric characters, dots, dashes and underscores")
		notSet("labels", len(ref.Labels) > 0)
		notSet("namespace", ref.Namespace != "")
		notSet("sectionName", ref.SectionName != "")
		ptypes()
	case resource.RefMeshService, resource.RefMeshHTTPRoute:
		name()
		notSet("mesh", ref.Mesh != "")
		notSet("tags", len(ref.Tags) > 0)
		notSet("proxyTypes", hasPT)
		if ref.Kind == resource.RefMeshHTTPRoute {
			notSet("sectionName", ref.SectionName != "")
		}
		if len(ref.Labels) == 0 && ref.Name == "" {
			v.add(at, "name or labels must be set when kind is %s", ref.Kind)
		}
		if len(ref.Labels) > 0 && (ref.Name != "" || ref.Namespace != "") {
			v.add(at+".labels", "either labels or name and namespace must be specified")
		}
	case resource.RefMeshServiceSubset, resource.RefMeshGateway:
		if ref.Name == "" {
			v.add(at+".name", "%s when kind is %s", msgMustBeSet, ref.Kind)
		}
		name()
		notSet("mesh", ref.Mesh != "")
		notSet("proxyTypes", hasPT)
		tags(v, at+".tags", ref.Tags, selectorCharacterSet, `tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be "*"`)
		if ref.Kind == resource.RefMeshGateway && !opts.gatewayListenerTagsAllowed {
			notSet("tags", len(ref.Tags) > 0)
		}
		notSet("labels", len(ref.Labels) > 0)
		notSet("namespace", ref.Namespace != "")
		notSet("sectionName", ref.SectionName != "")
	case resource.RefMeshExternalService:
		name()
		notSet("mesh", ref.Mesh != "")
		notSet("tags", len(ref.Tags) > 0)
		notSet("proxyTypes", hasPT)
		if len(ref.Labels) == 0 && ref.Name == "" {
			v.add(at, "name or labels must be set when kind is %s", ref.Kind)
		}
		if len(ref.Labels) > 0 && (ref.Name != "" || ref.Namespace != "") {
			v.add(at+".labels", "either labels or name must be specified")
		}
		notSet("sectionName", ref.SectionName != "")
	}
	return true
}

// tags is Kuma's validateTagKeyValues with the value character set of
// ValidateTags (MeshSubset) or ValidateSelector (MeshServiceSubset, MeshGateway).
func tags(v *violations, at string, t map[string]string, valueRE *regexp.Regexp, valueMsg string) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		key := fmt.Sprintf("%s[%s]", at, strconv.Quote(k))
		if k == "" {
			v.add(at, "tag name must be non-empty")
		}
		if !tagNameCharacterSet.MatchString(k) {
			v.add(key, "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores")
		}
		if t[k] == "" {
			v.add(key, "tag value must be non-empty")
		}
		if !valueRE.MatchString(t[k]) {
			v.add(key, "%s", valueMsg)
		}
	}
}

// Top-level targetRef kinds as Kuma lists them per policy role: a policy
// in the system namespace (or universal) may also target gateways.
var (
	topKindsWorkload = []string{resource.RefMesh, resource.RefMeshSubset, resource.RefMeshService, resource.RefMeshServiceSubset, resource.RefDataplane}
	topKindsGateway  = slices.Concat(topKindsWorkload, []string{resource.RefMeshGateway})
	// A system MeshTimeout, MeshRetry or route may also target a MeshHTTPRoute.
	topKindsSystemRoute = slices.Concat(topKindsGateway, []string{resource.RefMeshHTTPRoute})
)

// to[] targetRef kinds as Kuma lists them.
var (
	// MeshTimeout, MeshRetry, MeshAccessLog.
	toKindsAll = []string{resource.RefMesh, resource.RefMeshService, resource.RefMeshExternalService, resource.RefMeshMultiZoneService, resource.RefMeshHTTPRoute}
	// MeshTimeout and MeshRetry under a top-level MeshGateway or MeshHTTPRoute.
	toKindsGatewayRoute = []string{resource.RefMesh, resource.RefMeshExternalService}
	// MeshCircuitBreaker, MeshHealthCheck.
	toKindsDestinations = []string{resource.RefMesh, resource.RefMeshService, resource.RefMeshExternalService, resource.RefMeshMultiZoneService}
	// MeshHTTPRoute, MeshTCPRoute (a gateway's routes take [Mesh]).
	toKindsRoutes = []string{resource.RefMeshService, resource.RefMeshExternalService, resource.RefMeshMultiZoneService}
)

// toKindsUnder picks the to[] kinds Kuma allows under top: special when
// top is one of specialTops, normal otherwise.
func toKindsUnder(top string, normal, special []string, specialTops ...string) refOpts {
	if slices.Contains(specialTops, top) {
		return refOpts{kinds: special}
	}
	return refOpts{kinds: normal}
}

// roleOpts are the top-level kinds of the kinds whose list depends on the
// role: a system policy may use system (with gateway listener tags).
func roleOpts(role string, system []string) refOpts {
	if role == resource.RoleSystem {
		return refOpts{kinds: system, gatewayListenerTagsAllowed: true}
	}
	return refOpts{kinds: topKindsWorkload}
}

// topRef checks spec.targetRef (absent = Mesh) and refuses what selects no
// meshext proxy; it returns the kind.
func topRef(v *violations, ref *resource.PolicyTargetRef, opts refOpts) string {
	if ref == nil {
		return resource.RefMesh
	}
	if policyRef(v, "spec.targetRef", ref, opts) {
		meshextTop(v, ref)
	}
	return ref.Kind
}

// toRef checks spec.to[i].targetRef (at is "spec.to[i]") and refuses
// traffic meshext does not carry.
func toRef(v *violations, at string, ref *resource.PolicyTargetRef, opts refOpts) {
	if policyRef(v, at+".targetRef", ref, opts) {
		meshextTo(v, at+".targetRef", ref)
	}
}

// policyRole is what every policy validator checks first, after admission:
// the role computation Kuma does when it labels the resource.
func policyRole(v *violations, p resource.Policy) string {
	role, err := resource.ComputePolicyRole(p)
	if err != nil {
		v.add("spec.to", "%v", err)
	}
	return role
}

// meshextTop refuses top-level kinds that select no meshext proxy. It runs
// after Kuma's check accepted the kind.
func meshextTop(v *violations, ref *resource.PolicyTargetRef) {
	if ref == nil {
		return
	}
	switch ref.Kind {
	case resource.RefMeshGateway:
		v.add("spec.targetRef.kind", "meshext runs no MeshGateway: a policy on kind MeshGateway would select no proxy")
	case resource.RefMeshHTTPRoute:
		v.add("spec.targetRef.kind", "meshext does not support a top-level targetRef of kind MeshHTTPRoute; "+
			"target the route from spec.to[].targetRef (kind: MeshHTTPRoute) instead")
	}
}

// meshextTo refuses to[] kinds whose traffic meshext does not carry. It
// runs after Kuma's check accepted the kind.
func meshextTo(v *violations, at string, ref *resource.PolicyTargetRef) {
	switch ref.Kind {
	case resource.RefMeshService, resource.RefMeshMultiZoneService, resource.RefMeshServiceSubset:
		v.add(at+".kind", "meshext applies policies to MeshExternalService traffic only: kind %s is not supported "+
			"(use Mesh or MeshExternalService)", ref.Kind)
	}
}

// meshextInbound refuses the inbound parts of a policy (from, rules).
func meshextInbound(v *violations, from, rules any) {
	if from != nil {
		v.add("spec.from", "meshext applies policies to MeshExternalService (outbound) traffic only: 'from' is not supported")
	}
	if rules != nil {
		v.add("spec.rules", "meshext applies policies to MeshExternalService (outbound) traffic only: 'rules' is not supported")
	}
}

// nonEmptyList is Kuma's AffectsInbounds test for one list.
func nonEmptyList(x any) bool { return sliceLen(x) > 0 }

// sliceLen is the length of an optional list (from/rules are read as any).
func sliceLen(x any) int {
	if s, ok := x.([]any); ok {
		return len(s)
	}
	if x != nil {
		return 1
	}
	return 0
}

// Kuma's number validators.
func durationGT0(v *violations, at string, d *resource.Duration) {
	if d != nil && d.Duration <= 0 {
		v.add(at, msgWhenDefinedGT0)
	}
}

func durationNonNeg(v *violations, at string, d *resource.Duration) {
	if d != nil && d.Duration < 0 {
		v.add(at, msgWhenDefinedNonNeg)
	}
}

func uintGT0(v *violations, at string, n *uint32) {
	if n != nil && *n == 0 {
		v.add(at, msgGreaterThanZero)
	}
}

func uintPercent(v *violations, at string, n *uint32) {
	if n != nil && *n > 100 {
		v.add(at, msgUintPercentRange)
	}
}

// percentOrNil is Kuma's ValidatePercentageOrNil.
func percentOrNil(v *violations, at string, p *resource.IntOrString) {
	if p == nil {
		return
	}
	f, err := p.Float()
	if err != nil {
		v.add(at, msgValidNumber)
		return
	}
	if f < 0 || f > 100 {
		v.add(at, msgPercentRange)
	}
}

// headerName is Kuma's HeaderName schema: 1..256 characters of the token set, lower case.
func headerName(v *violations, at, name string) {
	switch {
	case name == "":
		v.add(at, msgMustNotBeEmpty)
	case len(name) > 256 || !headerNameRE.MatchString(name):
		v.add(at, "must be a lower-case header name of at most 256 characters (letters, digits and !#$%%&'*+-.^_`|~)")
	}
}

var headerMatchTypes = []string{resource.HeaderMatchExact, resource.HeaderMatchPresent, resource.HeaderMatchRegularExpression,
	resource.HeaderMatchAbsent, resource.HeaderMatchPrefix}

// headerMatchSchema checks a HeaderMatch's schema: type enum and header name.
func headerMatchSchema(v *violations, at string, h resource.HeaderMatch) {
	if h.Type != nil && !slices.Contains(headerMatchTypes, *h.Type) {
		v.add(at+".type", "%s", mustBeOneOf("type", headerMatchTypes...))
	}
	headerName(v, at+".name", h.Name)
}
