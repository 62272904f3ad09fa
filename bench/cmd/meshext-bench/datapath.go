package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/plugin/envoytest"
)

// Variants, in the order they are interleaved in every round.
var variants = []struct{ key, name string }{
	{"a", "direct to upstream"},
	{"b", "hand-written Envoy"},
	{"c+p", "rendered with a policy set"},
	{"c", "meshext-rendered Envoy"},
	{"d", "rendered + Go filter"},
	// A second process of (b)'s config: (b')/(b) is what two identical
	// Envoys read on this host, the noise floor the ratios above sit on.
	{"b'", "hand-written Envoy again"},
}

// Indexes into variants.
const (
	vA = iota
	vB
	vCP
	vC
	vD
	vB2
)

var protos = []struct{ key, name, upstream string }{
	{"tcp", "TCP (16 KiB echo)", "tcp"},
	{"http", "HTTP/1.1", "http"},
	{"grpc", "gRPC over h2c (health Check)", "grpc"},
	{"tls", "HTTP/1.1 → TLS origination", "https"},
}

// The server name the test upstream's certificate carries; Envoy verifies it.
const upstreamServerName = "upstream.bench.meshext.local"

type dpConfig struct {
	envoy, wrk, h2load string
	durations          time.Duration
	rounds             int
	warmup             time.Duration
	workDir            string
	conns              map[string]int // per protocol, the same for every variant
	streams            int
	render             renderer
	// pin gives each Envoy the last CPU and everything else (this process,
	// its upstreams, wrk, h2load) the others.
	pin      bool
	envoyCPU unix.CPUSet // set by runDataPath when pinning applies
	pinned   bool
	// instructions: whether and how to count Envoy's instructions per
	// request under callgrind, after the timed runs.
	instructions irConfig
}

// pinEnvoy moves a started Envoy onto its CPU when pinning applies.
func (cfg *dpConfig) pinEnvoy(p *envoyproc.Proc) error {
	if !cfg.pinned {
		return nil
	}
	return envoyproc.Pin(p.Pid(), cfg.envoyCPU)
}

// variantRun is one variant's set-up for one protocol.
type variantRun struct {
	target   string
	https    bool
	envoy    *envoyproc.Proc
	opts     envoyproc.Options // how envoy was started
	why      string            // non-empty: no figures (failed: ..., else not available)
	results  []loadResult
	round    []int     // the round of each result, to pair variants
	cpu      []float64 // Envoy CPU seconds per run
	errs     []string
	ir       float64 // instructions per request under callgrind, 0: not counted
	irWorker float64 // the same, the busiest thread (the worker) only
	irWhy    string  // why ir is missing (failed: ..., else not available)
}

type pki struct {
	caFile, certFile, keyFile string
}

func makePKI(dir string) (pki, error) {
	ca, err := testpki.NewCA(testpki.CommonName("meshext bench CA"))
	if err != nil {
		return pki{}, err
	}
	leaf, err := ca.Issue(testpki.DNSNames(upstreamServerName), testpki.IPs("127.0.0.1"), testpki.ServerAuth())
	if err != nil {
		return pki{}, err
	}
	p := pki{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "upstream.pem"), filepath.Join(dir, "upstream-key.pem")}
	if err := ca.WriteCertPEM(p.caFile); err != nil {
		return p, err
	}
	return p, leaf.WriteFiles(p.certFile, p.keyFile)
}

// pinLoad, when cfg.pin, moves this process (and what it starts) to the
// load CPUs and records the Envoy CPU in cfg; the returned func restores
// the affinity.
func (cfg *dpConfig) pinLoad() (restore func()) {
	if !cfg.pin {
		return func() {}
	}
	envoyCPU, loadCPU, ok := envoyproc.CPUSplit()
	prev, err := envoyproc.Affinity()
	if !ok || err != nil || envoyproc.Pin(0, loadCPU) != nil {
		return func() {}
	}
	cfg.envoyCPU, cfg.pinned = envoyCPU, true
	return func() { _ = envoyproc.Pin(0, prev) }
}

