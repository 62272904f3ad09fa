// Package validate checks parsed resources with Kuma v2.14's rules and
// messages (MeshExternalService, HostnameGenerator, admission and label
// rules) plus the checks Kuma misses (data-source shape, unix socket paths,
// MeshTrafficPermission, Dataplane ports). The targetRef policy kinds
// (policy.go and one file per kind) get Kuma's validators and schema checks,
// and meshext refuses, naming the field, what would not shape
// MeshExternalService traffic. Every violation of a resource is
// reported at once, each with its file, line and field path rooted at the
// resource as Kuma roots it ("spec.match.port", "networking.outbound[1].port").
//
// A resource with violations affects only itself: Validate returns the set of
// resources that passed. Cross-resource facts that can change without the
// resource changing (a missing Secret, a missing MeshExternalService behind a
// Dataplane outbound) are not validation errors; the model reports them.
package validate

import (
	"fmt"

	"github.com/meshext/meshext/controller/parallel"
	"github.com/meshext/meshext/controller/resource"
)

// Options tune the checks that depend on where meshext runs.
type Options struct {
	// Zone is the local zone name. When set, a resource of origin zone whose
	// kuma.io/zone label names another zone is rejected, as a Kuma zone
	// control plane does. Empty skips that check.
	Zone string
}

// Validate checks every resource of set. valid holds the resources without
// violations (and without parse errors, see resource.Meta.Malformed);
// problems lists every violation, resource by resource in set order.
func Validate(set *resource.Set) (valid *resource.Set, problems []*resource.FieldError) {
	return WithOptions(set, Options{})
}

// WithOptions is Validate with options (the zone-label check).
func WithOptions(set *resource.Set, opts Options) (valid *resource.Set, problems []*resource.FieldError) {
	return (*Memo)(nil).WithOptions(set, opts)
}

// Memo remembers each resource's violations, by the resource's identity,
// from one WithOptions to the next: a resource's violations are its own
// (see the package comment) and parsed resources are never modified, so a
// reload checks only the resources parsed anew. It holds the resources of
// the last call only. Not safe for concurrent use; a nil *Memo remembers
// nothing. The FieldErrors returned are shared between calls: read-only.
type Memo struct {
	opts Options
	last map[resource.Object][]*resource.FieldError
}

// WithOptions is the package-level WithOptions, through the memo.
func (m *Memo) WithOptions(set *resource.Set, opts Options) (valid *resource.Set, problems []*resource.FieldError) {
	valid = &resource.Set{}
	if set == nil {
		return valid, nil
	}
	var next map[resource.Object][]*resource.FieldError
	if m != nil {
		if m.opts != opts {
			m.last = nil
		}
		m.opts = opts
		next = make(map[resource.Object][]*resource.FieldError, len(m.last))
		defer func() { m.last = next }()
	}
	// Each resource is checked on its own (the set is only read), so the
	// checks run on every core first: at 10k services they are most of a
	// cold Build's validation. Subset then takes them in its order.
	objs := set.Objects()
	checked := make([][]*resource.FieldError, len(objs))
	done := make([]bool, len(objs))
	parallel.ForEach(len(objs), func(i int) {
		if _, ok := m.lookup(objs[i]); !ok {
			checked[i], done[i] = ObjectWithOptions(objs[i], set, opts), true
		}
	})
	at := 0
	valid = set.Subset(func(o resource.Object) bool {
		errs, ok := m.lookup(o)
		switch {
		case ok:
		case at < len(objs) && objs[at] == o && done[at]:
			errs = checked[at]
		default:
			errs = ObjectWithOptions(o, set, opts)
		}
		at++
		if next != nil {
			next[o] = errs
		}
		problems = append(problems, errs...)
		return len(errs) == 0 && !o.GetMeta().Malformed
	})
	valid.Files = append(valid.Files, set.Files...)
	return valid, problems
}

func (m *Memo) lookup(o resource.Object) ([]*resource.FieldError, bool) {
	if m == nil {
		return nil, false
	}
	errs, ok := m.last[o]
	return errs, ok
}

// Object returns every violation of one resource. set may be nil; no rule
// here fails because another resource is missing.
func Object(o resource.Object, set *resource.Set) []*resource.FieldError {
	return ObjectWithOptions(o, set, Options{})
}

