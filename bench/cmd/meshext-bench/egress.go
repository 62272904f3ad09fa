package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/envoyproc"
)

// The egress section measures Kuma's egress path next to today's direct
// path, all rendered by the real `meshext render` from one resource set per
// variant and interleaved round by round like the data path section:
//
//	(c)  workload Envoy → upstream (mesh mTLS off, --plugin off; access is
//	     decided when rendering: no authorization filter in the workload Envoy)
//	(d)  the same with --plugin on (the same workload config: no filter either)
//	(e)  workload Envoy → mTLS, Kuma SNI → ZoneEgress Envoy → upstream,
//	     the egress's Go filter deciding each request by the caller's SPIFFE ID
//	(e') the same with --plugin off: native RBAC on the peer principal
//
// The egress variants carry a MeshTrafficPermission allowing exactly the
// bench workload's SPIFFE ID, so the egress really decides every request.

type egressVariant struct {
	key, name string
	egress    bool   // through a ZoneEgress (mesh mTLS on)
	plugin    string // meshext render --plugin
}

var egressVariants = []egressVariant{
	{"c", "direct: workload Envoy → upstream (mTLS off, access decided when rendering: no filter)", false, "off"},
	{"d", "direct, rendered with the Go filter on (the same workload config: no filter)", false, "on"},
	{"e", "workload Envoy → egress Envoy (Go filter) → upstream", true, "on"},
	{"e'", "workload Envoy → egress Envoy (native RBAC) → upstream", true, "off"},
}

// Indexes into egressVariants.
const (
	evC = iota
	evD
	evE
	evE2
)

var egressProtos = []struct{ key, name, upstream string }{
	{"http", "HTTP/1.1", "http"},
	{"tcp", "TCP (16 KiB echo)", "tcp"},
	{"grpc", "gRPC over h2c (health Check)", "grpc"},
}

// egressSkips says which variants a protocol does not run: a TCP service's
// config is the same with --plugin on or off (network RBAC either way).
func egressSkips(proto string, v int) string {
	if proto == "tcp" && (v == evD || v == evE2) {
		return "same config as " + map[int]string{evD: "(c)", evE2: "(e)"}[v] + ": TCP authorization is native network RBAC with either --plugin"
	}
	return ""
}

const (
	egressWorkload = "bench"
	egressName     = "bench-egress"
)

// egressPorts are one variant's listen ports, all ephemeral so the
// variants' Envoys run side by side.
type egressPorts struct {
	outbound                map[string]int // by protocol
	inbound, service, admin int
	egress, egressAdmin     int
	upstream                map[string]string // by protocol: host:port
}

// egressResources is the resource set of one variant: three MES (tcp, http,
// grpc) and a Dataplane with an outbound to each; through an egress also a
// Mesh with the builtin CA and zoneEgress routing, the ZoneEgress and a
// MeshTrafficPermission (Kuma 2.12 rules) allowing the workload's SPIFFE ID.
func egressResources(v egressVariant, p egressPorts) string {
	var b strings.Builder
	if v.egress {
		fmt.Fprintf(&b, `type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
routing:
  zoneEgress: true
---
type: ZoneEgress
name: %s
networking:
  address: 127.0.0.1
  port: %d
  admin:
    port: %d
---
type: MeshTrafficPermission
name: allow-bench
mesh: default
spec:
  targetRef: {kind: Mesh}
  rules:
    - default:
        allow:
          - spiffeID: {type: Exact, value: "spiffe://default/%s"}
---
`, egressName, p.egress, p.egressAdmin, egressWorkload)
	}
	for _, pr := range egressProtos {
		host, port, _ := net.SplitHostPort(p.upstream[pr.key])
		fmt.Fprintf(&b, `type: MeshExternalService
name: bench-%s
mesh: default
spec:
  match: {type: HostnameGenerator, port: %s, protocol: %s}
  endpoints: [{address: %s, port: %s}]
---
`, pr.key, port, mesProtocol(pr.key), host, port)
	}
	fmt.Fprintf(&b, `type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  inbound:
    - port: %d
      servicePort: %d
      serviceAddress: 127.0.0.1
      tags:
        kuma.io/service: %s
        kuma.io/protocol: tcp
  outbound:
`, egressWorkload, p.inbound, p.service, egressWorkload)
	for _, pr := range egressProtos {
		fmt.Fprintf(&b, "    - port: %d\n      backendRef: {kind: MeshExternalService, name: bench-%s}\n", p.outbound[pr.key], pr.key)
	}
	fmt.Fprintf(&b, "  admin:\n    port: %d\n", p.admin)
	return b.String()
}

