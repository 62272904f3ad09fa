package envoytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/rbac"
)

// CompareOptions configures CompareRPS.
type CompareOptions struct {
	Envoy     string // Envoy binary
	ModuleDir string // directory with libmeshext.so
	// Hostnames is the number of MES in the filter config (default 1000);
	// requests go to one of them.
	Hostnames   int
	Connections int           // concurrent keep-alive clients (default 8)
	Round       time.Duration // length of one measured round (default 2s)
	Rounds      int           // rounds per flavor, interleaved (default 3)
	Concurrency int           // Envoy worker threads (default 1)
	// The filter config is the one the controller renders for the
	// forward-proxy listener (ignoreClientCertificates: the source is the
	// listener's owner; denyMetadataOnly: decision metadata on denials
	// only). MetadataOnAllows sets metadata on every request instead (the
	// rendering before issue 15); build the C reference to match
	// (BuildCReference's lean = !MetadataOnAllows).
	MetadataOnAllows bool
	// WithNoop adds an Envoy running the module's do-nothing filter,
	// separating the cost of any Go module from meshext's own work.
	WithNoop bool
	// WithNative adds an Envoy with the --plugin=off rendering of the same
	// config: a virtual host per MES with per-route RBAC (plugin/rbac).
	WithNative bool
	// CReferenceDir, when set, adds an Envoy loading the libmeshext.so in
	// that directory built by BuildCReference: a C module making meshext's
	// calls into Envoy with nothing else, so its cost is Envoy's own price
	// for the filter's behaviour (the floor for any implementation).
	CReferenceDir string
	// Pin gives Envoy the last CPU to itself and the load generator and
	// upstream the others (machines with 2+ CPUs), so Envoy is saturated
	// and the throughput ratio is the ratio of Envoy's costs.
	Pin bool
	// Wrk, when set, is the wrk binary generating load (one thread, one
	// connection per Connections); otherwise a Go client does.
	Wrk string
	// SideBySide adds, after the interleaved rounds, Rounds rounds in which
	// the Go filter runs at the same time as the C reference (and as native
	// RBAC): the two Envoys share the CPU, each driven by its own client, so
	// the host's drift between rounds hits both alike (see Pairs).
	SideBySide bool
	Log        io.Writer // Envoy logs; nil = discard
}

// FlavorResult is one Envoy's share of a CompareRPS run.
type FlavorResult struct {
	Name     string
	RPS      float64
	Requests int64 // successful requests
	Errors   int64 // failed or non-200 requests
	// CPUPerRequest is Envoy's own CPU time (user+system, from /proc) per
	// successful request. Less sensitive than req/s to other load on the
	// machine; 0 where /proc is unavailable.
	CPUPerRequest time.Duration
	// RoundRPS is the throughput of each round, in round order.
	RoundRPS []float64
}

// CompareResult is the outcome of CompareRPS.
type CompareResult struct {
	Baseline FlavorResult  // same listener and routes, no filter
	Noop     *FlavorResult // the module's do-nothing filter (WithNoop only)
	Native   *FlavorResult // native routes + RBAC, no Go (WithNative only)
	CRef     *FlavorResult // the C reference module (CReferenceDir only)
	Filter   FlavorResult  // the meshext dynamic module
	// OverheadPct is (Baseline-Filter)/Baseline*100 of req/s.
	OverheadPct float64
	// CPUOverheadPct is the filter's extra Envoy CPU per request, in percent.
	CPUOverheadPct float64
	// MedianRatio is the median over rounds of Filter/Baseline req/s
	// within one round (the two ran back to back): less sensitive to a
	// noisy neighbour in one round than the ratio of totals.
	MedianRatio float64
	// NoopMedianRatio is the same for the do-nothing module (WithNoop only).
	NoopMedianRatio float64
	// CRefMedianRatio is the same for the C reference (CReferenceDir only).
	CRefMedianRatio float64
	// Pinned says Envoy had a CPU of its own (Options.Pin on 2+ CPUs).
	Pinned  bool
	Options CompareOptions
	// Pairs are the side-by-side measurements (SideBySide only).
	Pairs []PairResult
}

