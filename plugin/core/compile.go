package core

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// ServiceTag is the Kuma tag naming a Dataplane's service. An Identity's
// Service field counts as this tag when MeshSubset tags are matched.
const ServiceTag = "kuma.io/service"

// Precedence (egress MeshTrafficPermission), applied per (source, MES),
// for from[] policies (rules[] policies, when any applies to the MES,
// decide instead; see Rule):
//
//  1. Only policies in the MES's mesh whose targetRef is that MES
//     ({kind: MeshExternalService, name}) or the whole mesh ({kind: Mesh})
//     are candidates; among their from[] entries only those whose targetRef
//     matches the source count.
//  2. The most specific from[] target wins:
//     MeshServiceSubset > MeshService > MeshSubset > Mesh; between two
//     subsets of the same kind, the one with more tags wins.
//  3. Then a policy targeting the MES beats one targeting the whole Mesh.
//  4. Then the policy whose name sorts first (byte order) wins; within one
//     policy a later from[] entry beats an earlier one (Kuma merges from[]
//     in order, the last one overriding).
//  5. No match: Allow, or Deny when the mesh sets
//     defaultForbidMeshExternalServiceAccess.
//
// A source from another mesh than the MES is always denied.

// fromRank orders from[] target kinds by specificity, higher wins.
var fromRank = map[string]int{
	KindMesh:              0,
	KindMeshSubset:        1,
	KindMeshService:       2,
	KindMeshServiceSubset: 3,
}

type tag struct{ key, value string }

// rule is one from[] entry of one policy, ready to match a source.
type rule struct {
	rank     int // fromRank
	ntags    int
	mesOnly  bool // the policy targets this MES, not the whole mesh
	policy   string
	index    int    // position in the policy's from[]
	service  string // "" = any service
	tags     []tag  // all must match
	decision Decision
}

func (r *rule) matches(id *Identity) bool {
	if r.service != "" && r.service != id.Service {
		return false
	}
	for _, t := range r.tags {
		if t.key == ServiceTag {
			if id.Service != t.value {
				return false
			}
			continue
		}
		if v, ok := id.Tags[t.key]; !ok || v != t.value {
			return false
		}
	}
	return true
}

// before reports whether r takes precedence over o.
func (r *rule) before(o *rule) bool {
	if r.rank != o.rank {
		return r.rank > o.rank
	}
	if r.ntags != o.ntags {
		return r.ntags > o.ntags
	}
	if r.mesOnly != o.mesOnly {
		return r.mesOnly
	}
	if r.policy != o.policy {
		return r.policy < o.policy
	}
	return r.index > o.index
}

var protocols = map[string]bool{"tcp": true, "http": true, "http2": true, "grpc": true}

