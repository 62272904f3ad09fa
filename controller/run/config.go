// Package run is the `meshext run` loop: it watches a drop directory of
// resource files, rebuilds the model and renders Envoy config when they
// really change, publishes per-node config as file drops and/or over ADS,
// keeps serving the last good config for whatever bad input touches, feeds
// the embedded DNS server, and reports status, metrics and health over HTTP.
package run

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/source"
	"github.com/meshext/meshext/controller/validate"
	"github.com/meshext/meshext/controller/xds"
)

// Delivery modes for Config.XDS.
const (
	XDSFile = "file"
	XDSADS  = "ads"
	XDSBoth = "both"
)

// DefaultDebounce groups the bursts of events one save produces.
const DefaultDebounce = 200 * time.Millisecond

// Config is everything `meshext run` takes.
type Config struct {
	// Dir is the drop directory of resource files (*.yaml, *.yml), watched recursively.
	Dir string
	// Source, when set, is read instead of Dir (Kubernetes: controller/source/kube).
	Source source.Source
	// IPAM, when set, gives services their VIPs instead of an allocator
	// kept in StateDir (a Kubernetes replica reads them from the API server).
	IPAM ipam.Assigner
	// Compiled, when set, is called with every model built and delivered,
	// on the reload goroutine: it must hand the model on, not block (the
	// Kubernetes leader writes status from it).
	Compiled func(*model.World)
	// StateDir keeps VIP leases and status.json; "" keeps leases in memory and writes no status file.
	StateDir string
	// XDS is XDSFile, XDSADS or XDSBoth.
	XDS string
	// XDSDir receives the file drops (XDSFile, XDSBoth).
	XDSDir string
	// XDSFormat is the file drops' encoding: "json" (default) or "pb"
	// (binary protobuf, xds.FormatProto).
	XDSFormat string
	// ADSListen is where the ADS gRPC server listens (XDSADS, XDSBoth):
	// unix:PATH, or HOST:PORT (port 0 picks one). "" is the default unix
	// socket (DefaultADSSocket). A TCP address serves mTLS with the xDS CA
	// kept in StateDir, unless ADSInsecure. See ads.go.
	ADSListen string
	// ADSInsecure serves a TCP ADSListen as plain gRPC without authentication.
	ADSInsecure bool
	// ADSServerNames are the DNS names and IP addresses Envoys dial to reach
	// a TCP ADSListen with mTLS (the server certificate's SANs); the
	// ADSListen host is added when it is not a wildcard.
	ADSServerNames []string
	// StatusListen is host:port of /status, /metrics and /healthz; "" disables it.
	StatusListen string
	// DNSListen is host:port of the embedded DNS server; "" disables it.
	DNSListen string
	// DNSHosts is an optional hosts file of static DNS overrides.
	DNSHosts string
	// DNSUpstreams are the resolvers for names outside our zones.
	DNSUpstreams []string
	// DNSForwardClients may have names forwarded (nil = local clients) and
	// DNSRateLimit is queries/s per source (0 = default, negative = none);
	// see dns.Config.
	DNSForwardClients []netip.Prefix
	DNSRateLimit      float64
	// UpstreamDNS (IP:PORT) is the resolver Envoy's DNS clusters use (render option).
	UpstreamDNS string
	// CIDR is the VIP range ("" = Kuma's default).
	CIDR string
	// VIPReleaseAfter is how long a removed service's VIP stays reserved
	// (0 = for ever; `meshext run` defaults to ipam.DefaultReleaseAfter).
	VIPReleaseAfter time.Duration
	// Zone is the local zone name.
	Zone string
	// EnvoyFlavor (render.FlavorStock | render.FlavorContrib) and Plugin
	// (render.PluginOn | render.PluginOff | contrib library path; "" = off,
	// native RBAC) choose how egress authorization is rendered; see render.Options.
	EnvoyFlavor string
	Plugin      string
	// HTTPProxyListen (IP:PORT) adds an HTTP forward-proxy listener to every
	// node: http_proxy clients reach any HTTP MES by hostname ("" = none).
	HTTPProxyListen string
	// SystemCAPath overrides the CA bundle for services without caCert ("" = auto).
	SystemCAPath string
	// RedirectBPFFS is the BPF filesystem holding `meshext redirect attach`
	// pins; attachments named like a Dataplane get its transparent port and
	// the DNS address kept current ("" = leave eBPF redirects alone).
	RedirectBPFFS string
	// SkipDefaultPolicies lists Kuma default policy kinds not to add in any
	// mesh ("*" = all); see model.Options.
	SkipDefaultPolicies []string
	// MaxFileSize bounds each file read from Dir (0 = inputfile.DefaultMaxSize).
	MaxFileSize int64
	// AccessLogFIFODir holds the FIFOs through which Envoys hand MeshAccessLog
	// Tcp-backend records to the relay this runner runs (controller/accesslog);
	// "" = StateDir/access-log, or no relay without a StateDir.
	AccessLogFIFODir string
	// Debounce is the quiet time after the last file event before a reload (0 = DefaultDebounce).
	Debounce time.Duration
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

func (c *Config) check() error {
	var errs []error
	if c.Dir == "" && c.Source == nil {
		errs = append(errs, errors.New("--dir is required"))
	}
	switch c.XDS {
	case XDSFile, XDSADS, XDSBoth:
	default:
		errs = append(errs, fmt.Errorf("--xds %q: want file, ads or both", c.XDS))
	}
	if _, err := xds.ParseFormat(c.XDSFormat); err != nil {
		errs = append(errs, fmt.Errorf("--xds-format: %w", err))
	}
	if c.fileDelivery() {
		if c.XDSDir == "" {
			errs = append(errs, fmt.Errorf("--xds %s needs --xds-dir", c.XDS))
		} else if !filepath.IsAbs(c.XDSDir) {
			// Envoy resolves paths from its own working directory.
			abs, err := filepath.Abs(c.XDSDir)
			if err != nil {
				errs = append(errs, err)
			}
			c.XDSDir = abs
		}
	}
	if c.adsDelivery() {
		errs = append(errs, c.checkADS()...)
	}
	for name, addr := range map[string]string{"--status-listen": c.StatusListen, "--dns-listen": c.DNSListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", name, addr, err))
		}
	}
	if c.VIPReleaseAfter < 0 {
		errs = append(errs, fmt.Errorf("--vip-release-after %s: must not be negative", c.VIPReleaseAfter))
	}
	if c.Zone != "" {
		if err := validate.ZoneName(c.Zone); err != nil {
			errs = append(errs, fmt.Errorf("--zone %q: %v", c.Zone, err))
		}
	}
	if c.UpstreamDNS != "" {
		if _, err := netip.ParseAddrPort(c.UpstreamDNS); err != nil {
			errs = append(errs, fmt.Errorf("--upstream-dns %q: want IP:PORT: %v", c.UpstreamDNS, err))
		}
	}
	if c.AccessLogFIFODir == "" && c.StateDir != "" {
		c.AccessLogFIFODir = filepath.Join(c.StateDir, "access-log")
	}
	if c.AccessLogFIFODir != "" && !filepath.IsAbs(c.AccessLogFIFODir) {
		abs, err := filepath.Abs(c.AccessLogFIFODir)
		if err != nil {
			errs = append(errs, err)
		}
		c.AccessLogFIFODir = abs
	}
	ro := render.Options{Flavor: c.EnvoyFlavor, Plugin: c.Plugin, HTTPProxyListen: c.HTTPProxyListen}
	if err := ro.Check(); err != nil {
		errs = append(errs, err)
	}
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

// sourceName names where resources come from, for logs and status.
func (c *Config) sourceName() string {
	if c.Source != nil {
		return c.Source.String()
	}
	return c.Dir
}

func (c *Config) fileDelivery() bool { return c.XDS == XDSFile || c.XDS == XDSBoth }

// fileFormat is the file drops' encoding (check has validated it).
func (c *Config) fileFormat() xds.Format {
	f, _ := xds.ParseFormat(c.XDSFormat)
	return f
}
func (c *Config) adsDelivery() bool { return c.XDS == XDSADS || c.XDS == XDSBoth }
