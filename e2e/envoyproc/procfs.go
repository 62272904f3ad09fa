package envoyproc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// CPUTicks reads utime+stime (clock ticks) of a process from /proc/<pid>/stat.
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatTicks(string(b))
}

// ParseStatTicks extracts fields 14 (utime) and 15 (stime) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after the last ')'.
func ParseStatTicks(line string) (int64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime is field 14 → f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat line: %d fields", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat times %q %q", f[11], f[12])
	}
	return u + s, nil
}

// ClockTicks is USER_HZ; 100 on every Linux architecture Go supports.
const ClockTicks = 100

// RSSMB is a process's resident set size in MB (VmRSS), 0 when unknown.
func RSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// InotifyInstances counts a process's inotify file descriptors (each is one
// instance against fs.inotify.max_user_instances); -1 when unknown.
func InotifyInstances(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if t, err := os.Readlink(dir + "/" + e.Name()); err == nil && t == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// FreePort is a loopback port that was free for TCP and UDP a moment ago
// (a DNS server binds both), for an Envoy or a test server to bind shortly
// after. It is chosen below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where no client connection's source port
// can take it in between: a bench run opens thousands of connections, and
// an ephemeral port picked by bind(0) was once taken by one before Envoy's
// admin bound it (CI, 2026-12-03: "cannot bind ... Address already in
// use"). No port is handed out twice by one process. Without a range to
// read, it falls back to ephemeral ports. The tests' testnet.FreePort is
// this one too.
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	lo := ephemeralLow()
	if lo < 2048 {
		for range 50 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			p := l.Addr().(*net.TCPAddr).Port
			l.Close()
			if !handedOut[p] && portFree(p) {
				handedOut[p] = true
				return p, nil
			}
		}
		return 0, errors.New("no free ephemeral loopback port in 50 tries")
	}
	// Up to 12000 ports under the range, from a random start so that
	// concurrent processes rarely probe the same ones.
	base := max(1024, lo-12000)
	span := lo - base
	start := rand.IntN(span)
	for i := 0; i < span; i++ {
		p := base + (start+i)%span
		if !handedOut[p] && portFree(p) {
			handedOut[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port in [%d, %d)", base, lo)
}

var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// portFree says whether p binds on loopback for TCP and for UDP now.
func portFree(p int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralLow is the low end of the kernel's ephemeral port range, 0 when
// unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}

// CPUNanos is the CPU time in nanoseconds that every thread of a process
// has run so far, from /proc/<pid>/task/*/schedstat: the scheduler's own
// clock, where /proc/<pid>/stat counts 10 ms ticks, too coarse for a
// per-request cost over a two-second run. Threads that exit are not
// counted, which for Envoy's fixed set of threads changes nothing.
func CPUNanos(pid int) (int64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited since ReadDir
		}
		ns, err := ParseSchedstat(string(b))
		if err != nil {
			return 0, err
		}
		total += ns
	}
	return total, nil
}

// ParseSchedstat is the first field of a schedstat line: nanoseconds on CPU.
func ParseSchedstat(line string) (int64, error) {
	f := strings.Fields(line)
	if len(f) < 1 {
		return 0, fmt.Errorf("malformed schedstat line %q", line)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed schedstat line %q", line)
	}
	return ns, nil
}

// Together runs load(0) and load(1) at the same time and returns the CPU
// time (ns, every thread) processes pids[0] and pids[1] used meanwhile: one
// round of a side-by-side comparison, where both share whatever the host
// does in those seconds. The loads run even when the CPU times cannot be
// read; the error says so.
func Together(pids [2]int, load func(i int)) (cpu [2]int64, err error) {
	var before [2]int64
	var errs [2]error
	for i, pid := range pids {
		before[i], errs[i] = CPUNanos(pid)
	}
	var wg sync.WaitGroup
	for i := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			load(i)
		}()
	}
	wg.Wait()
	for i, pid := range pids {
		after, err := CPUNanos(pid)
		if errs[i] == nil {
			errs[i] = err
		}
		cpu[i] = after - before[i]
	}
	return cpu, errors.Join(errs[0], errs[1])
}