// runDataPath measures every protocol and returns the Markdown section.
func runDataPath(ctx context.Context, cfg dpConfig) string {
	defer cfg.pinLoad()()
	var md strings.Builder
	md.WriteString("## 1. Data path\n\n")
	var missing []string
	if cfg.envoy == "" {
		missing = append(missing, "Envoy binary (make envoy)")
	}
	if cfg.wrk == "" {
		missing = append(missing, "wrk (apt-get install wrk)")
	}
	if cfg.h2load == "" {
		missing = append(missing, "h2load (apt-get install nghttp2-client)")
	}
	fmt.Fprintf(&md, "Every variant of a protocol runs in the same invocation, interleaved a, b, c+p, c, d, b' in each of %d round(s) of %s (after a %s warm-up per variant); each cell is the median over rounds (throughput: median, then the lowest–highest round in brackets). The summary ratios are medians of per-round ratios (x and y from the same round share the host's background load); "+
		"Envoy CPU per request ratios (lower is cheaper) are the steadier signal on a busy host. "+
		"This table carries no targets: its noise floor (b')/(b), two Envoys with the same config, moves with the host's drift between runs seconds apart, often by more than the 3 %% the data-path targets allow. "+
		"The targets (c)/(b) and (c+p)/(b) ≥ 0.97 are read side by side (the next table), and the Go filter's from section 1b (against the C reference module and native RBAC); (d)/(c) here is a Go module's whole price against no filter at all. "+
		"Envoy runs with `--concurrency 1` (one worker); clients use the same connection count for every variant of a protocol. "+
		"Load is closed-loop, so latencies are at saturation, not at a fixed rate. Envoy CPU = utime+stime delta of the Envoy process from /proc/<pid>/stat during the run "+
		"(100 %% = one core); CPU/req = Envoy CPU time divided by completed requests. %s\n\n",
		cfg.rounds, cfg.durations, cfg.warmup, cpuPlacement(&cfg))
	fmt.Fprintf(&md, "Variants: (a) %s; (b) %s (static config, STATIC cluster, no access log); (c+p) %s ((c)'s resources plus a second MeshExternalService with its own outbound and two MeshTrafficPermissions: one allows the bench Dataplane to the measured service, one denies it the second; access decided when rendering, so the allowed outbound must cost what (c)'s does); "+
		"(c) %s (a generated MES + a Dataplane with an outbound on 127.0.0.1, rendered by `meshext render --plugin off`: access decided when rendering, so the allowed outbound carries no authorization filter; run from its static `bootstrap.json`; Envoy's stdout, hence the access log, goes to a file); "+
		"(d) %s ((c) with the meshext Go filter, `bin/libmeshext.so` in stock Envoy's `envoy.filters.http.dynamic_modules`, before the router, deciding every request as it does where render keeps it (a shadow denial); every request is allowed after a table lookup; inserted by this harness when `meshext render` decided access itself); "+
		"(b') %s ((b)'s config in a second Envoy process: (b')/(b) would be 1.00 on a quiet host, so its distance from 1 is this run's noise floor for every ratio beside it).\n\n",
		variants[vA].name, variants[vB].name, variants[vCP].name, variants[vC].name, variants[vD].name, variants[vB2].name)
	if len(missing) > 0 {
		fmt.Fprintf(&md, "%s\n\n", notAvailable("data path", "missing "+strings.Join(missing, ", ")))
		return md.String()
	}
	certs, err := makePKI(cfg.workDir)
	if err != nil {
		fmt.Fprintf(&md, "not available: test PKI: %v\n\n", err)
		return md.String()
	}
	var summary strings.Builder
	summary.WriteString("| protocol | (c)/(b) throughput | (c+p)/(b) throughput | (d)/(c) throughput | Envoy CPU/req (c)/(b) | (c+p)/(b) | (d)/(c) | noise floor: (b')/(b) throughput | Envoy CPU/req (b')/(b) |\n|---|---|---|---|---|---|---|---|---|\n")
	var detail, sideBySide strings.Builder
	var irRows []string
	for _, p := range protos {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "bench: data path %s\n", p.key)
		runs, cmds, extras, sbs, why := measureProto(ctx, cfg, p.key, p.upstream, certs)
		fmt.Fprintf(&detail, "### %s\n\n", p.name)
		if why != "" {
			fmt.Fprintf(&detail, "not available: %s\n\n", why)
			fmt.Fprintf(&summary, "| %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n", p.name)
			fmt.Fprintf(&sideBySide, "| %s | n/a | | n/a | n/a | | n/a | n/a | n/a | n/a | n/a | not available |\n", p.name)
			continue
		}
		sideBySide.WriteString(sbsRow(p.name, sbs))
		if ic := cfg.instructions; ic.valgrind != "" && (ic.protos == nil || ic.protos[p.key]) {
			irRows = append(irRows, irRow(p.name, runs))
		}
		tcp := p.key == "tcp"
		unit := "req/s"
		if p.key == "tcp" {
			unit = "MB/s"
		}
		fmt.Fprintf(&detail, "| variant | %s | p50 | p99 | Envoy CPU | Envoy CPU/req | errors |\n|---|---|---|---|---|---|---|\n", unit)
		med := map[string]float64{}
		byKey := map[string]*variantRun{}
		for i, v := range variants {
			r := runs[i]
			if r.why != "" {
				fmt.Fprintf(&detail, "| (%s) %s | %s | | | | | |\n", v.key, v.name, whyCell(r.why))
				continue
			}
			if len(r.results) == 0 {
				fmt.Fprintf(&detail, "| (%s) %s | %s | | | | | |\n", v.key, v.name, failed(fmt.Sprintf("data path %s (%s)", p.key, v.key), strings.Join(r.errs, "; ")))
				continue
			}
			thr, p50, p99, cpu, cpuReq, errs := summarize(r, p.key == "tcp")
			med[v.key] = thr
			byKey[v.key] = r
			cpuCell, reqCell := "n/a (no Envoy)", "n/a"
			// r.cpu, not r.envoy: the instruction counts replace the Envoy.
			if len(r.cpu) > 0 {
				cpuCell = fmt.Sprintf("%.0f %%", cpu*100)
				reqCell = fmt.Sprintf("%.1f µs", cpuReq*1e6)
			}
			thrCell := fmt.Sprintf("%.0f", thr)
			if p.key == "tcp" {
				thrCell = fmt.Sprintf("%.1f", thr)
			}
			if lo, hi := spread(r, p.key == "tcp"); len(r.results) > 1 {
				thrCell += fmt.Sprintf(" (%.0f–%.0f)", lo, hi)
			}
			errCell := strconv.FormatInt(errs, 10)
			if len(r.errs) > 0 {
				errCell += " (" + oneLine(strings.Join(r.errs, "; ")) + ")"
			}
			fmt.Fprintf(&detail, "| (%s) %s | %s | %s | %s | %s | %s | %s |\n", v.key, v.name, thrCell, fmtDur(p50), fmtDur(p99), cpuCell, reqCell, errCell)
		}
		if len(extras) > 0 {
			fmt.Fprintf(&detail, "\nNotes: %s.\n", strings.Join(extras, "; "))
		}
		detail.WriteString("\nReproduce (the configs are kept in the work directory named at the top; ports were ephemeral):\n\n```\n")
		fmt.Fprintf(&detail, "# upstream\n%s\n", upstreamCommand(p.upstream, cfg.workDir))
		for i, v := range variants {
			if cmds[i] != "" {
				fmt.Fprintf(&detail, "# (%s) %s\n%s\n", v.key, v.name, cmds[i])
			}
		}
		detail.WriteString("```\n\n")
		fmt.Fprintf(&summary, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.name,
			ratio(paired(byKey["c"], byKey["b"], tcp)), ratio(paired(byKey["c+p"], byKey["b"], tcp)), ratio(paired(byKey["d"], byKey["c"], tcp)),
			ratio(pairedCPU(byKey["c"], byKey["b"])), ratio(pairedCPU(byKey["c+p"], byKey["b"])), ratio(pairedCPU(byKey["d"], byKey["c"])),
			ratio(paired(byKey["b'"], byKey["b"], tcp)), ratio(pairedCPU(byKey["b'"], byKey["b"])))
	}
	md.WriteString(summary.String())
	fmt.Fprintf(&md, "\n**Side by side.** The same Envoys again, two at a time: the two of a pair are loaded at once, each by its own client, both on the Envoy CPU, in %d round(s) of %s (the pairs' order rotating each round). "+
		"Whatever the host does in those seconds it does to both, and the scheduler gives each half of the CPU, so each one's throughput is its half over its own cost per request: "+
		"the ratio no longer carries the drift between runs that the table above does. Each cell is the median of per-round ratios, then the lowest–highest round; "+
		"Envoy CPU/req is from the scheduler's per-thread clock (/proc/<pid>/task/*/schedstat, ns). (b')/(b) is this method's noise floor. "+
		"(d)/(c) has no target here: a Go runtime in an Envoy that shares its CPU fares worse than alone (its threads wake hundreds of times a second on that CPU), so this table overstates (d)'s cost; the interleaved table is (d)'s measure.\n\n", cfg.rounds, cfg.durations)
	md.WriteString(sbsHeader)
	md.WriteString(sideBySide.String())
	md.WriteString("\n")
	md.WriteString(irSection(cfg, irRows))
	md.WriteString(detail.String())
	return md.String()
}

