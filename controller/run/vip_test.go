package run

import (
	"strings"
	"testing"
	"time"
)

// TestRenamesInSmallCIDRWithRelease: issue 12 item 8 through the run loop.
// In a CIDR of two addresses one service is renamed three times; with
// --vip-release-after 1s each old name's VIP returns once its grace is over.
func TestRenamesInSmallCIDRWithRelease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir(), StateDir: t.TempDir(), CIDR: "10.9.0.0/30", VIPReleaseAfter: time.Second})
	var vips []string
	for i, name := range []string{"api-0", "api-1", "api-2", "api-3"} {
		if i > 0 {
			// Grace is whole seconds: past it for the name removed last time.
			time.Sleep(2100 * time.Millisecond)
		}
		dropWrite(t, dir, "svc.yaml", tcpMES(name, 4000, 9001))
		st := waitStatus(t, r, 10*time.Second, name+" has a VIP", func(s *Status) bool {
			sv := service(s, name)
			return sv != nil && sv.VIP != "" && len(s.Services) == 1
		})
		vips = append(vips, service(st, name).VIP)
	}
	// .1 and .2 are the only usable addresses: they alternate.
	want := []string{"10.9.0.1", "10.9.0.2", "10.9.0.1", "10.9.0.2"}
	for i := range want {
		if vips[i] != want[i] {
			t.Fatalf("VIPs %v, want %v", vips, want)
		}
	}
}

func TestNegativeVIPReleaseAfterIsRefused(t *testing.T) {
	_, err := New(Config{Dir: "d", XDS: XDSFile, XDSDir: "/x", VIPReleaseAfter: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "--vip-release-after -1s: must not be negative") {
		t.Fatalf("err = %v", err)
	}
}
