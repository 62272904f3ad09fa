package core

import (
	"fmt"
	"strings"
	"testing"
)

// benchInputs are the request hosts a benchmark cycles through.
type benchInputs struct {
	canonical []string // "svc-N.extsvc.mesh.local:443"
	mixed     []string // upper case and a trailing dot
	vip       []string // "242.x.y.z:443"
}

// benchTable compiles benchConfig.
func benchTable(b testing.TB, n int) (*Table, benchInputs) {
	b.Helper()
	cfg, in := benchConfig(n)
	tab, err := Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return tab, in
}

// benchConfig makes n MES, each with one generated hostname, a VIP and a
// port, plus a mesh-wide and a per-MES policy so decisions walk real rules.
func benchConfig(n int) (*Config, benchInputs) {
	cfg := &Config{Source: Identity{Mesh: "default", Service: "web", Tags: map[string]string{"team": "a"}}}
	cfg.Meshes = []Mesh{{Name: "default", DefaultForbidMeshExternalServiceAccess: true}}
	var canonical, mixed, vip []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d", i)
		v := fmt.Sprintf("242.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		cfg.Services = append(cfg.Services, Service{
			Name: name, Mesh: "default", Cluster: "mes_" + name, Protocol: "http", Port: 443,
			Hostnames: []string{name + ".extsvc.mesh.local"},
			VIP:       v,
		})
		canonical = append(canonical, name+".extsvc.mesh.local:443")
		// Upper case and a trailing dot exercise normalisation.
		mixed = append(mixed, "SVC-"+fmt.Sprint(i)+".Extsvc.Mesh.Local.:443")
		vip = append(vip, v+":443")
	}
	cfg.Policies = []Policy{
		{Name: "mesh-allow", Mesh: "default", TargetRef: TargetRef{Kind: KindMesh}, From: []From{{TargetRef: TargetRef{Kind: KindMeshSubset, Tags: map[string]string{"team": "a"}}, Default: Conf{Action: Allow}}}},
		{Name: "deny-0", Mesh: "default", TargetRef: TargetRef{Kind: KindMeshExternalService, Name: "svc-0"}, From: []From{{TargetRef: TargetRef{Kind: KindMeshService, Name: "web"}, Default: Conf{Action: Deny}}}},
	}
	return cfg, benchInputs{canonical: packed(canonical), mixed: packed(mixed), vip: packed(vip)}
}

// packed copies ss into one contiguous backing string, in order. In Envoy
// the authority a lookup reads was just parsed into the request's header
// map, so it is in cache. 100k separately allocated input strings would
// be scattered over the heap and add a cache miss per lookup that
// production does not pay; one buffer read in order is prefetched instead.
func packed(ss []string) []string {
	var sb strings.Builder
	for _, s := range ss {
		sb.WriteString(s)
	}
	all := sb.String()
	out := make([]string, len(ss))
	off := 0
	for i, s := range ss {
		out[i] = all[off : off+len(s)]
		off += len(s)
	}
	return out
}

// runDecision looks up auth round-robin. With hot == 0 it cycles through
// every host (each lookup touches cold memory at 100k); with hot > 0 only
// the first hot hosts are requested, the usual shape of real egress traffic.
func runDecision(b *testing.B, tab *Table, auth []string, hot int) {
	if hot > 0 && hot < len(auth) {
		auth = auth[:hot]
	}
	b.ReportAllocs()
	denied := 0
	for i := 0; b.Loop(); i++ {
		e := tab.Lookup(auth[i%len(auth)])
		if e == nil {
			b.Fatal("miss")
		}
		if !e.Decide().Allowed() {
			denied++
		}
	}
	if denied == 0 {
		b.Fatal("expected svc-0 to be denied")
	}
}

