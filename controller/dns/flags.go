package dns

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Flags are the `meshext run` command-line settings of the DNS server.
// Register them on a FlagSet, parse, then call Config.
type Flags struct {
	Listen   string        // --dns-listen; empty disables the server
	Hosts    string        // --dns-hosts
	Upstream string        // --dns-upstream
	Zones    string        // --dns-zones
	TTL      time.Duration // --dns-ttl
}

// ResolvConf is where Config finds the system resolvers when --dns-upstream is empty.
var ResolvConf = "/etc/resolv.conf"

// Register adds the --dns-* flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Listen, "dns-listen", "", "serve DNS (UDP+TCP) on `ADDR` (host:port), e.g. 127.0.0.1:5353; empty: no DNS server")
	fs.StringVar(&f.Hosts, "dns-hosts", "", "static overrides in /etc/hosts format from `FILE`; they win over generated names and forwarding")
	fs.StringVar(&f.Upstream, "dns-upstream", "", "comma-separated resolvers (`IP[:port]`) for names outside our zones; empty: the nameservers of "+ResolvConf+"; \"none\": answer SERVFAIL")
	fs.StringVar(&f.Zones, "dns-zones", "", "comma-separated extra `ZONES` answered with NXDOMAIN for unknown names (the parents of generated hostnames always are)")
	fs.DurationVar(&f.TTL, "dns-ttl", DefaultTTL, "TTL of the answers we make")
}

// Enabled reports whether --dns-listen was given.
func (f *Flags) Enabled() bool { return f.Listen != "" }

// Config turns the flags into a Config (not yet validated; New does that).
func (f *Flags) Config(log *slog.Logger) (Config, error) {
	cfg := Config{Listen: f.Listen, HostsFile: f.Hosts, TTL: f.TTL, Logger: log}
	switch up := strings.TrimSpace(f.Upstream); up {
	case "none":
	case "":
		sys, err := SystemUpstreams(ResolvConf, f.Listen)
		if err != nil {
			return Config{}, fmt.Errorf("--dns-upstream not given and %w", err)
		}
		cfg.Upstreams = sys
	default:
		ups, err := ParseUpstreams(up)
		if err != nil {
			return Config{}, fmt.Errorf("--dns-upstream: %w", err)
		}
		cfg.Upstreams = ups
	}
	for _, z := range strings.Split(f.Zones, ",") {
		if z = strings.TrimSpace(z); z != "" {
			cfg.Zones = append(cfg.Zones, z)
		}
	}
	return cfg, nil
}