// egressNodes are the rendered nodes (bootstrap directories under --out) a
// variant runs: the workload, then the egress.
func egressNodes(v egressVariant) []string {
	nodes := []string{"default." + egressWorkload}
	if v.egress {
		nodes = append(nodes, names.ZoneEgressNodeID(egressName))
	}
	return nodes
}

// egressSetup is one variant's running Envoys (workload first).
type egressSetup struct {
	ports    egressPorts
	envoys   []*envoyproc.Proc
	env      []string
	commands []string
	why      string
	// failWhat, when set, names the failed step: why then becomes a
	// failure (failed() is called after the parallel start, not in it).
	failWhat string
}

func (s *egressSetup) stop() {
	for _, e := range s.envoys {
		e.Stop()
	}
}

// cpuTicks sums the CPU ticks of every Envoy of the variant: the proxy
// cost of a request through an egress is both Envoys' work.
func (s *egressSetup) cpuTicks() (int64, error) {
	var sum int64
	for _, e := range s.envoys {
		t, err := envoyproc.CPUTicks(e.Pid())
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// startEgressVariant renders the variant's resources with `meshext render`
// and starts its Envoys, each pinned to the Envoy CPU.
func startEgressVariant(cfg *dpConfig, v egressVariant, ups map[string]string, stateDir string) *egressSetup {
	s := &egressSetup{}
	free := func() int {
		p, err := envoyproc.FreePort()
		if err != nil && s.why == "" {
			s.why = err.Error()
		}
		return p
	}
	s.ports = egressPorts{outbound: map[string]int{}, upstream: ups,
		inbound: free(), service: free(), admin: free(), egress: free(), egressAdmin: free()}
	for _, pr := range egressProtos {
		s.ports.outbound[pr.key] = free()
	}
	if s.why != "" {
		return s
	}
	dir := filepath.Join(cfg.workDir, "egress-"+variantDir(v.key))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.why = err.Error()
		return s
	}
	res := filepath.Join(dir, "resources.yaml")
	if err := os.WriteFile(res, []byte(egressResources(v, s.ports)), 0o644); err != nil {
		s.why = err.Error()
		return s
	}
	out := filepath.Join(dir, "out")
	// One state directory for all variants: the mesh CA is made once.
	argv := []string{cfg.render.meshext, "render", res, "--out", out, "--state-dir", stateDir, "--plugin", v.plugin}
	if o, err := runBounded(60*time.Second, argv[0], argv[1:]...); err != nil {
		s.why, s.failWhat = fmt.Sprintf("%v: %s", err, lastLines(o, 3)), "egress render ("+v.key+")"
		return s
	}
	s.commands = []string{"# resources: " + res, shellJoin(relArgv(argv))}
	s.env = []string{"GODEBUG=cgocheck=0", "ENVOY_DYNAMIC_MODULES_SEARCH_PATH=" + filepath.Dir(cfg.render.plugin)}
	for _, node := range egressNodes(v) {
		boot := filepath.Join(out, names.PathElement(node), "bootstrap.json")
		if _, err := os.Stat(boot); err != nil {
			s.why, s.failWhat = "this meshext render wrote no "+node+" node (no ZoneEgress support?)", "egress ("+v.key+") render"
			return s
		}
		e, err := envoyproc.Start(envoyproc.Pinned(cfg.envoy, boot, dir, names.PathElement(node), s.env))
		if err == nil {
			s.envoys = append(s.envoys, e)
			err = cfg.pinEnvoy(e)
		}
		if err != nil {
			s.why, s.failWhat = err.Error(), fmt.Sprintf("egress (%s) Envoy %s", v.key, node)
			return s
		}
		s.commands = append(s.commands, fmt.Sprintf("%s$(make -s envoy) -c %s --concurrency 1 --disable-hot-restart &", envPrefix(s.env), boot))
	}
	// Every listener must accept before the first load.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, pr := range egressProtos {
		if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", s.ports.outbound[pr.key])); err != nil {
			s.why, s.failWhat = err.Error(), "egress ("+v.key+") outbound "+pr.key
			return s
		}
	}
	if v.egress {
		if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", s.ports.egress)); err != nil {
			s.why, s.failWhat = err.Error(), "egress ("+v.key+") ZoneEgress listener"
		}
	}
	return s
}

