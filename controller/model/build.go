package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/parallel"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// Options tune Build.
type Options struct {
	// Zone is the local zone name (.Zone in hostname templates for resources
	// without a kuma.io/zone label); "" = "default".
	Zone string
	// IPAM hands out VIPs (an *ipam.Allocator, or a view of VIPs another
	// replica allocates); nil = a fresh in-memory allocator (first-fit in
	// sorted order, CIDR from $KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR or 242.0.0.0/8).
	IPAM ipam.Assigner
	// SystemCAPath is the CA bundle used when a service gives no caCert;
	// "" = $KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH, else the first
	// existing OS bundle (see SystemCABundles).
	SystemCAPath string
	// Claims remembers who owns each derived identifier (node id, cluster
	// name) across builds, so a newcomer that folds onto a serving resource's
	// identifier is the one refused; nil = decide by age alone.
	Claims *names.Claims
	// SkipDefaultPolicies lists Kuma default policy kinds not to add in any
	// mesh ("*" = all), on top of each Mesh's skipCreatingInitialPolicies.
	SkipDefaultPolicies []string
	// Validations remembers resources' violations from one Build to the
	// next (validate.Memo); nil = every resource is checked.
	Validations *validate.Memo
	// Hostnames remembers rendered hostnames from one Build to the next
	// (hostname.Memo); nil = every template is rendered for every service.
	Hostnames *hostname.Memo
	// Memo remembers what Build derives from each service from one Build
	// to the next (see Memo); nil = everything is derived anew.
	Memo *Memo
}

// Condition types Build sets on services. Hostname conditions use Kuma's
// type "Generated", one per HostnameGenerator (Condition.Generator).
const (
	ConditionGenerated    = hostname.ConditionGenerated
	ConditionVIPAllocated = "VIPAllocated"
	ConditionTLSReady     = "TLSReady"
	// ConditionReady is False exactly when Broken is set.
	ConditionReady = "Ready"

	StatusTrue  = "True"
	StatusFalse = "False"
)

