package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshext/meshext/controller/dns"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/kubestatus"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/run"
)

func init() {
	register(&command{name: "run", summary: "watch a drop directory or the Kubernetes API and serve Envoy config (file drops and/or ADS), DNS and status", run: runRun})
}

func runRun(args []string) int {
	return runMain(args, os.Stderr)
}

func runMain(args []string, stderr io.Writer) int {
	// Catch signals first, so one sent during startup is not lost.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills at once (the default action).
	go func() { <-ctx.Done(); stop() }()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg run.Config
	fs.StringVar(&cfg.Dir, "dir", "", "drop directory of resource files (*.yaml, *.yml), watched recursively (required with --source file)")
	sourceKind := fs.String("source", "file", "where resources come from: file (--dir) or kubernetes (Kuma's custom resources and Secrets through the API server)")
	var kc kubeFlags
	kc.add(fs)
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory for VIP leases and status.json (\"\" = leases in memory, no status file)")
	fs.StringVar(&cfg.XDS, "xds", run.XDSFile, "how Envoy gets config: file, ads or both")
	fs.StringVar(&cfg.XDSDir, "xds-dir", "", "directory for file drops: <dir>/<node-id>/{cds,lds}.json and <dir>/sds/<secret>.json")
	fs.StringVar(&cfg.XDSFormat, "xds-format", "json", "file drops' encoding: json, or pb (binary protobuf: .pb files, much cheaper at thousands of services; bootstrap with the same --xds-format)")
	fs.StringVar(&cfg.ADSListen, "ads-listen", "", "ADS gRPC listen address (--xds ads|both): unix:PATH (owner-only socket), or HOST:PORT served with mTLS (client certificates from 'meshext bootstrap --state-dir'), plain TCP only with --ads-insecure (default unix:<state-dir>/ads/ads.sock, or unix:$TMPDIR/meshext-<uid>/ads.sock)")
	fs.BoolVar(&cfg.ADSInsecure, "ads-insecure", false, "serve a TCP --ads-listen as plain gRPC without authentication: anyone who can connect gets every node's config and private keys")
	adsNames := fs.String("ads-server-names", "", "comma-separated DNS names and IPs Envoys dial to reach a TCP --ads-listen; the mTLS server certificate covers them and the --ads-listen host")
	fs.StringVar(&cfg.StatusListen, "status-listen", "127.0.0.1:9902", "HTTP address for /status, /metrics and /healthz (\"\" = off)")
	fs.StringVar(&cfg.DNSListen, "dns-listen", "", "embedded DNS server address, e.g. 127.0.0.1:5353 (\"\" = off)")
	fs.StringVar(&cfg.DNSHosts, "dns-hosts", "", "hosts file of static DNS overrides")
	dnsUpstream := fs.String("dns-upstream", "", "comma-separated resolvers for names outside meshext's zones (default: /etc/resolv.conf's; \"none\" = forward nothing, answer only meshext's zones and the hosts file)")
	dnsClients := fs.String("dns-forward-clients", "", "comma-separated client `CIDRs` whose other names are forwarded (default: loopback, this host's addresses and the networks of the --dns-listen interface); others get REFUSED")
	dnsRate := fs.Float64("dns-rate-limit", dns.DefaultRateLimit, "DNS queries per second per client address (IPv6: per /64), burst twice that; loopback is exempt; 0 = no limit")
	fs.StringVar(&cfg.UpstreamDNS, "upstream-dns", "", "IP:PORT resolver Envoy's DNS clusters use (default: Envoy's, from resolv.conf)")
	fs.StringVar(&cfg.CIDR, "cidr", "", "VIP range (default $KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR or 242.0.0.0/8)")
	fs.DurationVar(&cfg.VIPReleaseAfter, "vip-release-after", ipam.DefaultReleaseAfter, "how long a removed MeshExternalService's VIP stays reserved for it before it returns to the pool (0 = for ever, as Kuma)")
	fs.StringVar(&cfg.Zone, "zone", "default", "local zone name")
	fs.StringVar(&cfg.EnvoyFlavor, "envoy-flavor", render.FlavorStock, flavorUsage)
	fs.StringVar(&cfg.Plugin, "plugin", render.PluginOn, pluginUsage)
	fs.StringVar(&cfg.HTTPProxyListen, "http-proxy-listen", "", httpProxyUsage)
	fs.StringVar(&cfg.SystemCAPath, "system-ca", "", "CA bundle for services without caCert (default $KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH, then the OS bundle)")
	fs.StringVar(&cfg.RedirectBPFFS, "redirect-bpffs", "/sys/fs/bpf", "BPF filesystem of 'meshext redirect attach' pins: attachments named like a Dataplane get its transparent port and the DNS address (\"\" = off)")
	maxFileSize := addMaxFileSize(fs)
	fs.DurationVar(&cfg.Debounce, "debounce", run.DefaultDebounce, "quiet time after the last file change before reloading")
	skipDefaults := fs.String("skip-default-policies", "", skipDefaultsUsage)
	fs.StringVar(&cfg.AccessLogFIFODir, "access-log-fifo-dir", "", "directory of the FIFOs through which Envoys hand MeshAccessLog Tcp-backend records to meshext's relay (default <state-dir>/access-log; without a state dir Tcp backends are left out)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext run --dir DROPDIR [--xds file|ads|both] [--xds-dir DIR] [flags]
       meshext run --source kubernetes [--kubeconfig FILE] [--xds ads] [flags]

Watches DROPDIR (or, with --source kubernetes, Kuma's custom resources and
Secrets through the API server, in or out of a cluster, any number of
replicas: the one holding the Lease allocates VIPs and writes status, every
replica serves ADS) and, on every real change, validates the resources, builds
the model (VIPs, hostnames, TLS material) and renders Envoy config per node
(one per Dataplane "<mesh>.<name>", or "default"). Config is delivered as
file drops (--xds file: point Envoy at the files with 'meshext bootstrap
--xds file'), over ADS (--xds ads), or both. ADS authenticates every Envoy:
a unix socket only this user (and root) can reach, or mTLS over TCP where a
client certificate names the one node it may ask for. Bad input never takes working
config away: a broken file or resource keeps its last good version, a
broken secret breaks only its MeshExternalService. SIGINT/SIGTERM stop it.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshext run: unexpected arguments %q (use --dir)\n", fs.Args())
		return 2
	}
	switch *sourceKind {
	case "file":
		if kc.set(fs) {
			fmt.Fprintln(stderr, "meshext run: --kubeconfig and --leader-* need --source kubernetes")
			return 2
		}
	case "kubernetes":
		if cfg.Dir != "" {
			fmt.Fprintln(stderr, "meshext run: --dir and --source kubernetes exclude each other")
			return 2
		}
	default:
		fmt.Fprintf(stderr, "meshext run: --source %q: want file or kubernetes\n", *sourceKind)
		return 2
	}
	skip, err := parseSkipDefaults(*skipDefaults)
	if err != nil {
		fmt.Fprintf(stderr, "meshext run: %v\n", err)
		return 2
	}
	cfg.SkipDefaultPolicies = skip
	cfg.MaxFileSize = *maxFileSize
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "meshext run: --log-level %q: %v\n", *logLevel, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	for _, n := range strings.Split(*adsNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.ADSServerNames = append(cfg.ADSServerNames, n)
		}
	}
	if cfg.DNSListen != "" {
		clients, err := dns.ParseClientNetworks(*dnsClients)
		if err != nil {
			fmt.Fprintf(stderr, "meshext run: --dns-forward-clients: %v\n", err)
			return 2
		}
		if len(clients) > 0 {
			cfg.DNSForwardClients = clients
		}
		switch {
		case *dnsRate < 0:
			fmt.Fprintf(stderr, "meshext run: --dns-rate-limit %v: must not be negative\n", *dnsRate)
			return 2
		case *dnsRate == 0:
			cfg.DNSRateLimit = -1 // off
		default:
			cfg.DNSRateLimit = *dnsRate
		}
		if strings.TrimSpace(*dnsUpstream) == "none" {
			cfg.DNSUpstreams = nil // answer our own names only; others get REFUSED
		} else if strings.TrimSpace(*dnsUpstream) != "" {
			ups, err := dns.ParseUpstreams(*dnsUpstream)
			if err != nil {
				fmt.Fprintf(stderr, "meshext run: --dns-upstream: %v\n", err)
				return 2
			}
			cfg.DNSUpstreams = ups
		} else if ups, err := dns.SystemUpstreams("/etc/resolv.conf", cfg.DNSListen); err != nil {
			// Not fatal: names outside meshext's zones then get SERVFAIL.
			cfg.Logger.Warn("no upstream resolvers for the embedded DNS", "error", err)
		} else {
			cfg.DNSUpstreams = ups
		}
	}
	var leader *kubestatus.Leader
	if *sourceKind == "kubernetes" {
		if leader, err = kc.wire(ctx, &cfg); err != nil {
			fmt.Fprintf(stderr, "meshext run: %v\n", err)
			return 1
		}
	}
	r, err := run.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "meshext run: %v\n", err)
		return 2
	}
	if leader != nil {
		// The election runs beside the runner; on the way out it gives
		// the Lease up, so another replica leads at once.
		elected := make(chan struct{})
		go func() {
			defer close(elected)
			if err := leader.Run(ctx); err != nil {
				cfg.Logger.Error("leader election", "error", err)
			}
		}()
		defer func() {
			select {
			case <-elected:
			case <-time.After(run.ShutdownTimeout):
			}
		}()
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "meshext run: %v\n", err)
		return 1
	}
	return 0
}
