package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshext/meshext/controller/accesslog"
	"github.com/meshext/meshext/controller/dns"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/xds"
)

// ShutdownTimeout bounds how long Run waits for its servers after cancel.
const ShutdownTimeout = 5 * time.Second

// Runner is one `meshext run`.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	pipe    *pipeline
	files   *xds.FileWriter
	ads     *xds.Server
	dns     *dns.Server
	metrics *metrics
	// relay forwards MeshAccessLog Tcp-backend records (nil without a FIFO directory).
	relay *accesslog.Relay

	adsEP             *xds.Endpoint
	adsLis, statusLis net.Listener
	watcher           *dirWatcher

	mu     sync.Mutex
	status Status
	// redirectTargets (attachment name -> transparent port) and redirectCIDR
	// are what the last delivery asks of eBPF redirects (see redirect.go).
	redirectTargets map[string]uint16
	redirectCIDR    netip.Prefix
	// redirectWarned: an ambiguous attachment name was logged once.
	redirectWarned atomic.Bool

	// reloaded, when set (tests), is told after each reload attempt.
	reloaded func()
	done     chan error
}

// New checks cfg and opens the VIP allocator; nothing listens yet.
func New(cfg Config) (*Runner, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	alloc := cfg.IPAM
	if alloc == nil {
		a, err := ipam.Open(cfg.StateDir, cfg.CIDR)
		if err != nil {
			return nil, err
		}
		a.SetReleaseAfter(cfg.VIPReleaseAfter)
		alloc = a
	}
	var err error
	r := &Runner{cfg: cfg, log: cfg.Logger, metrics: newMetrics()}
	if cfg.AccessLogFIFODir != "" {
		r.relay = accesslog.New(cfg.Logger)
	}
	r.pipe = newPipeline(&r.cfg, alloc)
	if cfg.fileDelivery() {
		r.files = &xds.FileWriter{Dir: cfg.XDSDir, Format: cfg.fileFormat()}
		// Refuse a --xds-dir holding files meshext did not write, at start.
		if err := r.files.Open(); err != nil {
			return nil, fmt.Errorf("--xds-dir: %w", err)
		}
	}
	if cfg.DNSListen != "" {
		r.dns, err = dns.New(dns.Config{Listen: cfg.DNSListen, Upstreams: cfg.DNSUpstreams, HostsFile: cfg.DNSHosts, Logger: cfg.Logger,
			ForwardClients: cfg.DNSForwardClients, RateLimit: cfg.DNSRateLimit})
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Run binds the servers, publishes the first config, then follows the drop
// directory until ctx ends; it returns once every server has stopped.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	return r.Wait()
}

// Start binds every listener and publishes the first config (so files exist
// before Envoy starts), then runs the loop and servers in the background
// until ctx ends. Wait reports how they ended.
func (r *Runner) Start(ctx context.Context) error {
	var err error
	if r.cfg.adsDelivery() {
		if r.adsEP, err = r.cfg.listenADS(); err != nil {
			return fmt.Errorf("ADS listen: %w", err)
		}
		r.adsLis = r.adsEP.Listener()
		r.ads = xds.NewServer(ctx, r.log)
		// Every resource delivered went through the pipeline's Validator,
		// which hashed it already.
		r.ads.UseHashes(r.pipe.validator.Hash)
	}
	if r.cfg.StatusListen != "" {
		if r.statusLis, err = net.Listen("tcp", r.cfg.StatusListen); err != nil {
			r.closeListeners()
			return fmt.Errorf("status listen: %w", err)
		}
	}
	if r.dns != nil {
		if err := r.dns.Start(); err != nil {
			r.closeListeners()
			return err
		}
	}
	if r.cfg.Source == nil {
		if r.watcher, err = newWatcher(r.cfg.Dir); err != nil {
			r.closeListeners()
			if r.dns != nil {
				r.dns.Close()
			}
			return err
		}
	}
	// The first config is published before Start returns (so files exist
	// before Envoy starts), yet a stop request is not held up by it.
	first := make(chan struct{})
	go func() { defer close(first); r.reload(ctx, true) }()
	select {
	case <-first:
	case <-ctx.Done():
		r.closeListeners()
		if r.dns != nil {
			r.dns.Close()
		}
		if r.watcher != nil {
			r.watcher.Close()
		}
		return fmt.Errorf("stopped before the first config was delivered: %w", context.Cause(ctx))
	}

	r.done = make(chan error, 1)
	go func() { r.done <- r.serve(ctx) }()
	return nil
}

// Wait blocks until the runner has stopped and returns the first error of
// any of its parts.
func (r *Runner) Wait() error { return <-r.done }

func (r *Runner) closeListeners() {
	for _, l := range []net.Listener{r.adsLis, r.statusLis} {
		if l != nil {
			l.Close()
		}
	}
}

// ADSAddr is the bound ADS address, unix:PATH or HOST:PORT ("" without ADS).
func (r *Runner) ADSAddr() string {
	if r.adsEP == nil {
		return ""
	}
	return r.adsEP.Addr()
}

// StatusAddr is the bound status HTTP address ("" when disabled).
func (r *Runner) StatusAddr() string { return addrOf(r.statusLis) }

// DNSAddr is the bound DNS address ("" when disabled).
func (r *Runner) DNSAddr() string {
	if r.dns == nil {
		return ""
	}
	return r.dns.Addr()
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Status returns a copy of the current status.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Runner) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	// Any part failing stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.ads != nil {
		run("ADS server", func() error { return r.ads.Serve(ctx, r.adsEP) })
	}
	if r.statusLis != nil {
		run("status server", func() error { return r.serveStatus(ctx) })
	}
	if r.dns != nil {
		// Started (bound) in Start; close it on the way out.
		run("DNS server", func() error { <-ctx.Done(); return r.dns.Close() })
		if r.cfg.DNSHosts != "" {
			run("DNS hosts watch", func() error {
				return watchFile(ctx, r.cfg.DNSHosts, r.cfg.Debounce, func() {
					if err := r.dns.ReloadHosts(); err != nil {
						r.log.Warn("DNS hosts file not reloaded; keeping the previous entries", "file", r.cfg.DNSHosts, "error", err)
					} else {
						r.log.Info("DNS hosts file reloaded", "file", r.cfg.DNSHosts)
					}
				}, func(msg string, args ...any) { r.log.Warn(msg, args...) })
			})
		}
	}
	if r.cfg.RedirectBPFFS != "" {
		run("eBPF redirect sync", func() error { return r.watchRedirects(ctx) })
	}
	if r.relay != nil {
		run("access-log relay", func() error { <-ctx.Done(); r.relay.Close(); return nil })
	}
	changed := make(chan struct{}, 1)
	run("watch", func() error {
		if r.cfg.Source != nil {
			return r.cfg.Source.Watch(ctx, r.cfg.Debounce, changed)
		}
		return watch(ctx, r.watcher, r.cfg.Debounce, changed, func(msg string, args ...any) { r.log.Warn(msg, args...) })
	})
	// Reloads run one at a time on their own goroutine, so the loop below
	// always sees a stop request: a reload stuck in the kernel (a hung file
	// system) cannot keep meshext from stopping.
	// The mTLS identity renewal timer lives here too: a renewal is a forced
	// reload, and the next deadline is known only once it has run.
	reloads := make(chan struct{})
	go func() {
		defer close(reloads)
		renew := time.NewTimer(r.untilRenewal())
		defer renew.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				r.reload(ctx, false)
			case <-renew.C:
				r.log.Info("renewing mTLS identities")
				r.reload(ctx, true)
			}
			renew.Reset(r.untilRenewal())
		}
	}()
	r.log.Info("meshext running", "source", r.cfg.sourceName(), "xds", r.cfg.XDS, "xdsDir", r.cfg.XDSDir,
		"ads", r.ADSAddr(), "status", r.StatusAddr(), "dns", r.DNSAddr(),
		"envoyFlavor", r.cfg.EnvoyFlavor, "plugin", r.cfg.Plugin)
	var first error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			first = err
			r.log.Error("stopping", "error", err)
			cancel()
			break loop
		}
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	deadline := time.Now().Add(ShutdownTimeout)
	select {
	case <-stopped:
	case <-time.After(time.Until(deadline)):
		first = errors.Join(first, errors.New("shutdown timed out"))
	}
	select {
	case <-reloads:
	case <-time.After(time.Until(deadline)):
		// The process is stopping; the stuck reload goes with it.
		first = errors.Join(first, errors.New("shutdown timed out: a reload is still running (stuck reading or writing files?)"))
	}
	for {
		select {
		case err := <-errs:
			if first == nil {
				first = err
			}
		default:
			r.log.Info("meshext stopped")
			return first
		}
	}
}