// Build validates set, then compiles the valid resources: VIPs, hostnames,
// endpoints and TLS material. It never fails as a whole: a problem with one
// resource is recorded in Problems (and, for a service, in its Broken field
// and conditions) and affects only that resource. The output is deterministic
// for a given set and allocator state.
func Build(set *resource.Set, opts Options) *World {
	valid, problems := validateSet(set, opts)
	if opts.Zone == "" {
		opts.Zone = "default"
	}
	w := &World{Meshes: map[string]*resource.Mesh{}, Problems: problems}
	w.Policies = policy.Resolve(valid, policy.Options{Zone: opts.Zone, SkipDefaults: opts.SkipDefaultPolicies})

	for _, m := range valid.Meshes {
		w.Meshes[m.Name] = m
	}
	w.MTLS = meshesMTLS(valid, set)
	var egresses []*resource.ZoneEgress
	for _, z := range sortedByMeshName(valid.ZoneEgresses) {
		if z.IsLocal(opts.Zone) {
			egresses = append(egresses, z)
		}
	}
	w.Dataplanes, w.ZoneEgresses = w.settleNodeIDs(opts.Claims, sortedByMeshName(valid.Dataplanes), egresses)
	w.Permissions = sortedByMeshName(valid.MeshTrafficPermissions)
	mess := sortedByMeshName(valid.MeshExternalServices)

	memo := opts.Memo
	stamp := memo.begin()
	defer memo.end(stamp)
	ds := memo.deriveAll(mess, stamp)
	keys := make([]string, len(mess))
	for i, d := range ds {
		keys[i] = d.key
	}

	// VIPs.
	alloc := opts.IPAM
	var ipamErr error
	if alloc == nil {
		alloc, ipamErr = ipam.Open("", "")
	}
	leases := map[string]ipam.Lease{}
	if ipamErr == nil {
		leases, ipamErr = alloc.Assign(keys)
	}

	// Each service's lease and age once: hostname generation and
	// settleClusters order services by age.
	held := make([]ipam.Lease, len(mess))
	leased := make([]bool, len(mess))
	ages := make([]hostname.Age, len(mess))
	for i, d := range ds {
		held[i], leased[i] = leases[d.key]
		if !d.created.IsZero() {
			ages[i] = hostname.Age{Time: d.created}
		} else {
			ages[i] = hostname.Age{Time: held[i].FirstSeen, Serial: held[i].Serial}
		}
	}

	// Hostnames.
	gen := hostname.GenerateEach(hostname.Input{
		Generators: valid.HostnameGenerators,
		Services:   mess,
		Zone:       opts.Zone,
		Ages:       ages,
		Memo:       opts.Hostnames,
	})

	sysCA := resolveSystemCA(opts.SystemCAPath)
	var secrets secretIndex
	// Each service's TLS is resolved on its own: on every core first, so
	// the ordered loop below finds it remembered in its derived values.
	// Indexed here, the secrets are only read there.
	secrets.index(valid, set)
	parallel.ForEach(len(mess), func(i int) {
		// A service listed twice shares its derived values: resolved once.
		if m := mess[i]; m.Spec.TLS != nil && m.Spec.TLS.Enabled && (i == 0 || ds[i] != ds[i-1]) {
			ds[i].resolveTLS(m, valid, set, sysCA, &secrets)
		}
	})
	w.Services = make([]*Service, 0, len(mess))
	for i, m := range mess {
		d := ds[i]
		s := &Service{
			Mesh: m.Mesh, Name: m.Name, Resource: m,
			Protocol:  m.Spec.Match.Protocol,
			Port:      d.port,
			Endpoints: d.endpoints,
			Cluster:   d.cluster,
			SNI:       d.sni,
		}
		if r := gen[i]; r != nil {
			// VIP, one per generator, TLS, ZoneEgress, Ready.
			s.Conditions = make([]Condition, 0, len(r.Statuses)+4)
		}
		// VIP.
		if l := held[i]; leased[i] && l.VIP.IsValid() {
			s.VIP = l.VIP
			if l.Moved.IsValid() {
				s.cond(ConditionVIPAllocated, StatusTrue, "Reallocated", fmt.Sprintf("VIP moved from %s to %s: the old VIP is outside MeshExternalServiceCIDR %s", l.Moved, l.VIP, alloc.CIDR()))
			} else {
				s.cond(ConditionVIPAllocated, StatusTrue, "Allocated", "")
			}
		} else {
			msg := "no VIP allocated"
			if ipamErr != nil {
				msg = ipamErr.Error()
			}
			s.cond(ConditionVIPAllocated, StatusFalse, "AllocationFailed", msg)
			w.fail(s, m.Errorf("name", "%s", msg))
		}
		// Hostnames.
		if r := gen[i]; r != nil {
			d.hostnames(m, r)
			s.Hostnames, s.Addresses = r.Hostnames, d.addresses
			s.Conditions = append(s.Conditions, d.genConds...)
			w.Problems = append(w.Problems, d.genProblems...)
		}
		// TLS.
		if m.Spec.TLS != nil && m.Spec.TLS.Enabled {
			t, reason, fe, summary := d.resolveTLS(m, valid, set, sysCA, &secrets)
			if fe != nil {
				s.cond(ConditionTLSReady, StatusFalse, reason, fe.Message)
				w.fail(s, fe)
			} else {
				s.TLS = t
				s.cond(ConditionTLSReady, StatusTrue, "Resolved", summary)
			}
		}
		w.Services = append(w.Services, s)
	}
	w.settleClusters(opts.Claims, ages, ds)
	w.settleSNIs()
	w.checkEgressPath(opts.Zone)
	for _, s := range w.Services {
		if s.Broken == "" {
			s.cond(ConditionReady, StatusTrue, "Ready", "")
		} else {
			s.cond(ConditionReady, StatusFalse, "Broken", s.Broken)
		}
	}
	return w
}

// settleClusters finds services whose Envoy cluster names still coincide
// (Kuma's destination names differ for different valid names, but two
// services may carry the same kuma.io/display-name): the owner of the name
// at the last build keeps it, else the older service (Kuma's order: creation
// time, then first seen, then mesh and name); the other is Broken, so Envoy
// never sees two clusters of one name.
// ages and ds are each service's age and derived values.
func (w *World) settleClusters(claims *names.Claims, ages []hostname.Age, ds []*derived) {
	byAge := make([]int, len(w.Services)) // indexes of w.Services, oldest first
	for i := range byAge {
		byAge[i] = i
	}
	older := func(a, b int) int {
		if less, ok := ages[a].Less(ages[b]); ok {
			if less {
				return -1
			}
			return 1
		}
		return 0 // w.Services is already in mesh, name order
	}
	if !slices.IsSortedFunc(byAge, older) { // services are mostly first seen in name order
		slices.SortStableFunc(byAge, older)
	}
	cs := make([]names.Claimant, len(byAge))
	for i, j := range byAge {
		cs[i] = names.Claimant{ID: w.Services[j].Cluster, Owner: ds[j].owner}
	}
	for i, winner := range claims.Settle("cluster", cs) {
		if winner == i {
			continue
		}
		s, o := w.Services[byAge[i]], w.Services[byAge[winner]].Resource
		w.fail(s, s.Resource.Errorf("name", "Envoy cluster name %q is already used by MeshExternalService %s/%s (%s), which claimed it first; this service is not rendered",
			s.Cluster, o.Mesh, o.Name, o.Where("name")))
	}
}