// variantDir is a variant key as a directory name ("e'" → "e2").
func variantDir(key string) string { return strings.ReplaceAll(key, "'", "2") }

// egressSection is main's hook: the egress section with the data path's
// client settings.
func egressSection(ctx context.Context, o options, work string, quick bool) string {
	return runEgress(ctx, dpConfig{
		envoy: o.envoy, wrk: lookPath("wrk"), h2load: lookPath("h2load"),
		durations: o.durations, rounds: o.rounds, warmup: map[bool]time.Duration{false: time.Second, true: 0}[quick],
		workDir: work, conns: map[string]int{"tcp": 8, "http": 16, "grpc": 4}, streams: 8,
		render: renderer{meshext: o.meshext, plugin: o.plugin},
		pin:    o.pin,
	})
}

// runEgress measures the egress path and returns the Markdown section.
func runEgress(ctx context.Context, cfg dpConfig) string {
	defer cfg.pinLoad()()
	var md strings.Builder
	md.WriteString("## 1c. Egress path: workload → ZoneEgress → upstream\n\n")
	fmt.Fprintf(&md, "Kuma's egress path next to the direct path, every config rendered by `meshext render` from one resource set per variant (three MeshExternalServices: tcp, http, grpc; a Dataplane `bench` with an outbound to each). "+
		"Variants, interleaved in each of %d round(s) (c, d, e, e' in the first, each later round starting one variant later) of %s (after a %s warm-up per variant), each cell the median over rounds: "+
		"(c) %s; (d) %s (`--plugin on`); (e) %s: mesh mTLS with the builtin CA, the workload Envoy originates mTLS with Kuma's SNI to a ZoneEgress Envoy, which checks the client certificate, "+
		"and its Go filter (`bin/libmeshext.so`, stock-Envoy dynamic module) decides every request from the caller's SPIFFE ID against a MeshTrafficPermission (Kuma 2.12 `rules`) allowing exactly `spiffe://default/bench`, then the egress forwards to the upstream; "+
		"(e') %s (`--plugin off`: the same policy as native HTTP RBAC on the peer principal). TCP services get network RBAC at the egress with either `--plugin`, so TCP runs (c) and (e) only. "+
		"Envoy CPU is the utime+stime delta of every Envoy of the variant, summed (workload + egress for (e), (e')); CPU/req divides it by completed requests. %s "+
		"The ratios (e)/(c) (the whole price of the egress hop, mTLS and authorization at the egress, against today's direct path), (e)/(d) (the same against (d), whose workload config equals (c)'s since access on the direct path is decided when rendering) and (e)/(e') (the egress's Go filter against native RBAC) are medians of per-round ratios.\n\n",
		cfg.rounds, cfg.durations, cfg.warmup,
		egressVariants[evC].name, egressVariants[evD].name, egressVariants[evE].name, egressVariants[evE2].name, egressCPUPlacement(&cfg))
	var missing []string
	if cfg.envoy == "" {
		missing = append(missing, "Envoy binary (make envoy)")
	}
	if cfg.render.meshext == "" {
		missing = append(missing, "bin/meshext (make build)")
	}
	if cfg.render.plugin == "" {
		missing = append(missing, "bin/libmeshext.so (make plugin)")
	}
	if cfg.wrk == "" {
		missing = append(missing, "wrk (apt-get install wrk)")
	}
	if cfg.h2load == "" {
		missing = append(missing, "h2load (apt-get install nghttp2-client)")
	}
	if len(missing) > 0 {
		fmt.Fprintf(&md, "%s\n\n", notAvailable("egress path", "missing "+strings.Join(missing, ", ")))
		return md.String()
	}
	if h := cfg.render.renderHelp(); !strings.Contains(h, "-plugin") {
		fmt.Fprintf(&md, "%s\n\n", notAvailable("egress path", "this meshext render has no --plugin flag"))
		return md.String()
	}

	// One upstream per protocol, shared by every variant.
	ups := map[string]string{}
	for _, pr := range egressProtos {
		up, err := startUpstream(pr.upstream, "", "")
		if err != nil {
			fmt.Fprintf(&md, "%s\n\n", failed("egress path upstream "+pr.key, err))
			return md.String()
		}
		defer up.stop()
		ups[pr.key] = up.addr
	}
	fmt.Fprintln(os.Stderr, "bench: egress path: rendering and starting the variants")
	stateDir := filepath.Join(cfg.workDir, "egress-state")
	setups := make([]*egressSetup, len(egressVariants))
	// The mesh CA is made by the first egress render; the others reuse it.
	setups[evE] = startEgressVariant(&cfg, egressVariants[evE], ups, stateDir)
	var wg sync.WaitGroup
	for i, v := range egressVariants {
		if i == evE {
			continue
		}
		wg.Add(1)
		go func(i int, v egressVariant) {
			defer wg.Done()
			setups[i] = startEgressVariant(&cfg, v, ups, stateDir)
		}(i, v)
	}
	wg.Wait()
	for _, s := range setups {
		if s.failWhat != "" {
			s.why = failed(s.failWhat, s.why)
		}
	}
	defer func() {
		for _, s := range setups {
			s.stop()
		}
	}()

	var summary, detail strings.Builder
	summary.WriteString("| protocol | (e)/(c) throughput | (e)/(d) | (e)/(e') | Envoy CPU/req (e)/(c) | (e)/(d) | (e)/(e') |\n|---|---|---|---|---|---|---|\n")
	for _, pr := range egressProtos {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "bench: egress path %s\n", pr.key)
		runs := measureEgressProto(ctx, cfg, pr.key, setups)
		mbps := pr.key == "tcp"
		unit := "req/s"
		if mbps {
			unit = "MB/s"
		}
		fmt.Fprintf(&detail, "### Egress path, %s\n\n| variant | %s | p50 | p99 | Envoy CPU (sum) | Envoy CPU/req (sum) | errors |\n|---|---|---|---|---|---|---|\n", pr.name, unit)
		byKey := map[string]*variantRun{}
		var idle []string
		for i, v := range egressVariants {
			r := runs[i]
			if r.why != "" {
				fmt.Fprintf(&detail, "| (%s) %s | %s | | | | | |\n", v.key, v.name, whyCell(r.why))
				continue
			}
			if len(r.results) == 0 {
				fmt.Fprintf(&detail, "| (%s) %s | %s | | | | | |\n", v.key, v.name, failed(fmt.Sprintf("egress path %s (%s)", pr.key, v.key), strings.Join(r.errs, "; ")))
				continue
			}
			byKey[v.key] = r
			thr, p50, p99, cpu, cpuReq, errs := summarize(r, mbps)
			thrCell := fmt.Sprintf("%.0f", thr)
			if mbps {
				thrCell = fmt.Sprintf("%.1f", thr)
			}
			if lo, hi := spread(r, mbps); len(r.results) > 1 {
				thrCell += fmt.Sprintf(" (%.0f–%.0f)", lo, hi)
			}
			errCell := strconv.FormatInt(errs, 10)
			if len(r.errs) > 0 {
				errCell += " (" + oneLine(strings.Join(r.errs, "; ")) + ")"
			}
			fmt.Fprintf(&detail, "| (%s) %s | %s | %s | %s | %.0f %% | %.1f µs | %s |\n", v.key, v.name, thrCell, fmtDur(p50), fmtDur(p99), cpu*100, cpuReq*1e6, errCell)
			if notSaturated(cpu) {
				idle = append(idle, fmt.Sprintf("(%s) %.0f %%", v.key, cpu*100))
			}
		}
		if len(idle) > 0 {
			fmt.Fprintf(&detail, "\nNot saturated: the Envoy CPU was %s of the one core, so the limit was elsewhere (client, upstream, the host's other work, or an idle CPU: a lone Envoy without Go lets its pinned CPU idle between bursts, where two Envoys or a Go runtime keep it busy; see section 1b); read those rows' throughput as a floor and compare CPU/req.\n", strings.Join(idle, ", "))
		}
		detail.WriteString("\nReproduce (the resources and rendered configs are kept in the work directory named at the top; ports were ephemeral):\n\n```\n")
		fmt.Fprintf(&detail, "# upstream (the resources name its address)\n%s\n", strings.TrimSuffix(upstreamCommand(pr.upstream, cfg.workDir), " &")+" -addr "+ups[pr.key]+" &")
		for i, v := range egressVariants {
			s := setups[i]
			if runs[i].why != "" || s.why != "" {
				continue
			}
			spec := loadSpec{Proto: pr.key, Target: fmt.Sprintf("127.0.0.1:%d", s.ports.outbound[pr.key]), Conns: cfg.conns[pr.key], Streams: cfg.streams, Duration: cfg.durations, WorkDir: cfg.workDir}
			fmt.Fprintf(&detail, "# (%s) %s\n%s\n%s\n", v.key, v.name, strings.Join(s.commands, "\n"), shellJoin(spec.command(cfg.wrk, cfg.h2load)))
		}
		detail.WriteString("```\n\n")
		fmt.Fprintf(&summary, "| %s | %s | %s | %s | %s | %s | %s |\n", pr.name,
			ratio(paired(byKey["e"], byKey["c"], mbps)), ratio(paired(byKey["e"], byKey["d"], mbps)), ratio(paired(byKey["e"], byKey["e'"], mbps)),
			ratio(pairedCPU(byKey["e"], byKey["c"])), ratio(pairedCPU(byKey["e"], byKey["d"])), ratio(pairedCPU(byKey["e"], byKey["e'"])))
	}
	md.WriteString(summary.String())
	md.WriteString("\n")
	md.WriteString(detail.String())
	if notes := egressDecisions(setups); len(notes) > 0 {
		fmt.Fprintf(&md, "Decisions counted by the Envoys over the whole section (warm-ups included), proof of where authorization ran: %s.\n\n", strings.Join(notes, "; "))
	}
	return md.String()
}