// Compile validates cfg and builds its Table. Errors name the offending
// service or policy.
func Compile(cfg *Config) (*Table, error) {
	if cfg.Source.Mesh == "" || cfg.Source.Service == "" {
		return nil, fmt.Errorf("source: mesh and service are required")
	}
	forbid := map[string]bool{}
	for _, m := range cfg.Meshes {
		if m.Name == "" {
			return nil, fmt.Errorf("meshes: entry without a name")
		}
		forbid[m.Name] = m.DefaultForbidMeshExternalServiceAccess
	}
	t := &Table{
		slab:    make([]Entry, len(cfg.Services)),
		entries: make([]*Entry, 0, len(cfg.Services)),
		source:  cfg.Source,
	}
	colds := make([]entryCold, len(cfg.Services))
	byName := make(map[[2]string]*Entry, len(cfg.Services)) // (mesh, name)
	// owners tracks which service set each key, to report collisions;
	// ambiguous collects host keys without port that two services share.
	owners := make(map[string]*Entry, 4*len(cfg.Services))
	ambiguous := map[string]bool{}
	for i := range cfg.Services {
		s := cfg.Services[i]
		if err := checkService(&s); err != nil {
			return nil, fmt.Errorf("services[%d] %q: %w", i, s.Name, err)
		}
		key := [2]string{s.Mesh, s.Name}
		if byName[key] != nil {
			return nil, fmt.Errorf("services[%d]: duplicate service %q in mesh %q", i, s.Name, s.Mesh)
		}
		e := &t.slab[i]
		e.Service = ServiceInfo{Name: s.Name, Mesh: s.Mesh, Cluster: s.Cluster, Protocol: s.Protocol, Hostnames: s.Hostnames, VIP: s.VIP, Port: s.Port}
		e.port = uint16(s.Port) // checked by checkService
		e.entryCold = &colds[i]
		e.sni = s.SNI
		byName[key] = e
		t.entries = append(t.entries, e)
		bare, withPort := hostKeys(&s)
		for _, k := range withPort {
			if o := owners[k]; o != nil && o != e {
				return nil, fmt.Errorf("services[%d] %q: host %q already belongs to service %q", i, s.Name, k, o.Service.Name)
			}
			owners[k] = e
		}
		for _, k := range bare {
			o := owners[k]
			switch {
			case o == nil || o == e:
				owners[k] = e
			case o.Service.Port != 0 && s.Port != 0 && o.Service.Port != s.Port:
				// Same name on different ports: only host:port is unambiguous.
				ambiguous[k] = true
			default:
				return nil, fmt.Errorf("services[%d] %q: host %q already belongs to service %q", i, s.Name, k, o.Service.Name)
			}
		}
	}
	for k, e := range owners {
		if !ambiguous[k] {
			e.hosts = append(e.hosts, k)
			t.hostKeys++
		}
	}
	recs := make([]hostRec, 0, len(owners))
	for i, e := range t.entries {
		sort.Strings(e.hosts)
		recs = appendHostRecs(recs, uint32(i), e.hosts)
	}
	t.index = buildHostIndex(recs, t.slab, rand.Uint64())

	if cfg.DefaultService != "" {
		for _, e := range t.entries {
			if e.Service.Name == cfg.DefaultService {
				if t.dflt != nil {
					return nil, fmt.Errorf("defaultService %q is ambiguous: it exists in meshes %q and %q", cfg.DefaultService, t.dflt.Service.Mesh, e.Service.Mesh)
				}
				t.dflt = e
			}
		}
		if t.dflt == nil {
			return nil, fmt.Errorf("defaultService %q is not among services", cfg.DefaultService)
		}
	}

	// Mesh-wide rules are shared by every MES of the mesh; MES rules by one.
	meshRules := map[string][]rule{}
	mesRules := map[*Entry][]rule{}
	// rules[] policies, likewise by mesh and by MES.
	meshMatches := map[string][]*compiledRules{}
	mesMatches := map[*Entry][]*compiledRules{}
	for i := range cfg.Policies {
		p := &cfg.Policies[i]
		rules, err := compilePolicy(p)
		if err != nil {
			return nil, fmt.Errorf("policies[%d] %q: %w", i, p.Name, err)
		}
		if len(p.Rules) > 0 {
			cr, err := compileRules(p)
			if err != nil {
				return nil, fmt.Errorf("policies[%d] %q: %w", i, p.Name, err)
			}
			if p.TargetRef.Kind == KindMesh {
				meshMatches[p.Mesh] = append(meshMatches[p.Mesh], cr)
			} else if e := byName[[2]string{p.Mesh, p.TargetRef.Name}]; e != nil {
				mesMatches[e] = append(mesMatches[e], cr)
			}
			continue
		}
		if p.TargetRef.Kind == KindMesh {
			meshRules[p.Mesh] = append(meshRules[p.Mesh], rules...)
			continue
		}
		if e := byName[[2]string{p.Mesh, p.TargetRef.Name}]; e != nil {
			for j := range rules {
				rules[j].mesOnly = true
			}
			mesRules[e] = append(mesRules[e], rules...)
		}
		// A policy for an MES this listener cannot reach is irrelevant here.
	}
	for _, e := range t.entries {
		rs := append(append([]rule(nil), mesRules[e]...), meshRules[e.Service.Mesh]...)
		sort.SliceStable(rs, func(a, b int) bool { return rs[a].before(&rs[b]) })
		e.rules = rs
		e.matches = matchesFor(e, append(append([]*compiledRules(nil), mesMatches[e]...), meshMatches[e.Service.Mesh]...))
		e.fallback = Decision{Action: Allow, Reason: ReasonMeshDefault}
		if forbid[e.Service.Mesh] {
			e.fallback.Action = Deny
		}
		owner := e.DecideFor(&t.source)
		e.ownerAction, e.ownerPolicy, e.ownerReason = actionIndex(owner.Action), owner.Policy, owner.Reason
	}
	return t, nil
}

func checkService(s *Service) error {
	if s.Name == "" || s.Mesh == "" || s.Cluster == "" {
		return fmt.Errorf("name, mesh and cluster are required")
	}
	if !protocols[s.Protocol] {
		return fmt.Errorf("protocol %q is not one of tcp, http, http2, grpc", s.Protocol)
	}
	if s.Port > 65535 {
		return fmt.Errorf("port %d out of range", s.Port)
	}
	for _, h := range s.Hostnames {
		if err := checkHostname(h); err != nil {
			return err
		}
	}
	if s.VIP != "" {
		if _, err := netip.ParseAddr(s.VIP); err != nil {
			return fmt.Errorf("vip %q: %w", s.VIP, err)
		}
	}
	return nil
}

