package hostname

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshext/meshext/controller/parallel"
	"github.com/meshext/meshext/controller/resource"
)

// Condition reasons, as Kuma writes them in status.hostnameGenerators[].conditions.
const (
	ConditionGenerated  = "Generated" // the condition type
	ReasonGenerated     = "Generated"
	ReasonCollision     = "Collision"
	ReasonTemplateError = "TemplateError"
)

// Age orders resources: older first. A resource's age is its creation time
// when the document gives one, else the time meshext first saw it (kept in
// the IPAM state), else only its serial (first-seen order).
type Age struct {
	Time   time.Time // zero = unknown: sorts after every known time
	Serial uint64    // first-seen order; 0 = unknown: sorts last
}

func (a Age) less(b Age) (less, decided bool) {
	switch {
	case !a.Time.IsZero() && b.Time.IsZero():
		return true, true
	case a.Time.IsZero() && !b.Time.IsZero():
		return false, true
	case !a.Time.Equal(b.Time):
		return a.Time.Before(b.Time), true
	}
	switch {
	case a.Serial == b.Serial:
		return false, false
	case a.Serial == 0:
		return false, true
	case b.Serial == 0:
		return true, true
	}
	return a.Serial < b.Serial, true
}

// Less reports whether a is older than b; decided is false when their ages
// do not tell them apart (callers then order by mesh and name).
func (a Age) Less(b Age) (less, decided bool) { return a.less(b) }

// CreationTime parses metadata.creationTimestamp / creationTime (RFC 3339);
// zero when absent or unparseable.
func CreationTime(m *resource.Meta) time.Time {
	if m.CreationTime == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, m.CreationTime)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Status is one generator's outcome for one service (Kuma's
// status.hostnameGenerators[] entry, with its single Generated condition).
type Status struct {
	Generator string // HostnameGenerator name
	Hostname  string // set when Generated
	Generated bool
	Reason    string
	Message   string
}

// Result is one service's generated hostnames and per-generator statuses,
// both sorted by generator name.
type Result struct {
	Hostnames []string // distinct, in generator-name order
	Statuses  []Status
}

// Input is what Generate needs.
type Input struct {
	Generators []*resource.HostnameGenerator
	Services   []*resource.MeshExternalService
	// ServiceAge gives each service's age (see Age); nil = creation time only.
	ServiceAge func(*resource.MeshExternalService) Age
	// Ages, when not nil, is each service's age (Ages[i] of Services[i]),
	// and ServiceAge is not called.
	Ages []Age
	// Zone is the local zone name (.Zone when a resource has no kuma.io/zone label).
	Zone string
	// Memo keeps rendered hostnames from one Generate to the next; nil = none.
	Memo *Memo
}

// Memo remembers, by the service's identity (parsed resources are never
// modified), what Generate derived from each service alone: its key, which
// generators select it and each template's rendering, and the Result it
// got. A reload then renders and matches only for services parsed anew,
// and a service whose statuses did not change gets the same *Result as the
// last call (callers may key their own reuse on it). It holds what the
// last call used only. Not safe for concurrent use.
type Memo struct {
	zone     string
	stamp    uint64 // counts calls; an entry holds the stamp of the last call that used it
	gens     []*resource.HostnameGenerator
	services map[*resource.MeshExternalService]*memoService
}

// memoService is what one service's identity gives.
type memoService struct {
	stamp  uint64
	key    string
	slots  []slot  // one per generator of the last call that used it, in Generate's order
	result *Result // what its key got at that call
}

// slot is one generator's verdict on one service.
type slot struct {
	gen      *resource.HostnameGenerator // matched is this generator's selector's verdict
	matched  bool
	template string
	rendered bool // hostname and err hold template's rendering
	hostname string
	err      error
}

// entry returns s's memo entry for a call over gens (Generate's order)
// whose stamp is stamp, making or refitting it. sameGens says the last
// call had the same generators: an entry it used fits as it is.
func (m *Memo) entry(s *resource.MeshExternalService, gens []*resource.HostnameGenerator, stamp uint64, sameGens bool) *memoService {
	e := m.services[s]
	if e == nil {
		e = &memoService{key: Key(&s.Meta)}
		m.services[s] = e
	} else if e.stamp == stamp || sameGens {
		e.stamp = stamp
		return e
	}
	e.stamp = stamp
	e.slots = fitSlots(e.slots, s, gens)
	return e
}