// ObjectWithOptions is Object with options.
func ObjectWithOptions(o resource.Object, set *resource.Set, opts Options) []*resource.FieldError {
	if o == nil || o.GetMeta() == nil {
		return nil
	}
	v := &violations{meta: o.GetMeta()}
	// Names first (the API server checks metadata before any webhook), then
	// admission, as Kuma's webhook runs before the resource validator.
	resourceNames(v)
	admission(v, opts)
	switch r := o.(type) {
	case *resource.MeshExternalService:
		destinationLabels(v)
		meshExternalService(v, r)
	case *resource.HostnameGenerator:
		hostnameGenerator(v, r)
	case *resource.MeshTrafficPermission:
		meshTrafficPermission(v, r)
	case *resource.Dataplane:
		dataplane(v, r)
	case *resource.Mesh:
		mesh(v, r)
	case *resource.Secret:
		secret(v, r)
	case *resource.MeshTimeout:
		meshTimeout(v, r)
	case *resource.MeshRetry:
		meshRetry(v, r)
	case *resource.MeshCircuitBreaker:
		meshCircuitBreaker(v, r)
	case *resource.MeshHealthCheck:
		meshHealthCheck(v, r)
	case *resource.MeshLoadBalancingStrategy:
		meshLoadBalancingStrategy(v, r)
	case *resource.MeshAccessLog:
		meshAccessLog(v, r)
	case *resource.MeshHTTPRoute:
		meshHTTPRoute(v, r)
	case *resource.MeshTCPRoute:
		meshTCPRoute(v, r)
	case *resource.ZoneEgress:
		zoneEgress(v, r)
	}
	return v.list
}

// violations collects the problems of one resource in the order found.
type violations struct {
	meta *resource.Meta
	list []*resource.FieldError
}

func (v *violations) add(field, format string, args ...any) {
	v.list = append(v.list, v.meta.Errorf(field, format, args...))
}

// addAs is add with the field shown as the document spells it (the line is
// still field's).
func (v *violations) addAs(field, shown, format string, args ...any) {
	fe := v.meta.Errorf(field, format, args...)
	fe.Field = shown
	v.list = append(v.list, fe)
}

// mustBeOneOf is Kuma's validators.MakeFieldMustBeOneOfErr message.
func mustBeOneOf(field string, allowed ...string) string {
	s := fmt.Sprintf("%q must be one of [", field)
	for i, a := range allowed {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", a)
	}
	return s + "]"
}

const (
	labelOriginZone   = "zone"
	labelOriginGlobal = "global"
)

// admission mirrors what Kuma's admission webhook and zone resource manager
// reject before the resource validator runs.
func admission(v *violations, opts Options) {
	m := v.meta
	switch m.Kind {
	case resource.KindMeshExternalService, resource.KindHostnameGenerator:
		// Kuma keeps these in the system namespace on Kubernetes.
		if m.Source.Style == resource.StyleKubernetes && m.Namespace != resource.SystemNamespace {
			v.add("namespace", "resource type %s can be created only in the system namespace:%s", m.Kind, resource.SystemNamespace)
		}
	}
	if m.Kind != resource.KindMesh {
		if lm, ok := m.Labels[resource.LabelMesh]; ok && lm != m.Mesh {
			v.add(`labels["kuma.io/mesh"]`, "kuma.io/mesh label must not differ from mesh set on resource")
		}
	}
	// Load computes kuma.io/origin=zone when absent; an explicit value must be
	// zone (created here) or global (synced from a global control plane).
	origin, hasOrigin := m.Labels[resource.LabelOrigin]
	if hasOrigin && origin != labelOriginZone && origin != labelOriginGlobal {
		v.add(`labels["kuma.io/origin"]`, "the origin label must be set to '%s'", labelOriginZone)
	}
	if opts.Zone != "" && (!hasOrigin || origin == labelOriginZone) {
		if z, ok := m.Labels[resource.LabelZone]; ok && z != opts.Zone {
			v.add(`labels["kuma.io/zone"]`, "kuma.io/zone label should have %s value", opts.Zone)
		}
	}
}