// settleNodeIDs keeps one Dataplane or ZoneEgress per Envoy node id.
// "<mesh>.<name>" can fold when names hold dots (mesh "a.b" name "c", mesh
// "a" name "b.c"): the owner of the id at the last build keeps it, else the
// older resource (creation time, then kind, mesh and name); the other is
// left out with an error, so one Envoy never loads another's config.
// ZoneEgress ids (".<name>") never meet a Dataplane's, but are settled in
// the same space so that stays checked.
func (w *World) settleNodeIDs(claims *names.Claims, dps []*resource.Dataplane, zes []*resource.ZoneEgress) ([]*resource.Dataplane, []*resource.ZoneEgress) {
	type node struct {
		meta *resource.Meta
		id   string
		age  hostname.Age // parsed once, not per comparison
	}
	byAge := make([]node, 0, len(dps)+len(zes))
	for _, dp := range dps {
		byAge = append(byAge, node{&dp.Meta, names.NodeID(dp.Mesh, dp.Name), hostname.Age{Time: hostname.CreationTime(&dp.Meta)}})
	}
	for _, z := range zes {
		byAge = append(byAge, node{&z.Meta, names.ZoneEgressNodeID(z.Name), hostname.Age{Time: hostname.CreationTime(&z.Meta)}})
	}
	slices.SortStableFunc(byAge, func(a, b node) int {
		if less, ok := a.age.Less(b.age); ok {
			if less {
				return -1
			}
			return 1
		}
		return 0
	})
	cs := make([]names.Claimant, len(byAge))
	for i, n := range byAge {
		cs[i] = names.Claimant{ID: n.id, Owner: n.meta.Key()}
	}
	lost := map[*resource.Meta]bool{}
	for i, winner := range claims.Settle("node", cs) {
		if winner == i {
			continue
		}
		n, o := byAge[i].meta, byAge[winner].meta
		lost[n] = true
		w.Problems = append(w.Problems, n.Errorf("name", "Envoy node id %q is already used by %s %s (%s), which claimed it first; this %s gets no config",
			cs[i].ID, o.Kind, strings.TrimPrefix(o.Mesh+"/"+o.Name, "/"), o.Where("name"), n.Kind))
	}
	if len(lost) == 0 {
		return dps, zes
	}
	return slices.DeleteFunc(dps, func(dp *resource.Dataplane) bool { return lost[&dp.Meta] }),
		slices.DeleteFunc(zes, func(z *resource.ZoneEgress) bool { return lost[&z.Meta] })
}

// Address is one generated hostname and the generator that produced it
// (Kuma's status.addresses[]).
type Address struct {
	Hostname  string `json:"hostname"`
	Generator string `json:"generator"`
}

func (s *Service) cond(typ, status, reason, msg string) {
	s.Conditions = append(s.Conditions, Condition{Type: typ, Status: status, Reason: reason, Message: msg})
}

// fail marks s broken (the first reason wins) and records the problem.
func (w *World) fail(s *Service, fe *resource.FieldError) {
	if s.Broken == "" {
		s.Broken = fe.Error()
	}
	w.Problems = append(w.Problems, fe)
}

func sortedByMeshName[T resource.Object](in []T) []T {
	out := slices.Clone(in)
	byMeshName := func(a, b T) int {
		am, bm := a.GetMeta(), b.GetMeta()
		return cmp.Or(strings.Compare(am.Mesh, bm.Mesh), strings.Compare(am.Name, bm.Name))
	}
	if !slices.IsSortedFunc(out, byMeshName) { // a drop directory's files mostly list them in order
		slices.SortStableFunc(out, byMeshName)
	}
	return out
}

func endpoints(m *resource.MeshExternalService) []Endpoint {
	out := make([]Endpoint, 0, len(m.Spec.Endpoints))
	for _, e := range m.Spec.Endpoints {
		ep := Endpoint{Address: e.Address, Port: uint32(e.Port)}
		if e.Priority != nil {
			ep.Priority = *e.Priority
		}
		if path, ok := strings.CutPrefix(e.Address, resource.UnixPrefix); ok {
			ep.Address, ep.Unix, ep.Port = path, true, 0
		} else if _, err := netip.ParseAddr(e.Address); err == nil {
			ep.IsIP = true
		}
		out = append(out, ep)
	}
	return out
}

// matchPort is match.port, or 0 when omitted: every port on the VIP.
func matchPort(p *int64) uint32 {
	if p == nil {
		return 0
	}
	return uint32(*p)
}