// fitSlots makes one slot per generator of gens, keeping old's verdicts of
// the same generator and renderings of the same template.
func fitSlots(old []slot, s *resource.MeshExternalService, gens []*resource.HostnameGenerator) []slot {
	slots := make([]slot, len(gens))
	for j, g := range gens {
		sl := slot{gen: g, template: g.Spec.Template}
		found := false
		for _, o := range old {
			if o.gen == g {
				sl.matched, found = o.matched, true
			}
			if !sl.rendered && o.rendered && o.template == sl.template {
				sl.rendered, sl.hostname, sl.err = true, o.hostname, o.err
			}
		}
		if !found {
			sel := g.Spec.Selector.MeshExternalService
			sl.matched = sel != nil && sel.Matches(s.Labels)
		}
		slots[j] = sl
	}
	return slots
}

// Key identifies a service in Generate's result: "<mesh>/<name>".
func Key(m *resource.Meta) string { return m.Mesh + "/" + m.Name }

// Generate renders every generator for every MeshExternalService it selects.
// Collisions are resolved as Kuma does, deterministically: generators with
// kuma.io/origin=zone first, then older first, then by name; services older
// first, then by mesh and name; the first claimant of a hostname keeps it.
// Unlike Kuma (F10), the collision message names the winner. Unlike Kuma,
// a hostname is claimed across meshes, not per mesh: Kuma's DNS runs in
// each kuma-dp and answers only its own mesh's names, while meshext's
// embedded DNS answers the whole zone, so one name must mean one VIP.
// The result maps Key to the service's Result.
func Generate(in Input) map[string]*Result {
	each, keys := generate(in)
	out := make(map[string]*Result, len(each))
	for i, r := range each {
		out[keys[i]] = r
	}
	return out
}

// GenerateEach is Generate's Result of each service: GenerateEach(in)[i] is
// in.Services[i]'s (services of one Key share one Result).
func GenerateEach(in Input) []*Result {
	each, _ := generate(in)
	return each
}

