package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadResult is what one load run measured.
type loadResult struct {
	Requests int64         // completed requests (or echo round trips for tcp)
	Errors   int64         // failed requests, socket errors, non-2xx
	Elapsed  time.Duration // measured duration
	RPS      float64
	MBps     float64 // payload MB/s (tcp only), 1 MB = 10^6 bytes
	P50, P99 time.Duration
}

// loadSpec says how to drive one protocol.
type loadSpec struct {
	Proto    string // tcp | http | grpc | tls
	Target   string // host:port
	HTTPS    bool   // target speaks TLS (direct https upstream)
	Conns    int
	Streams  int // h2load -m
	Duration time.Duration
	// Requests, when set, is an exact count instead of Duration: h2load -n
	// (HTTP/1.1 through h2load --h1, as wrk cannot count), tcp round trips.
	Requests int
	WorkDir  string
}

// command returns the exact command line for the report (tcp is built in).
func (s loadSpec) command(wrk, h2load string) []string {
	secs := fmt.Sprintf("%ds", int(s.Duration.Seconds()))
	// h2load's run length: a count, or seconds.
	length := []string{"-D", strconv.Itoa(int(s.Duration.Seconds()))}
	if s.Requests > 0 {
		length = []string{"-n", strconv.Itoa(s.Requests)}
	}
	switch s.Proto {
	case "http", "tls":
		scheme := "http"
		if s.HTTPS {
			scheme = "https"
		}
		url := scheme + "://" + s.Target + "/"
		if s.Requests > 0 {
			return append(append([]string{h2load, "--h1", "-t1", fmt.Sprintf("-c%d", s.Conns)}, length...), url)
		}
		return []string{wrk, "-t1", fmt.Sprintf("-c%d", s.Conns), "-d" + secs, "--latency", url}
	case "grpc":
		return append(append([]string{h2load, "-t1", fmt.Sprintf("-c%d", s.Conns), fmt.Sprintf("-m%d", s.Streams)}, length...),
			"-d", filepath.Join(s.WorkDir, "grpc-health-check.bin"),
			"-H", "content-type: application/grpc", "-H", "te: trailers",
			"--log-file", filepath.Join(s.WorkDir, "h2load.log"),
			"http://"+s.Target+"/grpc.health.v1.Health/Check")
	}
	return []string{"bin/meshext-bench", "tcp-echo", "-c", strconv.Itoa(s.Conns), "-d", secs, "-size", strconv.Itoa(tcpMessage), s.Target}
}

func runLoad(ctx context.Context, s loadSpec, wrk, h2load string) (loadResult, error) {
	switch s.Proto {
	case "tcp":
		return tcpEcho(ctx, s.Target, s.Conns, tcpMessage, s.Duration, s.Requests)
	case "grpc":
		// An empty grpc.health.v1.HealthCheckRequest: flag 0, length 0.
		if err := os.WriteFile(filepath.Join(s.WorkDir, "grpc-health-check.bin"), []byte{0, 0, 0, 0, 0}, 0o644); err != nil {
			return loadResult{}, err
		}
		_ = os.Remove(filepath.Join(s.WorkDir, "h2load.log"))
	}
	argv := s.command(wrk, h2load)
	limit := s.Duration + 30*time.Second
	if s.Requests > 0 {
		limit = 10 * time.Minute // counted runs serve Envoys under valgrind
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("%s: %v: %s", filepath.Base(argv[0]), err, lastLines(string(out), 5))
	}
	if s.Proto != "grpc" && s.Requests > 0 {
		return parseH2load(string(out))
	}
	if s.Proto == "grpc" {
		r, err := parseH2load(string(out))
		if err != nil {
			return r, err
		}
		lat, err := readH2loadLog(filepath.Join(s.WorkDir, "h2load.log"))
		if err != nil {
			return r, err
		}
		r.P50, r.P99 = percentile(lat, 50), percentile(lat, 99)
		return r, nil
	}
	return parseWrk(string(out))
}

var (
	wrkTotal   = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m),`)
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkSock    = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	h2Finished = regexp.MustCompile(`finished in ([0-9.]+)(us|ms|s), ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

func unitDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "m":
		return time.Duration(f * float64(time.Minute))
	}
	return time.Duration(f * float64(time.Second))
}

// parseWrk reads `wrk --latency` output.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no request total in output: %s", lastLines(out, 5))
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Elapsed = unitDuration(m[2], m[3])
	if m := wrkRPS.FindStringSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		d := unitDuration(m[2], m[3])
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if m := wrkSock.FindStringSubmatch(out); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.Errors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.Errors += n
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("wrk: no latency distribution (was --latency given?)")
	}
	return r, nil
}