// measureEgressProto runs one protocol's load on every variant, interleaved
// round by round.
func measureEgressProto(ctx context.Context, cfg dpConfig, proto string, setups []*egressSetup) []*variantRun {
	runs := make([]*variantRun, len(egressVariants))
	for i := range runs {
		s := setups[i]
		runs[i] = &variantRun{why: s.why}
		if why := egressSkips(proto, i); why != "" && s.why == "" {
			runs[i].why = why
		}
		if len(s.envoys) > 0 {
			runs[i].envoy = s.envoys[0]
		}
		runs[i].target = fmt.Sprintf("127.0.0.1:%d", s.ports.outbound[proto])
	}
	spec := func(r *variantRun, d time.Duration) loadSpec {
		return loadSpec{Proto: proto, Target: r.target, Conns: cfg.conns[proto], Streams: cfg.streams, Duration: d, WorkDir: cfg.workDir}
	}
	if cfg.warmup > 0 {
		for i, r := range runs {
			if r.why != "" {
				continue
			}
			what := fmt.Sprintf("egress path %s (%s) warm-up", proto, egressVariants[i].key)
			if res, err := runLoad(ctx, spec(r, cfg.warmup), cfg.wrk, cfg.h2load); err != nil {
				r.why = failed(what, err)
			} else if res.Requests == 0 {
				r.why = failed(what, "completed no requests")
			}
		}
	}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		// Each round starts one variant later, so no variant always runs
		// first (after set-up or a pause) or right after the same one.
		for _, i := range roundOrder(len(runs), round) {
			r := runs[i]
			if r.why != "" {
				continue
			}
			t0, err0 := setups[i].cpuTicks()
			res, err := runLoad(ctx, spec(r, cfg.durations), cfg.wrk, cfg.h2load)
			if err != nil {
				r.errs = append(r.errs, err.Error())
				continue
			}
			t1, err1 := setups[i].cpuTicks()
			if err0 == nil && err1 == nil {
				r.cpu = append(r.cpu, float64(t1-t0)/envoyproc.ClockTicks)
			}
			r.results = append(r.results, res)
			r.round = append(r.round, round)
		}
	}
	return runs
}