func checkHostname(h string) error {
	n := strings.TrimSuffix(h, ".")
	if n == "" || len(n) > 253 {
		return fmt.Errorf("hostname %q: empty or longer than 253", h)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		ok := c == '-' || c == '.' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !ok {
			return fmt.Errorf("hostname %q: invalid character %q", h, c)
		}
	}
	return nil
}

// hostKeys lists the lookup keys of s: names and VIP, lower-case, without
// trailing dot, bare and (when s has a port) with ":port".
func hostKeys(s *Service) (bare, withPort []string) {
	port := ""
	if s.Port != 0 {
		port = ":" + strconv.FormatUint(uint64(s.Port), 10)
	}
	add := func(b string, p string) {
		bare = append(bare, b)
		if port != "" {
			withPort = append(withPort, p+port)
		}
	}
	for _, h := range s.Hostnames {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		add(h, h)
	}
	if s.VIP != "" {
		a, _ := netip.ParseAddr(s.VIP) // checked by checkService
		if a.Is4() || a.Is4In6() {
			v := a.Unmap().String()
			add(v, v)
		} else {
			v := a.String()
			bare = append(bare, v)
			add("["+v+"]", "["+v+"]")
		}
	}
	return bare, withPort
}

// appendHostRecs turns one entry's keys into hostIndex records: one per
// host, flagged for the bare and the host:port form it was given.
func appendHostRecs(recs []hostRec, entry uint32, keys []string) []hostRec {
	first := len(recs)
	for _, k := range keys {
		// Keys are canonical; a trailing dot left in one is part of the
		// name (hostname "a.." gives key "a."), so it is not trimmed here.
		host, port, hasPort, _ := splitHostPort(k)
		flag := uint8(flagBare)
		if hasPort {
			flag = flagPort
		}
		found := false
		for j := first; j < len(recs); j++ {
			if recs[j].host == host {
				recs[j].flags |= flag
				if hasPort {
					recs[j].port = port
				}
				found = true
				break
			}
		}
		if !found {
			recs = append(recs, hostRec{host: host, entry: entry, port: port, flags: flag})
		}
	}
	return recs
}

func compilePolicy(p *Policy) ([]rule, error) {
	if p.Name == "" || p.Mesh == "" {
		return nil, fmt.Errorf("name and mesh are required")
	}
	switch p.TargetRef.Kind {
	case KindMesh:
	case KindMeshExternalService:
		if p.TargetRef.Name == "" {
			return nil, fmt.Errorf("targetRef kind MeshExternalService needs a name")
		}
	default:
		return nil, fmt.Errorf("targetRef kind %q is not Mesh or MeshExternalService", p.TargetRef.Kind)
	}
	rules := make([]rule, 0, len(p.From))
	for i, f := range p.From {
		r := rule{policy: p.Name, index: i, decision: Decision{Action: f.Default.Action, Policy: p.Name, Reason: ReasonPolicy}}
		// The package constants replace the decoded strings, so checking
		// a decision's action reads no per-config memory.
		switch f.Default.Action {
		case Allow:
			r.decision.Action = Allow
		case Deny:
			r.decision.Action = Deny
		case AllowWithShadowDeny:
			r.decision.Action = AllowWithShadowDeny
		default:
			return nil, fmt.Errorf("from[%d]: action %q is not Allow, Deny or AllowWithShadowDeny", i, f.Default.Action)
		}
		rank, ok := fromRank[f.TargetRef.Kind]
		if !ok {
			return nil, fmt.Errorf("from[%d]: targetRef kind %q is not Mesh, MeshSubset, MeshService or MeshServiceSubset", i, f.TargetRef.Kind)
		}
		r.rank = rank
		switch f.TargetRef.Kind {
		case KindMeshService, KindMeshServiceSubset:
			if f.TargetRef.Name == "" {
				return nil, fmt.Errorf("from[%d]: targetRef kind %s needs a name", i, f.TargetRef.Kind)
			}
			r.service = f.TargetRef.Name
		}
		switch f.TargetRef.Kind {
		case KindMeshSubset, KindMeshServiceSubset:
			for k, v := range f.TargetRef.Tags {
				if k == "" {
					return nil, fmt.Errorf("from[%d]: empty tag key", i)
				}
				r.tags = append(r.tags, tag{k, v})
			}
			sort.Slice(r.tags, func(a, b int) bool { return r.tags[a].key < r.tags[b].key })
			r.ntags = len(r.tags)
		}
		rules = append(rules, r)
	}
	return rules, nil
}