// PairResult is X against Y loaded at the same time on the same CPU, one
// ratio X/Y per round.
type PairResult struct {
	X, Y     string
	RPSRatio []float64 // X's throughput / Y's
	CPURatio []float64 // X's Envoy CPU per request / Y's (scheduler ns)
	Errors   int64     // failed or non-200 requests of both
}

// CompareRPS starts one HTTP upstream and two Envoys with the same
// listener, routes and cluster, one without and one with the meshext
// filter (a third with WithNoop), and drives them with the same closed-loop load in interleaved
// rounds (so machine noise hits both alike). Everything runs on loopback
// with ephemeral ports under dir. Without Pin the load generator shares
// Envoy's CPUs; either way compare the numbers of one run, not absolute
// throughput across machines.
func CompareRPS(ctx context.Context, dir string, o CompareOptions) (*CompareResult, error) {
	if o.Hostnames == 0 {
		o.Hostnames = 1000
	}
	if o.Connections == 0 {
		o.Connections = 8
	}
	if o.Round == 0 {
		o.Round = 2 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	envoyCPU, loadCPU, pinned := envoyproc.CPUSplit()
	pinned = pinned && o.Pin
	if pinned {
		prev, err := envoyproc.Affinity()
		if err != nil {
			return nil, err
		}
		if err := envoyproc.Pin(0, loadCPU); err != nil {
			return nil, err
		}
		defer func() { _ = envoyproc.Pin(0, prev) }()
	}
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(up) }()
	defer srv.Close()

	cfg, host, err := benchFilterConfig(o.Hostnames, !o.MetadataOnAllows)
	if err != nil {
		return nil, err
	}
	clusters := []Cluster{{Name: "mes_http", Addr: up.Addr().String()}}
	flavors := []Flavor{NoFilter, DynamicModule}
	names := []string{"without filter", "with meshext dynamic module"}
	if o.WithNoop {
		flavors = append(flavors, NoopModule)
		names = append(names, "with an empty Go dynamic module")
	}
	// Where the optional Envoys land in opts (-1: not run).
	nativeAt, crefAt := -1, -1
	opts := make([]Options, len(flavors))
	for i, flavor := range flavors {
		opts[i] = Options{Envoy: o.Envoy, ModuleDir: o.ModuleDir, Flavor: flavor, FilterConfig: cfg,
			Clusters: clusters, Concurrency: o.Concurrency, Log: o.Log}
	}
	if o.WithNative {
		nat, err := nativeOptions(cfg)
		if err != nil {
			return nil, err
		}
		nat.Envoy, nat.Clusters, nat.Concurrency, nat.Log = o.Envoy, clusters, o.Concurrency, o.Log
		nativeAt = len(opts)
		opts = append(opts, nat)
		names = append(names, "native routes + RBAC (--plugin=off)")
	}
	if o.CReferenceDir != "" {
		crefAt = len(opts)
		opts = append(opts, Options{Envoy: o.Envoy, ModuleDir: o.CReferenceDir, Flavor: DynamicModule, FilterConfig: cfg,
			Clusters: clusters, Concurrency: o.Concurrency, Log: o.Log})
		names = append(names, "C reference module: meshext's Envoy calls, no Go")
	}
	envs := make([]*Instance, len(opts))
	for i := range opts {
		d := filepath.Join(dir, fmt.Sprintf("envoy-%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		env, err := Start(ctx, d, opts[i])
		if err != nil {
			return nil, fmt.Errorf("envoy (%s): %w", names[i], err)
		}
		defer env.Stop()
		envs[i] = env
		if pinned {
			if err := envoyproc.Pin(env.PID(), envoyCPU); err != nil {
				return nil, fmt.Errorf("envoy (%s): %w", names[i], err)
			}
		}
	}
	n := len(envs)
	rows := make([]FlavorResult, n)
	elapsed := make([]time.Duration, n)
	cpu := make([]time.Duration, n)
	drive := func(listener string, d time.Duration) (int64, int64, error) {
		if o.Wrk != "" {
			return loadWrk(ctx, o.Wrk, listener, host, o.Connections, d)
		}
		return load(ctx, listener, host, o.Connections, d)
	}
	// Warm up all (connections, Go runtime in the module), then measure.
	for i := range envs {
		if _, _, err := drive(envs[i].Listener, o.Round/2); err != nil {
			return nil, err
		}
	}
	for r := 0; r < o.Rounds; r++ {
		for k := 0; k < n; k++ {
			i := (r + k) % n // rotate which flavor goes first
			before := processCPU(envs[i].PID())
			start := time.Now()
			ok, bad, err := drive(envs[i].Listener, o.Round)
			if err != nil {
				return nil, err
			}
			took := time.Since(start)
			cpu[i] += processCPU(envs[i].PID()) - before
			rows[i].Requests += ok
			rows[i].Errors += bad
			rows[i].RoundRPS = append(rows[i].RoundRPS, float64(ok)/took.Seconds())
			elapsed[i] += took
		}
	}
	var pairs []PairResult
	if o.SideBySide {
		var err error
		if pairs, err = sideBySide(ctx, envs, names, drive, o, nativeAt, crefAt); err != nil {
			return nil, err
		}
	}
	for i := range rows {
		rows[i].Name = names[i]
		rows[i].RPS = float64(rows[i].Requests) / elapsed[i].Seconds()
		if rows[i].Requests > 0 {
			rows[i].CPUPerRequest = cpu[i] / time.Duration(rows[i].Requests)
		}
	}
	res := &CompareResult{Baseline: rows[0], Filter: rows[1], Options: o, Pinned: pinned, Pairs: pairs}
	res.MedianRatio = medianRatio(rows[1].RoundRPS, rows[0].RoundRPS)
	if o.WithNoop {
		res.Noop = &rows[2]
		res.NoopMedianRatio = medianRatio(rows[2].RoundRPS, rows[0].RoundRPS)
	}
	if nativeAt >= 0 {
		res.Native = &rows[nativeAt]
	}
	if crefAt >= 0 {
		res.CRef = &rows[crefAt]
		res.CRefMedianRatio = medianRatio(rows[crefAt].RoundRPS, rows[0].RoundRPS)
	}
	if res.Baseline.RPS > 0 {
		res.OverheadPct = (res.Baseline.RPS - res.Filter.RPS) / res.Baseline.RPS * 100
	}
	if res.Baseline.CPUPerRequest > 0 {
		res.CPUOverheadPct = float64(res.Filter.CPUPerRequest-res.Baseline.CPUPerRequest) / float64(res.Baseline.CPUPerRequest) * 100
	}
	return res, nil
}

// sideBySide drives the Go filter (envs[1]) and each other Envoy given at
// the same time for o.Round, o.Rounds times, alternating which pair goes
// first.
func sideBySide(ctx context.Context, envs []*Instance, names []string, drive func(string, time.Duration) (int64, int64, error), o CompareOptions, others ...int) ([]PairResult, error) {
	var pairs []PairResult
	var ys []int
	for _, y := range others {
		if y >= 0 {
			ys = append(ys, y)
			pairs = append(pairs, PairResult{X: names[1], Y: names[y]})
		}
	}
	for r := 0; r < o.Rounds && ctx.Err() == nil; r++ {
		for k := range ys {
			p := (k + r) % len(ys)
			xy := [2]*Instance{envs[1], envs[ys[p]]}
			var ok, bad [2]int64
			var errs [2]error
			cpu, cpuErr := envoyproc.Together([2]int{xy[0].PID(), xy[1].PID()}, func(i int) {
				ok[i], bad[i], errs[i] = drive(xy[i].Listener, o.Round)
			})
			for i := range xy {
				if errs[i] != nil {
					return nil, errs[i]
				}
				if ok[i] == 0 {
					return nil, fmt.Errorf("side by side: an Envoy completed no requests (%s and %s)", names[1], names[ys[p]])
				}
			}
			pairs[p].Errors += bad[0] + bad[1]
			// Both ran for the same o.Round, so requests compare as rates.
			pairs[p].RPSRatio = append(pairs[p].RPSRatio, float64(ok[0])/float64(ok[1]))
			// Without /proc the pair still has its throughput ratio.
			if c0, c1 := cpu[0], cpu[1]; cpuErr == nil && c0 > 0 && c1 > 0 {
				pairs[p].CPURatio = append(pairs[p].CPURatio, (float64(c0)/float64(ok[0]))/(float64(c1)/float64(ok[1])))
			}
		}
	}
	return pairs, nil
}

// processCPU is a process's user+system CPU time (0 when unreadable).
func processCPU(pid int) time.Duration {
	t, err := envoyproc.CPUTicks(pid)
	if err != nil {
		return 0
	}
	return time.Duration(t) * time.Second / envoyproc.ClockTicks
}

// nativeOptions renders the same filter config the --plugin=off way.
func nativeOptions(filterConfig []byte) (Options, error) {
	c, err := egress.Parse(filterConfig)
	if err != nil {
		return Options{}, err
	}
	vhs, err := rbac.VirtualHosts(c.Table, rbac.ByListenerOwner)
	if err != nil {
		return Options{}, err
	}
	f, err := rbac.HTTPFilter()
	if err != nil {
		return Options{}, err
	}
	var o Options
	if o.HTTPFilter, err = protojson.Marshal(f); err != nil {
		return Options{}, err
	}
	for _, vh := range vhs {
		b, err := protojson.Marshal(vh)
		if err != nil {
			return Options{}, err
		}
		o.VirtualHosts = append(o.VirtualHosts, b)
	}
	return o, nil
}

// benchFilterConfig has n MES; the returned host is an allowed one.
func benchFilterConfig(n int, lean bool) ([]byte, string, error) {
	c := egress.FilterConfig{Config: core.Config{Source: core.Identity{Mesh: "default", Service: "bench"}},
		IgnoreClientCertificates: true, DenyMetadataOnly: lean}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d", i)
		c.Services = append(c.Services, core.Service{Name: name, Mesh: "default", Cluster: "mes_http", Protocol: "http", Port: 80,
			Hostnames: []string{name + ".extsvc.mesh.local"}})
	}
	c.Policies = []core.Policy{{Name: "deny-svc-0", Mesh: "default",
		TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "svc-0"},
		From:      []core.From{{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.Deny}}}}}
	b, err := json.Marshal(c)
	return b, fmt.Sprintf("svc-%d.extsvc.mesh.local", n/2), err
}

