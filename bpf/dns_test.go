package bpf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/miekg/dns"
)

const testVIP = "242.0.0.7"

// startDNS serves A records for *.svc.meshext.local on 127.0.0.1:0/udp
// (a stand-in for the embedded DNS) and returns its address.
func startDNS(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		// Like the embedded DNS: A is the VIP, AAAA its v4-mapped form,
		// names outside the zone do not exist.
		for _, qq := range q.Question {
			if !strings.HasSuffix(qq.Name, ".svc.meshext.local.") {
				m.Rcode = dns.RcodeNameError
				continue
			}
			switch qq.Qtype {
			case dns.TypeA:
				rr, _ := dns.NewRR(qq.Name + " 60 IN A " + testVIP)
				m.Answer = append(m.Answer, rr)
			case dns.TypeAAAA:
				rr, _ := dns.NewRR(qq.Name + " 60 IN AAAA ::ffff:" + testVIP)
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})
	// TCP on the same address, as the embedded DNS does.
	tl, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: tl, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("DNS server did not start")
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func query(name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	b, _ := m.Pack()
	return b
}

func answerA(t testing.TB, b []byte) string {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack DNS reply: %v", err)
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func TestDNSRedirect(t *testing.T) {
	mount := requireBPF(t)
	target := startDNS(t)
	tr := attachForTest(t, mount, Config{DNS: target})
	const server = "10.53.0.1:53" // no route in the netns: only a redirect can answer

	// Unconnected UDP (sendto/recvfrom): the reply appears to come from
	// the server the app asked.
	var pc net.PacketConn
	var err error
	inCgroup(t, mount, tr.app, func() { pc, err = net.ListenPacket("udp4", ":0") })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(server))
	if _, err := pc.WriteTo(query("mes-http.svc.meshext.local"), dst); err != nil {
		t.Fatalf("sendto %s from app cgroup: %v", server, err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no DNS reply: %v", err)
	}
	if from.String() != server {
		t.Errorf("reply source %s, want %s", from, server)
	}
	if got := answerA(t, buf[:n]); got != testVIP {
		t.Errorf("answer %q, want %s", got, testVIP)
	}

	// Connected UDP (connect4): peer and reply source are the server asked.
	var c net.Conn
	inCgroup(t, mount, tr.app, func() { c, err = net.Dial("udp4", server) })
	if err != nil {
		t.Fatalf("connect UDP %s from app cgroup: %v", server, err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != server {
		t.Errorf("connected UDP getpeername %s, want %s", c.RemoteAddr(), server)
	}
	if _, err := c.Write(query("mes-tcp.svc.meshext.local")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err = c.(*net.UDPConn).ReadFrom(buf)
	if err != nil {
		t.Fatalf("no DNS reply on connected socket: %v", err)
	}
	if from.String() != server {
		t.Errorf("connected reply source %s, want %s", from, server)
	}
	if got := answerA(t, buf[:n]); got != testVIP {
		t.Errorf("connected answer %q, want %s", got, testVIP)
	}

	// DNS over TCP (resolvers fall back to it for truncated answers).
	var tc net.Conn
	inCgroup(t, mount, tr.app, func() { tc, err = net.DialTimeout("tcp4", server, 5*time.Second) })
	if err != nil {
		t.Fatalf("connect TCP %s from app cgroup: %v", server, err)
	}
	defer tc.Close()
	if tc.RemoteAddr().String() != server {
		t.Errorf("DNS over TCP getpeername %s, want %s", tc.RemoteAddr(), server)
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	dc := &dns.Conn{Conn: tc}
	q := new(dns.Msg)
	q.SetQuestion("mes-grpc.svc.meshext.local.", dns.TypeA)
	if err := dc.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	resp, err := dc.ReadMsg()
	if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != testVIP {
		t.Errorf("DNS over TCP answer %v, err %v; want A %s", resp, err, testVIP)
	}

	// Outside the app cgroup DNS is left alone.
	out, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.WriteTo(query("x.svc.meshext.local"), dst); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("sendto from outside the app cgroup: %v, want ENETUNREACH", err)
	}

	st, err := tr.r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.DNSRedirect != 3 || st.DNSReplyRestored != 2 || st.SockopsTuple != 0 {
		t.Errorf("counters %s: want 3 DNS redirects (UDP, connected UDP, TCP), 2 restored UDP replies, no tuple for DNS over TCP", st)
	}

	// Turning DNS off live leaves port 53 alone again.
	if err := tr.r.SetDNS(netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(query("mes-http.svc.meshext.local"), dst); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("sendto after SetDNS(off): %v, want ENETUNREACH", err)
	}
}

// TestDNSRedirectGlibcResolver runs glibc's resolver (getent) unchanged in
// the app cgroup: whatever nameserver /etc/resolv.conf names, its UDP/53
// query lands on the stand-in DNS and the answer is accepted.
func TestDNSRedirectGlibcResolver(t *testing.T) {
	mount := requireBPF(t)
	getent := testenv.Tool(t, "getent")
	ipTool := testenv.Tool(t, "ip")
	target := startDNS(t)
	tr := attachForTest(t, mount, Config{DNS: target})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// "hosts" is gethostbyname2; "ahostsv4" is getaddrinfo with
	// AI_ADDRCONFIG, which sends no query at all unless some non-loopback
	// IPv4 address is configured, so give the netns one (on lo).
	if out, err := exec.CommandContext(ctx, ipTool, "addr", "add", "10.99.0.1/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(ipTool, "addr", "del", "10.99.0.1/32", "dev", "lo").Run() })
	// RES_OPTIONS=use-vc makes glibc ask over TCP.
	for _, run := range []struct{ db, resOptions string }{{"hosts", ""}, {"ahostsv4", ""}, {"hosts", "use-vc"}} {
		db := run.db
		before, _ := tr.r.Stats()
		cmd := exec.CommandContext(ctx, getent, db, "mes-http.svc.meshext.local")
		cmd.Env = append(os.Environ(), "RES_OPTIONS="+run.resOptions)
		bpftest.CommandIn(t, cmd, tr.app)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("getent %s (RES_OPTIONS=%q) in the app cgroup: %v\n%s", db, run.resOptions, err, out)
		}
		if !strings.Contains(string(out), testVIP) {
			t.Errorf("getent %s (RES_OPTIONS=%q) printed %q, want %s", db, run.resOptions, out, testVIP)
		}
		after, _ := tr.r.Stats()
		if run.resOptions == "use-vc" && (after.DNSRedirect == before.DNSRedirect || after.DNSReplyRestored != before.DNSReplyRestored) {
			t.Errorf("use-vc: counters before %s after %s: want a redirect and no UDP reply (DNS over TCP)", before, after)
		}
	}
	if st, _ := tr.r.Stats(); st.DNSRedirect == 0 || st.DNSReplyRestored == 0 {
		t.Errorf("counters %s: want DNS redirects and restored replies", st)
	}
}
