package bpf

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/meshext/meshext/e2e/testenv"
)

// TestEmbeddedObject needs no privileges: the committed object parses and
// holds every program with the type its attachment needs, and every map.
func TestEmbeddedObject(t *testing.T) {
	spec, err := loadRedirect()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attachments {
		p, ok := spec.Programs[a.prog]
		if !ok {
			t.Errorf("program %s missing from the object", a.prog)
			continue
		}
		if p.AttachType != a.typ {
			t.Errorf("program %s: attach type %s, want %s", a.prog, p.AttachType, a.typ)
		}
	}
	if len(spec.Programs) != len(attachments) {
		t.Errorf("object has %d programs, the loader attaches %d", len(spec.Programs), len(attachments))
	}
	for _, m := range pinnedMaps {
		if _, ok := spec.Maps[m]; !ok {
			t.Errorf("map %s missing from the object", m)
		}
	}
	if got := spec.Maps[redirectMapVipCidrs].MaxEntries; got != maxVIPRoutes {
		t.Errorf("vip_cidrs max_entries %d, Go side assumes %d", got, maxVIPRoutes)
	}
	if got := spec.Maps[redirectMapSkOrig].Type; got != ebpf.SkStorage {
		t.Errorf("sk_orig is %s, want SK_STORAGE", got)
	}
}