func measureProto(ctx context.Context, cfg dpConfig, proto, upKind string, certs pki) ([]*variantRun, []string, []string, []sbsResult, string) {
	cert, key := "", ""
	if upKind == "https" {
		cert, key = certs.certFile, certs.keyFile
	}
	up, err := startUpstream(upKind, cert, key)
	if err != nil {
		return nil, nil, nil, nil, err.Error()
	}
	defer up.stop()
	upHost, upPortS, _ := net.SplitHostPort(up.addr)
	upPort, _ := strconv.Atoi(upPortS)

	runs := make([]*variantRun, len(variants))
	cmds := make([]string, len(variants))
	for i := range runs {
		runs[i] = &variantRun{}
	}
	// (a) direct.
	runs[vA].target, runs[vA].https = up.addr, proto == "tls"
	// (b) hand-written.
	hand := handParams{Proto: proto, UpHost: upHost, UpPort: upPort, CAFile: certs.caFile, ServerName: upstreamServerName}
	startHand(cfg, runs[vB], &cmds[vB], hand, proto+"-b")
	startHand(cfg, runs[vB2], &cmds[vB2], hand, proto+"-b2")
	// (c) rendered, (c+p) rendered with a policy set, (d) rendered + filter.
	var extras []string
	for _, vi := range []int{vC, vCP, vD} {
		rc, err := cfg.render.config(renderRequest{Proto: proto, UpHost: upHost, UpPort: upPort, CAFile: certs.caFile,
			ServerName: upstreamServerName, WithFilter: vi == vD, WithPolicies: vi == vCP, Dir: filepath.Join(cfg.workDir, proto+"-"+variants[vi].key)})
		if err != nil {
			runs[vi].why = err.Error()
			continue
		}
		if vi == vC {
			extras = append(rc.Extras, extras...)
		}
		if vi == vCP {
			extras = append(extras, rc.PolicyNote)
		}
		if vi == vD && rc.FilterByHarness {
			extras = append(extras, "this meshext render does not emit the Go filter, so meshext-bench inserted it into (d) before the router")
		}
		runs[vi].opts = envoyproc.Pinned(cfg.envoy, rc.ConfigPath, cfg.workDir, proto+"-"+variants[vi].key, rc.Env)
		runs[vi].envoy, err = envoyproc.Start(runs[vi].opts)
		if err == nil {
			err = cfg.pinEnvoy(runs[vi].envoy)
		}
		if err != nil {
			runs[vi].why = failed(fmt.Sprintf("data path %s (%s) Envoy", proto, variants[vi].key), err)
			continue
		}
		runs[vi].target = rc.Target
		cmds[vi] = strings.Join(rc.Commands, "\n") + fmt.Sprintf("\n%s$(make -s envoy) -c %s --concurrency 1 --disable-hot-restart", envPrefix(rc.Env), rc.ConfigPath)
	}
	defer func() {
		for _, r := range runs {
			r.envoy.Stop()
		}
	}()
	for i, r := range runs {
		if r.why != "" {
			continue
		}
		what := fmt.Sprintf("data path %s (%s) warm-up", proto, variants[i].key)
		spec := loadSpec{Proto: proto, Target: r.target, HTTPS: r.https, Conns: cfg.conns[proto], Streams: cfg.streams, Duration: cfg.durations, WorkDir: cfg.workDir}
		cmds[i] = strings.TrimPrefix(cmds[i]+"\n", "\n") + shellJoin(spec.command(cfg.wrk, cfg.h2load))
		// Readiness: a short load that must complete without errors.
		if cfg.warmup > 0 {
			w := spec
			w.Duration = cfg.warmup
			if res, err := runLoad(ctx, w, cfg.wrk, cfg.h2load); err != nil {
				r.why = failed(what, err)
			} else if res.Requests == 0 {
				r.why = failed(what, "completed no requests")
			}
		}
	}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		for _, r := range runs {
			if r.why != "" {
				continue
			}
			spec := loadSpec{Proto: proto, Target: r.target, HTTPS: r.https, Conns: cfg.conns[proto], Streams: cfg.streams, Duration: cfg.durations, WorkDir: cfg.workDir}
			var t0 int64
			if r.envoy != nil {
				t0, _ = envoyproc.CPUTicks(r.envoy.Pid())
			}
			res, err := runLoad(ctx, spec, cfg.wrk, cfg.h2load)
			if err != nil {
				r.errs = append(r.errs, err.Error())
				continue
			}
			if r.envoy != nil {
				t1, _ := envoyproc.CPUTicks(r.envoy.Pid())
				r.cpu = append(r.cpu, float64(t1-t0)/envoyproc.ClockTicks)
			}
			r.results = append(r.results, res)
			r.round = append(r.round, round)
		}
	}
	sbs := measureSideBySide(ctx, cfg, proto, runs)
	if d := runs[vD]; d.envoy != nil && len(d.results) > 0 {
		extras = append(extras, "(d) filter decisions counted by Envoy: "+filterDecisions(d.envoy))
	}
	if ic := cfg.instructions; ic.valgrind != "" && (ic.protos == nil || ic.protos[proto]) {
		for _, vi := range irVariants {
			r := runs[vi]
			if r.why != "" || r.envoy == nil || ctx.Err() != nil {
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: data path %s (%s) under callgrind\n", proto, variants[vi].key)
			var err error
			if r.ir, r.irWorker, err = countInstructions(ctx, cfg, proto, r); err != nil {
				r.irWhy = failed(fmt.Sprintf("data path %s (%s) under callgrind", proto, variants[vi].key), err)
			}
		}
	}
	return runs, cmds, extras, sbs, ""
}