// notSaturated says whether a variant's Envoys (summed, share of one core)
// left the Envoy CPU idle much of the run: closed-loop load should keep it
// near 100 %.
func notSaturated(cpu float64) bool { return cpu > 0 && cpu < 0.6 }

// roundOrder is the order of n variants in a round: rotated by round.
func roundOrder(n, round int) []int {
	order := make([]int, n)
	for k := range order {
		order[k] = (k + round) % n
	}
	return order
}

// egressDecisions is the proof that the authorization ran where the
// variant says: per variant, the deciding Envoy's (the egress's, else the
// workload's) Go filter counters (HTTP and gRPC, --plugin on) and native
// RBAC counters (HTTP RBAC with --plugin off; network RBAC for TCP).
func egressDecisions(setups []*egressSetup) []string {
	var out []string
	for i, v := range egressVariants {
		s := setups[i]
		if s.why != "" || len(s.envoys) == 0 {
			continue
		}
		e, where := s.envoys[0], "workload"
		if v.egress {
			e, where = s.envoys[len(s.envoys)-1], "egress"
		}
		what := "native RBAC " + rbacDecisions(e)
		if v.plugin == "on" {
			what = "Go filter " + filterDecisions(e) + ", " + what
		}
		out = append(out, fmt.Sprintf("(%s) %s Envoy: %s", v.key, where, what))
	}
	return out
}