// generate returns each service's Result and Key.
func generate(in Input) ([]*Result, []string) {
	gens := append([]*resource.HostnameGenerator(nil), in.Generators...)
	sort.SliceStable(gens, func(i, j int) bool {
		a, b := gens[i], gens[j]
		az, bz := a.Labels[resource.LabelOrigin] == "zone", b.Labels[resource.LabelOrigin] == "zone"
		if az != bz {
			return az
		}
		if l, ok := (Age{Time: CreationTime(&a.Meta)}).less(Age{Time: CreationTime(&b.Meta)}); ok {
			return l
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Mesh < b.Mesh
	})
	n := len(in.Services)
	// Each service's memo entry (or a one-call one), age and result slot
	// once, not per comparison or generator: at 10k services this runs on
	// every reload.
	m := in.Memo
	var stamp uint64
	sameGens := false
	if m != nil {
		if m.services == nil || m.zone != in.Zone {
			m.services = map[*resource.MeshExternalService]*memoService{}
		}
		m.stamp++
		stamp = m.stamp
		sameGens = slices.Equal(m.gens, gens)
		m.zone, m.gens = in.Zone, gens
	}
	entries := make([]*memoService, n)
	var scratch []memoService // entries of a call without a memo
	if m == nil {
		scratch = make([]memoService, n)
	}
	ages := in.Ages
	if ages == nil {
		ages = make([]Age, n)
	}
	keys := make([]string, n)
	increasing := true // then no two services share a Key
	for i, s := range in.Services {
		var e *memoService
		if m != nil {
			e = m.entry(s, gens, stamp, sameGens)
		} else {
			e = &scratch[i]
			e.key, e.slots = Key(&s.Meta), fitSlots(nil, s, gens)
		}
		entries[i], keys[i] = e, e.key
		increasing = increasing && (i == 0 || keys[i-1] < e.key)
		if in.Ages == nil {
			if in.ServiceAge != nil {
				ages[i] = in.ServiceAge(s)
			} else {
				ages[i] = Age{Time: CreationTime(&s.Meta)}
			}
		}
	}
	// One result per Key, as a map gives: slotOf[i] is service i's, and
	// first[r] the first service of slot r.
	slotOf := make([]int, n)
	first := make([]int, 0, n)
	var slotByKey map[string]int
	if !increasing {
		slotByKey = make(map[string]int, n)
	}
	for i, k := range keys {
		if slotByKey != nil {
			if r, dup := slotByKey[k]; dup {
				slotOf[i] = r
				continue
			}
			slotByKey[k] = len(first)
		}
		slotOf[i] = len(first)
		first = append(first, i)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	byAge := func(a, b int) int {
		if l, ok := ages[a].less(ages[b]); ok {
			if l {
				return -1
			}
			return 1
		}
		sa, sb := in.Services[a], in.Services[b]
		if c := strings.Compare(sa.Mesh, sb.Mesh); c != 0 {
			return c
		}
		return strings.Compare(sa.Name, sb.Name)
	}
	if !slices.IsSortedFunc(order, byAge) { // callers mostly pass services in age order
		slices.SortStableFunc(order, byAge)
	}
	// Statuses go to one buffer, a window of len(gens) per service of a
	// result slot, in the order Generate claims hostnames.
	start := make([]int, len(first)+1)
	for i := range in.Services {
		start[slotOf[i]+1] += len(gens)
	}
	for r := range first {
		start[r+1] += start[r]
	}
	buf := make([]Status, start[len(first)])
	count := make([]int, len(first))
	owner := make(map[string]*resource.MeshExternalService, n)
	for j, g := range gens {
		if g.Spec.Selector.MeshExternalService == nil {
			continue
		}
		renderAhead(g, j, first, entries, in)
		var tmpl *compiled
		var compileErr error
		compiledOnce := false
		for _, i := range order {
			s, sl := in.Services[i], &entries[i].slots[j]
			if !sl.matched {
				continue
			}
			if !sl.rendered {
				if !compiledOnce {
					tmpl, compileErr = compile(g.Spec.Template)
					compiledOnce = true
				}
				sl.rendered, sl.err = true, compileErr
				if compileErr == nil {
					sl.hostname, sl.err = tmpl.render(DataFor(&s.Meta, in.Zone))
				}
			}
			st := Status{Generator: g.Name}
			h, err := sl.hostname, sl.err
			switch {
			case err != nil:
				st.Reason, st.Message = ReasonTemplateError, err.Error()
			case owner[h] != nil && owner[h] != s:
				w := owner[h]
				st.Reason = ReasonCollision
				winner := w.Name
				if w.Mesh != s.Mesh {
					winner = w.Name + " in mesh " + w.Mesh
				}
				st.Message = fmt.Sprintf("Hostname %q collision with MeshExternalService: %s (%s), which claimed it first", h, winner, w.Source.Where())
			default:
				owner[h] = s
				st.Generated, st.Reason, st.Hostname = true, ReasonGenerated, h
			}
			r := slotOf[i]
			buf[start[r]+count[r]] = st
			count[r]++
		}
	}
	results := make([]*Result, len(first))
	for r, i := range first {
		sts := buf[start[r] : start[r]+count[r]]
		if !slices.IsSortedFunc(sts, byGenerator) {
			slices.SortStableFunc(sts, byGenerator)
		}
		if last := entries[i].result; last != nil && slices.Equal(last.Statuses, sts) {
			results[r] = last // unchanged: the same Result
			continue
		}
		res := &Result{}
		if len(sts) > 0 {
			res.Statuses = slices.Clone(sts) // not buf: a kept Result would hold all of it
		}
		var seen map[string]bool // for many generators; few are searched
		for _, st := range res.Statuses {
			if !st.Generated {
				continue
			}
			if len(res.Statuses) > 8 {
				if seen == nil {
					seen = map[string]bool{}
				}
				if seen[st.Hostname] {
					continue
				}
				seen[st.Hostname] = true
			} else if slices.Contains(res.Hostnames, st.Hostname) {
				continue
			}
			res.Hostnames = append(res.Hostnames, st.Hostname)
		}
		results[r] = res
	}
	each := make([]*Result, n)
	for i := range each {
		each[i] = results[slotOf[i]]
		if m != nil {
			entries[i].result = each[i]
		}
	}
	if m != nil {
		for s, e := range m.services {
			if e.stamp != stamp {
				delete(m.services, s)
			}
		}
	}
	return each, keys
}

// renderAhead renders generator j's template for each service of first
// (one per result slot, so each entry once) that needs it, on every core:
// rendering is independent per service, and only the claims that follow
// depend on the order. A validate.Template keeps state while it renders,
// so each chunk compiles its own.
func renderAhead(g *resource.HostnameGenerator, j int, first []int, entries []*memoService, in Input) {
	var pending []int
	for _, i := range first {
		if sl := &entries[i].slots[j]; sl.matched && !sl.rendered {
			pending = append(pending, i)
		}
	}
	const chunk = 256
	if len(pending) < renderAheadMin {
		return // rendered in order below
	}
	parallel.ForEach((len(pending)+chunk-1)/chunk, func(c int) {
		tmpl, err := compile(g.Spec.Template)
		for _, i := range pending[c*chunk : min((c+1)*chunk, len(pending))] {
			sl := &entries[i].slots[j]
			sl.rendered, sl.err = true, err
			if err == nil {
				sl.hostname, sl.err = tmpl.render(DataFor(&in.Services[i].Meta, in.Zone))
			}
		}
	})
}

// renderAheadMin is the fewest renderings renderAhead spreads over the
// cores. A variable for the test that generates both ways.
var renderAheadMin = 512

func byGenerator(a, b Status) int { return strings.Compare(a.Generator, b.Generator) }