// BenchmarkDecision is the per-request work of both adapters: host lookup
// plus the decision for the listener owner. access=all cycles through every
// hostname; access=hot1k through 1,000 of them; case=mixed needs
// normalising (upper case, trailing dot); vip looks up "VIP:port"
// literals; serial makes each lookup wait for the previous one.
func BenchmarkDecision(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		tab, in := benchTable(b, n)
		b.Run(fmt.Sprintf("hosts=%d/access=all", n), func(b *testing.B) { runDecision(b, tab, in.canonical, 0) })
		if n > 1000 {
			b.Run(fmt.Sprintf("hosts=%d/access=hot1k", n), func(b *testing.B) { runDecision(b, tab, in.canonical, 1000) })
		}
		b.Run(fmt.Sprintf("hosts=%d/access=all/case=mixed", n), func(b *testing.B) { runDecision(b, tab, in.mixed, 0) })
		b.Run(fmt.Sprintf("hosts=%d/access=all/vip", n), func(b *testing.B) { runDecision(b, tab, in.vip, 0) })
		b.Run(fmt.Sprintf("hosts=%d/access=all/serial", n), func(b *testing.B) { runSerial(b, tab, in.canonical) })
	}
}

// runSerial makes each lookup's host depend on the previous result, so
// the CPU cannot overlap one lookup's cache misses with the next one's:
// this is the latency one isolated request sees (in Envoy, requests are
// separated by far more work than a benchmark loop).
func runSerial(b *testing.B, tab *Table, auth []string) {
	b.ReportAllocs()
	next := 0
	for b.Loop() {
		e := tab.Lookup(auth[next])
		if e == nil {
			b.Fatal("miss")
		}
		d := e.Decide()
		// len(d.Action) is 4, 5 or 19: a data dependency that keeps the
		// stride at one host but is unknown until the lookup finishes.
		next = (next + 1 + len(d.Action)/32) % len(auth)
	}
}

// BenchmarkDecisionSPIFFE adds parsing a client-certificate SPIFFE ID and
// walking the rules (no precomputed owner decision).
func BenchmarkDecisionSPIFFE(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		tab, in := benchTable(b, n)
		auth := in.canonical
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { runSPIFFE(b, tab, auth) })
	}
}

// runSPIFFE decides, host after host, for the caller spiffe://default/web
// as an adapter does with a client certificate: parse, look up, decide.
func runSPIFFE(b *testing.B, tab *Table, auth []string) {
	b.ReportAllocs()
	allowed := 0
	for i := 0; b.Loop(); i++ {
		id, ok := ParseSPIFFE("spiffe://default/web")
		if !ok {
			b.Fatal("parse")
		}
		e := tab.Lookup(auth[i%len(auth)])
		if e == nil {
			b.Fatal("miss")
		}
		if e.DecideFor(&id).Allowed() {
			allowed++
		}
	}
	benchSink = allowed
}

// benchSink keeps decisions from being optimised away.
var benchSink int

// BenchmarkCompile times Compile alone (the config is built once).
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		cfg, _ := benchConfig(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compile(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecisionRules is an egress's request: parse the caller's SPIFFE
// ID and walk Kuma 2.12 rules (a deny prefix, three allows, the caller
// matching the last one) instead of from[] rules.
func BenchmarkDecisionRules(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		cfg, in := benchConfig(n)
		exact := func(v string) Match { return Match{SpiffeID: &StringMatch{Type: MatchExact, Value: v}} }
		cfg.Policies = append(cfg.Policies, Policy{Name: "rules", Mesh: "default", TargetRef: TargetRef{Kind: KindMesh}, Rules: []Rule{{Default: RuleConf{
			Deny:  []Match{{SpiffeID: &StringMatch{Type: MatchPrefix, Value: "spiffe://default/legacy-"}}},
			Allow: []Match{exact("spiffe://default/api"), exact("spiffe://default/batch"), exact("spiffe://default/web")},
		}}}})
		tab, err := Compile(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { runSPIFFE(b, tab, in.canonical) })
	}
}