// filterDecisions sums the plugin's counters, proof that (d) ran the filter.
func filterDecisions(e *envoyproc.Proc) string {
	body, err := e.Get("/stats?filter=meshext_(allowed|denied|errors)")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	sums := map[string]int64{}
	for _, l := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		for _, c := range []string{"allowed", "denied", "errors"} {
			if strings.HasSuffix(k, "meshext_"+c) {
				sums[c] += n
			}
		}
	}
	return fmt.Sprintf("%d allowed, %d denied, %d errors", sums["allowed"], sums["denied"], sums["errors"])
}

// whyCell shows why a variant has no figures: it failed, or a piece is
// not available here.
func whyCell(why string) string {
	if strings.HasPrefix(why, "failed: ") {
		return why
	}
	return "not available: " + oneLine(why)
}

// startHand writes a hand-written config and starts its Envoy.
func startHand(cfg dpConfig, r *variantRun, cmd *string, p handParams, name string) {
	port, err := envoyproc.FreePort()
	if err != nil {
		r.why = err.Error()
		return
	}
	p.ListenPort = port
	path := filepath.Join(cfg.workDir, name+"-handwritten.yaml")
	if err := writeHandConfig(path, p); err != nil {
		r.why = err.Error()
		return
	}
	r.opts = envoyproc.Pinned(cfg.envoy, path, cfg.workDir, name, nil)
	if r.envoy, err = envoyproc.Start(r.opts); err == nil {
		err = cfg.pinEnvoy(r.envoy)
	}
	if err != nil {
		r.why = failed("data path "+name+" Envoy", err)
		return
	}
	r.target = fmt.Sprintf("127.0.0.1:%d", port)
	*cmd = fmt.Sprintf("$(make -s envoy) -c %s --concurrency 1 --disable-hot-restart", path)
}