// TestGeneratedObjectsUpToDate regenerates the bpf2go output into a temp
// dir with the exact //go:generate line and compares it with the committed
// files. It needs clang, llvm-strip and libbpf-dev, which CI installs; under
// CI=true their absence is a failure, elsewhere a skip.
func TestGeneratedObjectsUpToDate(t *testing.T) {
	for _, tool := range []string{"clang", "llvm-strip"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, err == nil, tool+" (apt-get install clang llvm libbpf-dev) to regenerate the eBPF objects")
	}
	_, err := os.Stat("/usr/include/bpf/bpf_helpers.h")
	testenv.Require(t, err == nil, "libbpf-dev headers (/usr/include/bpf/bpf_helpers.h)")
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate go run github.com/cilium/ebpf/cmd/bpf2go "); ok {
			args = strings.Fields(rest)
		}
	}
	if args == nil {
		t.Fatal("no bpf2go //go:generate line in gen.go")
	}
	out := t.TempDir()
	// Building bpf2go needs a usable Go module cache: an environment
	// problem, not a stale object.
	tool := filepath.Join(t.TempDir(), "bpf2go")
	b, err := exec.Command("go", "build", "-o", tool, "github.com/cilium/ebpf/cmd/bpf2go").CombinedOutput()
	testenv.Require(t, err == nil, fmt.Sprintf("a buildable bpf2go (%v: %s)", err, b))
	cmd := exec.Command(tool, append([]string{"-output-dir", out}, args...)...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, f := range []string{"redirect_bpfel.go", "redirect_bpfel.o"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make bpf` and commit the result", f)
		}
	}
}

func TestParseVIPRoute(t *testing.T) {
	r, err := ParseVIPRoute("242.0.0.0/8=127.0.0.1:15001")
	if err != nil || r.CIDR != DefaultVIPCIDR || r.Proxy != netip.MustParseAddrPort("127.0.0.1:15001") {
		t.Fatalf("ParseVIPRoute = %v, %v", r, err)
	}
	for in, want := range map[string]string{
		"242.0.0.0/8":                   "want CIDR=IP:PORT",
		"242.0.0.1/8=127.0.0.1:15001":   "host bits set",
		"fd00::/8=127.0.0.1:15001":      "only IPv4",
		"242.0.0.0/8=[::1]:15001":       "IPv4 address",
		"242.0.0.0/8=127.0.0.1:0":       "non-zero port",
		"242.0.0.0/8=242.1.1.1:80":      "inside its own VIP range",
		"242.0.0.0/33=127.0.0.1:15001":  "242.0.0.0/33",
		"242.0.0.0/8=127.0.0.1:notport": "proxy",
	} {
		if _, err := ParseVIPRoute(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseVIPRoute(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestConfigEncodingRoundTrip(t *testing.T) {
	uid, mark := uint32(5678), uint32(0x539)
	c := Config{
		VIPs:       []VIPRoute{{CIDR: DefaultVIPCIDR, Proxy: netip.MustParseAddrPort("127.0.0.1:15001")}},
		DNS:        netip.MustParseAddrPort("127.0.0.1:15053"),
		BypassUID:  &uid,
		BypassMark: &mark,
	}
	rc := encodeConfig(c)
	// The programs compare raw network-order bytes.
	if b := []byte{byte(rc.DnsIp4), byte(rc.DnsIp4 >> 8), byte(rc.DnsIp4 >> 16), byte(rc.DnsIp4 >> 24)}; !bytes.Equal(b, []byte{127, 0, 0, 1}) {
		t.Errorf("dns ip bytes %v, want 127.0.0.1 in network order", b)
	}
	if b := []byte{byte(rc.DnsPort), byte(rc.DnsPort >> 8)}; !bytes.Equal(b, []byte{15053 >> 8, 15053 & 0xff}) {
		t.Errorf("dns port bytes %v, want 15053 in network order", b)
	}
	back := decodeConfig(rc, c.VIPs)
	if back.DNS != c.DNS || *back.BypassUID != uid || *back.BypassMark != mark {
		t.Errorf("round trip = %+v", back)
	}
	k := vipKey(DefaultVIPCIDR)
	if got := vipFromEntry(k, redirectProxyTarget{Ip4: ip4Value(netip.MustParseAddr("127.0.0.1")), Port: portValue(15001)}); got != c.VIPs[0] {
		t.Errorf("VIP round trip = %v", got)
	}
	off := decodeConfig(encodeConfig(Config{}), nil)
	if off.DNS.IsValid() || off.BypassUID != nil || off.BypassMark != nil {
		t.Errorf("empty config round trip = %+v", off)
	}
	if err := (Config{VIPs: []VIPRoute{c.VIPs[0], c.VIPs[0]}}).Validate(); err == nil {
		t.Error("duplicate VIP ranges accepted")
	}
}

func TestMountinfoParsing(t *testing.T) {
	cases := map[string]string{
		"35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate": "/sys/fs/cgroup/unified",
		"30 23 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw":                                                  "/sys/fs/cgroup",
		`40 23 0:27 / /mnt/my\040cgroups rw - cgroup2 none rw`:                                                          "/mnt/my cgroups",
	}
	for line, want := range cases {
		if got, ok := cgroup2MountPoint(line); !ok || got != want {
			t.Errorf("cgroup2MountPoint(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
	for _, line := range []string{
		"36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
		"garbage",
	} {
		if got, ok := cgroup2MountPoint(line); ok {
			t.Errorf("cgroup2MountPoint(%q) = %q, want no match", line, got)
		}
	}
}

func TestKernelReleaseParsing(t *testing.T) {
	for rel, want := range map[string][2]int{"6.18.44-fc-v669": {6, 18}, "5.10.0-28-amd64": {5, 10}, "4.19.0": {4, 19}, "6.1-rc1": {6, 1}} {
		ma, mi, ok := parseKernelRelease(rel)
		if !ok || ma != want[0] || mi != want[1] {
			t.Errorf("parseKernelRelease(%q) = %d.%d %v, want %v", rel, ma, mi, ok, want)
		}
	}
	if _, _, ok := parseKernelRelease("garbage"); ok {
		t.Error("parsed garbage")
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"attach", "--cgroup", "x"},
		{"attach", "--dataplane", "x"},
		{"attach", "--dataplane", "x", "--cgroup", "y", "--vip", "nope"},
		{"attach", "--dataplane", "x", "--cgroup", "y", "--dns", "nope"},
		{"detach"},
	} {
		var out, errOut strings.Builder
		if code := RunCLI(args, &out, &errOut); code != 2 {
			t.Errorf("RunCLI(%q) exit %d, want 2 (usage); stderr %q", args, code, errOut.String())
		}
		if errOut.Len() == 0 {
			t.Errorf("RunCLI(%q) printed no explanation", args)
		}
	}
}