// parseH2load reads h2load's summary; latencies come from its log file.
func parseH2load(out string) (loadResult, error) {
	var r loadResult
	m := h2Finished.FindStringSubmatch(out)
	q := h2Requests.FindStringSubmatch(out)
	if m == nil || q == nil {
		return r, fmt.Errorf("h2load: no summary in output: %s", lastLines(out, 5))
	}
	r.Elapsed = unitDuration(m[1], m[2])
	r.RPS, _ = strconv.ParseFloat(m[3], 64)
	succeeded, _ := strconv.ParseInt(q[4], 10, 64)
	r.Requests = succeeded
	for _, v := range q[5:8] {
		n, _ := strconv.ParseInt(v, 10, 64)
		r.Errors += n
	}
	if s := h2Status.FindStringSubmatch(out); s != nil {
		for _, v := range s[2:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.Errors += n
		}
	}
	return r, nil
}

// readH2loadLog reads the per-request log: start µs, status, duration µs.
func readH2loadLog(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseH2loadLog(f)
}

func parseH2loadLog(r io.Reader) ([]time.Duration, error) {
	var lat []time.Duration
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 3 {
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("h2load log: bad duration %q", f[2])
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("h2load log: no requests")
	}
	return lat, s.Err()
}

// percentile of samples (sorted in place), nearest-rank.
func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	if !sort.SliceIsSorted(s, func(i, j int) bool { return s[i] < s[j] }) {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	}
	k := int(p/100*float64(len(s))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}

// tcpMessage is the echo message size: large enough to measure throughput,
// small enough that every round trip is also a latency sample.
const tcpMessage = 16 << 10

// tcpEcho keeps conns connections each sending size bytes and reading the
// echo back, for d, or, when trips > 0, for exactly trips round trips in
// all (split over the connections). MB/s counts payload one way.
func tcpEcho(ctx context.Context, target string, conns, size int, d time.Duration, trips int) (loadResult, error) {
	var (
		mu    sync.Mutex
		lat   []time.Duration
		total int64
		errs  int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	dial := 5 * time.Second
	if trips > 0 {
		// Counted: an Envoy under valgrind is slow, so bound only the whole.
		conns, end, dial = min(conns, trips), start.Add(10*time.Minute), 30*time.Second
	}
	firstErr := make(chan error, conns)
	for i := 0; i < conns; i++ {
		// Counted: this connection's share of trips.
		share := int64(trips / conns)
		if i < trips%max(conns, 1) {
			share++
		}
		more := func(k int64) bool {
			if trips > 0 {
				return k < share
			}
			return time.Now().Before(end)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", target, dial)
			if err != nil {
				firstErr <- err
				mu.Lock()
				errs++
				mu.Unlock()
				return
			}
			defer c.Close()
			_ = c.SetDeadline(end.Add(10 * time.Second))
			var mine []time.Duration
			n, err := echoTrips(ctx, c, size, more, &mine)
			if err != nil {
				firstErr <- err
			}
			mu.Lock()
			if err != nil {
				errs++
			}
			lat = append(lat, mine...)
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := loadResult{Requests: total, Errors: errs, Elapsed: elapsed}
	if total == 0 {
		select {
		case err := <-firstErr:
			return r, fmt.Errorf("tcp echo: no round trips: %v", err)
		default:
			return r, fmt.Errorf("tcp echo: no round trips")
		}
	}
	r.RPS = float64(total) / elapsed.Seconds()
	r.MBps = float64(total) * float64(size) / elapsed.Seconds() / 1e6
	r.P50, r.P99 = percentile(lat, 50), percentile(lat, 99)
	return r, nil
}

// echoTrips sends size bytes on c and reads the echo back while more(trips
// so far) holds, appending each round trip's latency to lat when non-nil.
func echoTrips(ctx context.Context, c net.Conn, size int, more func(int64) bool, lat *[]time.Duration) (int64, error) {
	out, in := make([]byte, size), make([]byte, size)
	var n int64
	for more(n) && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return n, err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return n, err
		}
		if lat != nil {
			*lat = append(*lat, time.Since(t0))
		}
		n++
	}
	return n, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// runTCPEcho is the `tcp-echo` subcommand, so the TCP figures can be
// reproduced by hand.
func runTCPEcho(args []string) int {
	fs := flag.NewFlagSet("tcp-echo", flag.ContinueOnError)
	conns := fs.Int("c", 8, "connections")
	d := fs.Duration("d", 5*time.Second, "duration")
	size := fs.Int("size", tcpMessage, "message size in bytes")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: meshext-bench tcp-echo [-c N] [-d 5s] [-size BYTES] HOST:PORT")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *conns < 1 || *size < 1 || *d <= 0 {
		fs.Usage()
		return 2
	}
	r, err := tcpEcho(context.Background(), fs.Arg(0), *conns, *size, *d, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcp-echo:", err)
		return 1
	}
	fmt.Printf("%d round trips in %s, %.1f MB/s, p50 %s, p99 %s, %d errors\n", r.Requests, r.Elapsed.Round(time.Millisecond), r.MBps, r.P50, r.P99, r.Errors)
	return 0
}

// shellJoin quotes arguments that a shell would split.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?;&|<>()") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
