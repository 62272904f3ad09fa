package bpf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const cliUsage = `Usage:
  meshext redirect attach --dataplane NAME --cgroup PATH [--proxy-cgroup PATH] [flags]
  meshext redirect detach --dataplane NAME
  meshext redirect status [--dataplane NAME]

attach sends TCP connections to VIPs made in the workload cgroup PATH to
Envoy's transparent listener (SO_ORIGINAL_DST keeps the VIP) and its UDP/53
DNS to the embedded DNS server. Envoy must create its listener in the proxy
cgroup (default: the cgroup v2 root). Cgroup paths are absolute or relative
to the cgroup v2 mount. attach is idempotent; run again to change settings.
`

type routeList []VIPRoute

func (l *routeList) String() string {
	s := make([]string, len(*l))
	for i, r := range *l {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

func (l *routeList) Set(v string) error {
	r, err := ParseVIPRoute(v)
	if err != nil {
		return err
	}
	*l = append(*l, r)
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseCgroupProxies turns PATH=IP:PORT flags into cgroup id -> proxy.
func parseCgroupProxies(specs []string) (map[uint64]netip.AddrPort, error) {
	mount, err := Cgroup2Mount()
	if err != nil {
		return nil, err
	}
	m := map[uint64]netip.AddrPort{}
	for _, s := range specs {
		i := strings.LastIndex(s, "=")
		if i < 0 {
			return nil, fmt.Errorf("--cgroup-proxy %q: want PATH=IP:PORT", s)
		}
		ap, err := netip.ParseAddrPort(s[i+1:])
		if err != nil {
			return nil, fmt.Errorf("--cgroup-proxy %q: %w", s, err)
		}
		dir, err := ResolveCgroup(mount, s[:i])
		if err != nil {
			return nil, fmt.Errorf("--cgroup-proxy %q: %w", s, err)
		}
		id, err := CgroupID(dir)
		if err != nil {
			return nil, err
		}
		m[id] = ap
	}
	return m, nil
}

// optUint32 is a flag that may be left unset.
type optUint32 struct{ v *uint32 }

func (o *optUint32) String() string {
	if o.v == nil {
		return ""
	}
	return strconv.FormatUint(uint64(*o.v), 10)
}

func (o *optUint32) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return fmt.Errorf("want a number: %w", err)
	}
	v := uint32(n)
	o.v = &v
	return nil
}

// RunCLI implements `meshext redirect attach|detach|status`; args follow
// "redirect". It returns the process exit code.
func RunCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, cliUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, rest := args[0], args[1:]
	fset := flag.NewFlagSet("meshext redirect "+sub, flag.ContinueOnError)
	fset.SetOutput(stderr)
	name := fset.String("dataplane", "", "name of the attachment: the Dataplane's name, or its node id <mesh>.<name> (needed when Dataplanes of two meshes share the name); pins go to <bpffs>/meshext/NAME")
	bpffs := fset.String("bpffs", DefaultBPFFS, "BPF filesystem (mounted there if needed)")
	switch sub {
	case "attach":
		cgroup := fset.String("cgroup", "", "workload cgroup v2 whose connections are redirected (required)")
		proxyCgroup := fset.String("proxy-cgroup", "", "cgroup in which Envoy creates its listener (default: cgroup v2 root)")
		create := fset.Bool("create", false, "create the cgroups when they do not exist")
		var vips routeList
		fset.Var(&vips, "vip", "VIP range and proxy listener, CIDR=IP:PORT; repeatable (default 242.0.0.0/8=127.0.0.1:15001)")
		dns := fset.String("dns", "127.0.0.1:15053", "where UDP/53 DNS goes; \"off\" leaves DNS alone")
		var cgProxies stringList
		fset.Var(&cgProxies, "cgroup-proxy", "a workload cgroup's own proxy listener, PATH=IP:PORT; repeatable")
		var uid, mark optUint32
		fset.Var(&uid, "bypass-uid", "never redirect sockets of processes running as this uid")
		fset.Var(&mark, "bypass-mark", "never redirect sockets carrying this SO_MARK")
		if err := fset.Parse(rest); err != nil {
			return parseErrCode(err)
		}
		if *name == "" || *cgroup == "" || fset.NArg() > 0 {
			fmt.Fprintln(stderr, "meshext redirect attach: --dataplane and --cgroup are required; no positional arguments")
			return 2
		}
		if len(vips) == 0 {
			vips = routeList{{CIDR: DefaultVIPCIDR, Proxy: netip.MustParseAddrPort("127.0.0.1:15001")}}
		}
		cfg := Config{VIPs: vips, BypassUID: uid.v, BypassMark: mark.v}
		if *dns != "off" {
			ap, err := netip.ParseAddrPort(*dns)
			if err != nil {
				fmt.Fprintf(stderr, "meshext redirect attach: --dns %q: %v\n", *dns, err)
				return 2
			}
			cfg.DNS = ap
		}
		if *create {
			if err := createCgroups(*cgroup, *proxyCgroup); err != nil {
				fmt.Fprintf(stderr, "meshext redirect attach: %v\n", err)
				return 1
			}
		}
		if len(cgProxies) > 0 {
			m, err := parseCgroupProxies(cgProxies)
			if err != nil {
				fmt.Fprintf(stderr, "meshext redirect attach: %v\n", err)
				return 1
			}
			cfg.CgroupProxies = m
		}
		r, attached, err := Attach(Spec{Name: *name, AppCgroup: *cgroup, ProxyCgroup: *proxyCgroup, Config: cfg, BPFFS: *bpffs})
		if err != nil {
			fmt.Fprintf(stderr, "meshext redirect attach: %v\n", err)
			return 1
		}
		r.Close()
		if attached {
			fmt.Fprintf(stdout, "attached %s\n", *name)
		} else {
			fmt.Fprintf(stdout, "%s was already attached; configuration updated\n", *name)
		}
		return printStatus(stdout, stderr, *bpffs, *name)
	case "detach":
		if err := fset.Parse(rest); err != nil {
			return parseErrCode(err)
		}
		if *name == "" || fset.NArg() > 0 {
			fmt.Fprintln(stderr, "meshext redirect detach: --dataplane is required; no positional arguments")
			return 2
		}
		if _, err := os.Stat(PinDir(*bpffs, *name)); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stdout, "%s is not attached\n", *name)
			return 0
		}
		if err := CheckPrivileges(); err != nil {
			fmt.Fprintf(stderr, "meshext redirect detach: %v\n", err)
			return 1
		}
		if err := Detach(*bpffs, *name); err != nil {
			fmt.Fprintf(stderr, "meshext redirect detach: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "detached %s\n", *name)
		return 0
	case "status":
		if err := fset.Parse(rest); err != nil {
			return parseErrCode(err)
		}
		if fset.NArg() > 0 {
			fmt.Fprintln(stderr, "meshext redirect status: no positional arguments")
			return 2
		}
		if err := CheckPrivileges(); err != nil {
			fmt.Fprintf(stderr, "meshext redirect status: %v\n", err)
			return 1
		}
		if *name != "" {
			return printStatus(stdout, stderr, *bpffs, *name)
		}
		names, err := List(*bpffs)
		if err != nil {
			fmt.Fprintf(stderr, "meshext redirect status: %v\n", err)
			return 1
		}
		if len(names) == 0 {
			fmt.Fprintln(stdout, "no redirects attached")
			return 0
		}
		code := 0
		for _, n := range names {
			if c := printStatus(stdout, stderr, *bpffs, n); c != 0 {
				code = c
			}
		}
		return code
	default:
		fmt.Fprintf(stderr, "meshext redirect: unknown subcommand %q\n\n%s", sub, cliUsage)
		return 2
	}
}

// parseErrCode: --help is a success, anything else a usage error.
func parseErrCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func printStatus(stdout, stderr io.Writer, bpffs, name string) int {
	st, err := Status(bpffs, name)
	if err != nil {
		fmt.Fprintf(stderr, "meshext redirect status: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, st)
	if !st.Complete() {
		return 1
	}
	return 0
}

func createCgroups(paths ...string) error {
	mount, err := Cgroup2Mount()
	if err != nil {
		return err
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		dir := p
		if !filepath.IsAbs(p) || !strings.HasPrefix(p, mount+"/") {
			dir = filepath.Join(mount, strings.TrimPrefix(p, "/"))
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
	}
	return nil
}