// untilRenewal is the time to the next identity renewal (at least a second
// away, a day when nothing is due).
func (r *Runner) untilRenewal() time.Duration {
	next := r.pipe.meshCA.NextRenewal()
	if next.IsZero() {
		return 24 * time.Hour
	}
	return max(time.Until(next), time.Second)
}

// reload compiles the drop directory and, when it changed, delivers the
// result. On failure the previous config stays in place everywhere.
func (r *Runner) reload(ctx context.Context, force bool) {
	defer func() {
		if r.reloaded != nil {
			r.reloaded()
		}
	}()
	now := time.Now()
	res, err := r.pipe.compile(force)
	r.mu.Lock()
	back := r.status.Source.Status != "" && r.status.Source.Status != SourceReady
	r.status.Source = nextSource(r.status.Source, r.cfg.sourceName(), err, now)
	back = back && r.status.Source.Status == SourceReady
	r.mu.Unlock()
	if errors.Is(err, errUnchanged) {
		r.metrics.reloads.WithLabelValues("unchanged").Inc()
		r.log.Debug("input unchanged; nothing to do")
		if back {
			// The drop directory is back as it was: its error is over.
			r.mu.Lock()
			r.status.Error = ""
			snapshot := r.status
			r.mu.Unlock()
			r.saveStatus(&snapshot)
		}
		return
	}
	r.mu.Lock()
	r.status.LastAttempt = now
	r.mu.Unlock()
	if err != nil {
		r.fail(err)
		return
	}
	r.metrics.renderDuration.Observe(res.duration.Seconds())

	var deliveryErrs []error
	if r.relay != nil {
		// A FIFO needs its reader before an Envoy is told to open it.
		if err := r.relay.Ensure(res.fifos...); err != nil {
			deliveryErrs = append(deliveryErrs, fmt.Errorf("access-log relay: %w", err))
		}
	}
	if r.files != nil {
		if st, err := r.files.Write(res.file); err != nil {
			deliveryErrs = append(deliveryErrs, fmt.Errorf("file drops: %w", err))
		} else {
			r.pipe.publishedFile = res.file
			r.log.Debug("file drops written", "written", st.FilesWritten, "removed", st.FilesRemoved)
		}
	}
	if r.ads != nil {
		if err := r.ads.Update(ctx, res.ads); err != nil {
			deliveryErrs = append(deliveryErrs, fmt.Errorf("ADS: %w", err))
		} else {
			r.pipe.publishedADS = res.ads
		}
	}
	if r.dns != nil {
		if err := r.dns.SetRecords(res.records); err != nil {
			deliveryErrs = append(deliveryErrs, fmt.Errorf("DNS: %w", err))
		}
	}
	r.mu.Lock()
	r.redirectTargets, r.redirectCIDR = redirectTargets(res.world), r.pipe.ipam.CIDR()
	r.mu.Unlock()
	r.syncRedirects()
	for _, p := range res.problems {
		r.log.Warn("input problem", "problem", p.Error())
	}
	for _, n := range res.notes {
		r.log.Warn("render", "note", n)
	}
	for _, s := range res.world.Services {
		if s.Broken != "" {
			r.log.Warn("service not served", "mesh", s.Mesh, "name", s.Name, "reason", s.Broken)
		}
	}

	r.mu.Lock()
	st := &r.status
	st.Reloads++
	st.Error = ""
	st.Services = servicesStatus(res.world)
	st.Problems = res.problems
	st.RenderErrors = append([]string{}, res.notes...)
	for _, e := range deliveryErrs {
		st.RenderErrors = append(st.RenderErrors, e.Error())
	}
	st.Nodes = nodesStatus(res.file, res.ads, r.cfg.XDSDir, r.cfg.fileFormat())
	st.Resources = resourceCounts(res.set)
	st.Identities = res.world.IdentityViews()
	if len(deliveryErrs) == 0 {
		st.LastSuccess = time.Now()
	} else {
		st.Error = errors.Join(deliveryErrs...).Error()
	}
	snapshot := *st
	r.mu.Unlock()

	r.updateMetrics(&snapshot, res.world, len(res.notes)+len(deliveryErrs))
	if r.cfg.Compiled != nil {
		r.cfg.Compiled(res.world)
	}
	if len(deliveryErrs) > 0 {
		r.metrics.reloads.WithLabelValues("error").Inc()
		r.log.Error("delivery failed; Envoy keeps its previous config", "error", snapshot.Error)
	} else {
		r.metrics.reloads.WithLabelValues("ok").Inc()
		r.log.Info("config delivered", "services", len(snapshot.Services), "nodes", len(snapshot.Nodes),
			"problems", len(snapshot.Problems), "renderErrors", len(snapshot.RenderErrors), "took", res.duration)
	}
	r.saveStatus(&snapshot)
}