// load runs conns closed-loop keep-alive clients for d and counts 200s and
// everything else. The cluster header is sent so the no-filter baseline
// routes the same way (the filter overwrites it).
func load(ctx context.Context, listener, host string, conns int, d time.Duration) (ok, bad int64, err error) {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var okN, badN atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listener+"/", nil)
				req.Host = host
				req.Header.Set(egress.DefaultClusterHeader, "mes_http")
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						badN.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					okN.Add(1)
				} else {
					badN.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if okN.Load() == 0 {
		return 0, badN.Load(), fmt.Errorf("no successful request through %s (%d failures)", listener, badN.Load())
	}
	return okN.Load(), badN.Load(), nil
}

// medianRatio is the median of a[r]/b[r] over rounds r.
func medianRatio(a, b []float64) float64 {
	var rs []float64
	for r := range a {
		if r < len(b) && b[r] > 0 {
			rs = append(rs, a[r]/b[r])
		}
	}
	return Median(rs)
}

// Median is the median of v (0 when empty); v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in `)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// loadWrk is load with wrk: one thread, conns keep-alive connections, the
// same Host and cluster header. ok counts 2xx/3xx responses.
func loadWrk(ctx context.Context, wrk, listener, host string, conns int, d time.Duration) (ok, bad int64, err error) {
	secs := int(d.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wrk, "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs),
		"-H", "Host: "+host, "-H", egress.DefaultClusterHeader+": mes_http", "http://"+listener+"/").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrkCounts(string(out))
}

// parseWrkCounts reads the request total and the failures from wrk's output.
func parseWrkCounts(out string) (ok, bad int64, err error) {
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("wrk: no request total in output: %q", out)
	}
	// "requests in" counts responses; socket errors come on top of them.
	total, _ := strconv.ParseInt(m[1], 10, 64)
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		bad += n
	}
	ok = total - bad
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, f := range m[1:] {
			n, _ := strconv.ParseInt(f, 10, 64)
			bad += n
		}
	}
	if ok <= 0 {
		return 0, bad, fmt.Errorf("wrk: no successful request (%d failures)", bad)
	}
	return ok, bad, nil
}

// RoundRatio is the median over rounds of a's req/s over b's in the same
// round (both flavors of one CompareRPS run): 0 when either has no rounds.
func RoundRatio(a, b *FlavorResult) float64 {
	if a == nil || b == nil {
		return 0
	}
	return medianRatio(a.RoundRPS, b.RoundRPS)
}
