package envoyproc

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
)

func TestParseStatTicks(t *testing.T) {
	// The comm field may hold spaces and ')'.
	line := "4242 (envoy (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 3 0 100 1000 10"
	got, err := ParseStatTicks(line)
	if err != nil || got != 1290 {
		t.Errorf("ticks = %d, %v; want 1290", got, err)
	}
	if _, err := ParseStatTicks("4242 envoy S 1"); err == nil {
		t.Error("line without comm parsed without error")
	}
	if _, err := ParseStatTicks("1 (a) S 1 2"); err == nil {
		t.Error("short line parsed without error")
	}
}

func TestInotifyInstancesCountsOwn(t *testing.T) {
	before := InotifyInstances(os.Getpid())
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	testenv.Require(t, err == nil, "inotify (inotify_init1)")
	defer syscall.Close(fd)
	if got := InotifyInstances(os.Getpid()); got != before+1 {
		t.Errorf("inotify instances %d → %d, want +1", before, got)
	}
	if InotifyInstances(-1) != -1 {
		t.Error("a missing process did not report -1")
	}
}

func TestParseSchedstat(t *testing.T) {
	got, err := ParseSchedstat("123456789 2000 17\n")
	if err != nil || got != 123456789 {
		t.Errorf("ns = %d, %v; want 123456789", got, err)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if _, err := ParseSchedstat(bad); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

func TestCPUNanosGrowsWithOwnWork(t *testing.T) {
	_, err := os.Stat("/proc/self/task")
	testenv.Require(t, err == nil, "/proc/<pid>/task (procfs)")
	before, err := CPUNanos(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin for 50 ms of wall time: at least some of it is on CPU.
	x := 0
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	after, err := CPUNanos(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < int64(10*time.Millisecond) {
		t.Errorf("CPU ns grew by %d over a 50 ms spin (x=%d), want ≥ 10 ms", after-before, x)
	}
	if _, err := CPUNanos(-1); err == nil {
		t.Error("a missing process gave no error")
	}
}

func TestTogetherRunsBothLoadsAndCountsTheirCPU(t *testing.T) {
	_, err := os.Stat("/proc/self/task")
	testenv.Require(t, err == nil, "/proc/<pid>/task (procfs)")
	var ran [2]bool
	spin := func(i int) {
		ran[i] = true
		x := 0
		for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
			x++
		}
		_ = x
	}
	// Both "processes" are this one, so each sees both loads' CPU.
	cpu, err := Together([2]int{os.Getpid(), os.Getpid()}, spin)
	if err != nil {
		t.Fatal(err)
	}
	if !ran[0] || !ran[1] {
		t.Errorf("loads run: %v, want both", ran)
	}
	for i, ns := range cpu {
		if ns < int64(10*time.Millisecond) {
			t.Errorf("cpu[%d] = %d ns over two 50 ms spins, want ≥ 10 ms", i, ns)
		}
	}
	ran = [2]bool{}
	if _, err := Together([2]int{-1, os.Getpid()}, spin); err == nil {
		t.Error("a missing process gave no error")
	}
	if !ran[0] || !ran[1] {
		t.Errorf("loads run with an unreadable process: %v, want both", ran)
	}
}

// FreePort's ports lie below the ephemeral range (client connections'
// source ports cannot take them), bind for TCP and UDP, and are not handed
// out twice.
func TestFreePortBelowEphemeralRangeAndUnique(t *testing.T) {
	lo := ephemeralLow()
	testenv.Require(t, lo >= 2048, "/proc/sys/net/ipv4/ip_local_port_range")
	seen := map[int]bool{}
	for range 200 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p >= lo || p < 1024 {
			t.Fatalf("port %d outside [1024, %d)", p, lo)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d does not bind: %v", p, err)
		}
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d does not bind for UDP: %v", p, err)
		}
		u.Close()
	}
}