func (r *Runner) fail(err error) {
	r.metrics.reloads.WithLabelValues("error").Inc()
	r.metrics.renderErrors.Inc()
	r.log.Error("reload failed; serving the previous config", "error", err)
	r.mu.Lock()
	r.status.Error = err.Error()
	snapshot := r.status
	r.mu.Unlock()
	r.saveStatus(&snapshot)
}

func (r *Runner) saveStatus(st *Status) {
	if r.cfg.StateDir == "" {
		return
	}
	if err := writeStatus(r.cfg.StateDir, st); err != nil {
		r.log.Warn("cannot write status file", "error", err)
	}
}

func (r *Runner) updateMetrics(st *Status, w *model.World, renderErrors int) {
	m := r.metrics
	m.resources.Reset()
	for kind, n := range st.Resources {
		m.resources.WithLabelValues(kind).Set(float64(n))
	}
	ready, broken := 0, 0
	for _, s := range w.Services {
		if s.Broken != "" {
			broken++
		} else {
			ready++
		}
	}
	m.services.WithLabelValues("ready").Set(float64(ready))
	m.services.WithLabelValues("broken").Set(float64(broken))
	m.problems.Set(float64(len(st.Problems)))
	m.renderErrors.Add(float64(renderErrors))
	if !st.LastSuccess.IsZero() && st.Error == "" {
		m.lastSuccess.Set(float64(st.LastSuccess.UnixNano()) / 1e9)
	}
}

func (r *Runner) serveStatus(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		st := r.Status()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(&st)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := r.Status()
		if st.LastSuccess.IsZero() {
			http.Error(w, "no config delivered yet: "+st.Error, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(r.statusLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
