package hostname

import (
	"fmt"
	"sort"
	"time"

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
	// Zone is the local zone name (.Zone when a resource has no kuma.io/zone label).
	Zone string
	// Memo keeps rendered hostnames from one Generate to the next; nil = none.
	Memo *Memo
}

// Memo remembers each template's rendering for each service, by the
// service's identity (parsed resources are never modified), from one
// Generate to the next: a reload renders only for services parsed anew.
// It holds the last call's renderings only. Not safe for concurrent use.
type Memo struct {
	zone       string
	last, next map[renderKey]rendering
}

type renderKey struct {
	template string
	service  *resource.MeshExternalService
}

type rendering struct {
	hostname string
	err      error
}

func (m *Memo) start(zone string) {
	if m == nil {
		return
	}
	if m.zone != zone {
		m.last = nil
	}
	m.zone, m.next = zone, make(map[renderKey]rendering, len(m.last))
}

func (m *Memo) done() {
	if m != nil {
		m.last, m.next = m.next, nil
	}
}

// render is tmpl.render(DataFor(&s.Meta, zone)) through the memo.
func (m *Memo) render(text string, tmpl *compiled, s *resource.MeshExternalService, zone string) (string, error) {
	if m == nil {
		return tmpl.render(DataFor(&s.Meta, zone))
	}
	k := renderKey{template: text, service: s}
	r, ok := m.last[k]
	if !ok {
		r.hostname, r.err = tmpl.render(DataFor(&s.Meta, zone))
	}
	m.next[k] = r
	return r.hostname, r.err
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
func Generate(in Input) map[string]*Result {
	in.Memo.start(in.Zone)
	defer in.Memo.done()
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
	// Each service's age and result once, not per comparison or generator:
	// at 10k services this runs on every reload.
	type aged struct {
		s   *resource.MeshExternalService
		age Age
		r   *Result
	}
	svcs := make([]aged, len(in.Services))
	out := make(map[string]*Result, len(svcs))
	for i, s := range in.Services {
		a := aged{s: s, r: &Result{}}
		if in.ServiceAge != nil {
			a.age = in.ServiceAge(s)
		} else {
			a.age = Age{Time: CreationTime(&s.Meta)}
		}
		k := Key(&s.Meta)
		if r, dup := out[k]; dup {
			a.r = r // one result per mesh/name, as a map gives
		}
		svcs[i] = a
		out[k] = a.r
	}
	sort.SliceStable(svcs, func(i, j int) bool {
		a, b := svcs[i], svcs[j]
		if l, ok := a.age.less(b.age); ok {
			return l
		}
		if a.s.Mesh != b.s.Mesh {
			return a.s.Mesh < b.s.Mesh
		}
		return a.s.Name < b.s.Name
	})
	owner := map[string]*resource.MeshExternalService{}
	for _, g := range gens {
		sel := g.Spec.Selector.MeshExternalService
		if sel == nil {
			continue
		}
		tmpl, compileErr := compile(g.Spec.Template)
		for _, a := range svcs {
			s, r := a.s, a.r
			if !sel.Matches(s.Labels) {
				continue
			}
			st := Status{Generator: g.Name}
			h, err := "", compileErr
			if err == nil {
				h, err = in.Memo.render(g.Spec.Template, tmpl, s, in.Zone)
			}
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
			r.Statuses = append(r.Statuses, st)
		}
	}
	for _, r := range out {
		sort.SliceStable(r.Statuses, func(i, j int) bool { return r.Statuses[i].Generator < r.Statuses[j].Generator })
		seen := map[string]bool{}
		for _, st := range r.Statuses {
			if st.Generated && !seen[st.Hostname] {
				seen[st.Hostname] = true
				r.Hostnames = append(r.Hostnames, st.Hostname)
			}
		}
	}
	return out
}
