package run

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestDNSFollowsDropDir checks the embedded DNS server answers each
// generated hostname with its VIP, and follows changes.
func TestDNSFollowsDropDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("192.0.2.10 pinned.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir(), DNSListen: "127.0.0.1:0", DNSHosts: hosts})

	lookup := func(name string) (netip.Addr, int) {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		c := &mdns.Client{Timeout: 2 * time.Second}
		resp, _, err := c.Exchange(m, r.DNSAddr())
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		for _, rr := range resp.Answer {
			if a, ok := rr.(*mdns.A); ok {
				ip, _ := netip.AddrFromSlice(a.A)
				return ip.Unmap(), resp.Rcode
			}
		}
		return netip.Addr{}, resp.Rcode
	}
	st := r.Status()
	a := service(&st, "mes-a")
	if a == nil || a.VIP == "" {
		t.Fatalf("mes-a has no VIP: %+v", st.Services)
	}
	if ip, rcode := lookup("mes-a.svc.meshext.local"); ip.String() != a.VIP {
		t.Fatalf("mes-a.svc.meshext.local = %v (rcode %d), want %s", ip, rcode, a.VIP)
	}
	if _, rcode := lookup("mes-b.svc.meshext.local"); rcode != mdns.RcodeNameError {
		t.Fatalf("unknown name in our zone: rcode %d, want NXDOMAIN", rcode)
	}

	dropWrite(t, dir, "b.yaml", tcpMES("mes-b", 4001, 9002))
	st = *waitStatus(t, r, 5*time.Second, "mes-b has a VIP", func(s *Status) bool {
		b := service(s, "mes-b")
		return b != nil && b.VIP != ""
	})
	if ip, rcode := lookup("mes-b.svc.meshext.local"); ip.String() != service(&st, "mes-b").VIP {
		t.Fatalf("mes-b.svc.meshext.local = %v (rcode %d), want %s", ip, rcode, service(&st, "mes-b").VIP)
	}

	// The hosts file is followed too.
	if ip, _ := lookup("pinned.example"); ip.String() != "192.0.2.10" {
		t.Fatalf("pinned.example = %v, want 192.0.2.10 from the hosts file", ip)
	}
	tmp := hosts + ".new"
	if err := os.WriteFile(tmp, []byte("192.0.2.11 pinned.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, hosts); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ip, _ := lookup("pinned.example")
		if ip.String() == "192.0.2.11" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts file change not served within 5s: pinned.example = %v", ip)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