// rbacDecisions sums the allowed and denied counters of every (network or
// HTTP) RBAC filter of an Envoy, shadow rules left out.
func rbacDecisions(e *envoyproc.Proc) string {
	body, err := e.Get("/stats?filter=rbac\\.(allowed|denied)$")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	allowed, denied := sumRBACStats(body)
	return fmt.Sprintf("%d allowed, %d denied", allowed, denied)
}

// sumRBACStats adds up "<prefix>rbac.allowed: N" and "...rbac.denied: N"
// lines of Envoy's /stats text, skipping shadow-rule counters.
func sumRBACStats(body string) (allowed, denied int64) {
	for _, l := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ": ")
		if !ok || strings.Contains(k, "shadow") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(k, "rbac.allowed"):
			allowed += n
		case strings.HasSuffix(k, "rbac.denied"):
			denied += n
		}
	}
	return allowed, denied
}

// egressCPUPlacement says where the Envoys ran: with pinning, every Envoy
// of every variant shares the one Envoy CPU, so an egress variant's two
// Envoys split one core between them (the proxy tier gets the same CPU in
// every variant).
func egressCPUPlacement(cfg *dpConfig) string {
	if !cfg.pinned {
		return "Clients, Envoys and upstreams share the machine's cores."
	}
	for c := 0; c < len(cfg.envoyCPU)*64; c++ {
		if cfg.envoyCPU.IsSet(c) {
			return fmt.Sprintf("Every Envoy runs with `--concurrency 1` pinned to CPU %d (sched_setaffinity on all its threads), so in (e) and (e') the workload and the egress Envoy share that one core; clients, upstreams and this harness run on the other CPUs.", c)
		}
	}
	return ""
}