// summarize gives medians over rounds: throughput (req/s or MB/s), p50, p99,
// Envoy CPU share of one core, Envoy CPU seconds per request, total errors.
func summarize(r *variantRun, mbps bool) (thr float64, p50, p99 time.Duration, cpu, cpuReq float64, errs int64) {
	var thrs, cpus, perReq []float64
	var p50s, p99s []time.Duration
	for i, res := range r.results {
		if mbps {
			thrs = append(thrs, res.MBps)
		} else {
			thrs = append(thrs, res.RPS)
		}
		p50s = append(p50s, res.P50)
		p99s = append(p99s, res.P99)
		errs += res.Errors
		if i < len(r.cpu) && res.Elapsed > 0 {
			cpus = append(cpus, r.cpu[i]/res.Elapsed.Seconds())
			if res.Requests > 0 {
				perReq = append(perReq, r.cpu[i]/float64(res.Requests))
			}
		}
	}
	return envoytest.Median(thrs), medianD(p50s), medianD(p99s), envoytest.Median(cpus), envoytest.Median(perReq), errs
}

// spread is the lowest and highest throughput over rounds.
func spread(r *variantRun, mbps bool) (lo, hi float64) {
	for i, res := range r.results {
		v := res.RPS
		if mbps {
			v = res.MBps
		}
		if i == 0 || v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

func medianD(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(envoytest.Median(f))
}

func upstreamCommand(kind, dir string) string {
	c := "bin/meshext-bench upstream -kind " + kind
	if kind == "https" {
		c += fmt.Sprintf(" -cert %s -key %s", filepath.Join(dir, "upstream.pem"), filepath.Join(dir, "upstream-key.pem"))
	}
	return c + " &"
}

// paired is the median over rounds of x's throughput divided by y's in the
// same round: rounds share the host's background load, so the per-round
// ratio cancels most of it. 0 when the variants share no round.
func paired(x, y *variantRun, mbps bool) float64 {
	if x == nil || y == nil {
		return 0
	}
	thr := func(r loadResult) float64 {
		if mbps {
			return r.MBps
		}
		return r.RPS
	}
	var ratios []float64
	for i, rx := range x.round {
		for j, ry := range y.round {
			if rx == ry && thr(y.results[j]) > 0 {
				ratios = append(ratios, thr(x.results[i])/thr(y.results[j]))
			}
		}
	}
	return envoytest.Median(ratios)
}

// pairedCPU is the median over rounds of x's Envoy CPU time per request
// divided by y's in the same round. Unlike throughput it barely depends on
// how the client and the upstream were scheduled.
func pairedCPU(x, y *variantRun) float64 {
	if x == nil || y == nil || len(x.cpu) != len(x.results) || len(y.cpu) != len(y.results) {
		return 0
	}
	per := func(r *variantRun, i int) float64 {
		if r.results[i].Requests == 0 {
			return 0
		}
		return r.cpu[i] / float64(r.results[i].Requests)
	}
	var ratios []float64
	for i, rx := range x.round {
		for j, ry := range y.round {
			if rx == ry && per(y, j) > 0 {
				ratios = append(ratios, per(x, i)/per(y, j))
			}
		}
	}
	return envoytest.Median(ratios)
}

func ratio(r float64) string {
	if r == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", r)
}

func verdict(r, target float64) string {
	switch {
	case r == 0:
		return ""
	case r >= target:
		return "met"
	}
	return "**missed**"
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "n/a"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func envPrefix(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return strings.Join(env, " ") + " "
}

// cpuPlacement says where the processes ran, for the report.
func cpuPlacement(cfg *dpConfig) string {
	if !cfg.pinned {
		return "Client, Envoy and upstream share the machine's cores."
	}
	for c := 0; c < len(cfg.envoyCPU)*64; c++ {
		if cfg.envoyCPU.IsSet(c) {
			return fmt.Sprintf("Each Envoy has CPU %d to itself (sched_setaffinity on all its threads); clients, upstreams and this harness run on the other CPUs, so Envoy is the saturated part.", c)
		}
	}
	return ""
}
