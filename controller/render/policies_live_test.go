package render

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/accesslog"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
)

// Policies in a real Envoy: each test renders a small drop of YAML (a
// Dataplane with one outbound listener per MeshExternalService, services
// on loopback test servers, the policy under test), runs Envoy on it and
// sends real traffic.

// livePolicy is one running Envoy for a YAML world.
type livePolicy struct {
	envoy *envoyproc.Proc
	world *model.World
	node  *Node
}

// startPolicyEnvoy builds yaml (with a leading "# skip-defaults:" line
// honoured as in the goldens), renders it with opts and runs Envoy on its
// node "default.live".
func startPolicyEnvoy(t *testing.T, yaml string, opts Options) *livePolicy {
	t.Helper()
	envoy := testenv.Envoy(t)
	input := filepath.Join(t.TempDir(), "world.yaml")
	if err := os.WriteFile(input, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	w := buildPolicyCase(t, input)
	out := mustRender(t, w, opts)
	if len(out.Warnings) > 0 {
		t.Fatalf("render warnings: %v", out.Warnings)
	}
	for _, s := range w.Services {
		if s.Broken != "" {
			t.Fatalf("%s not rendered: %s", s.Name, s.Broken)
		}
	}
	n := out.Nodes["default.live"]
	if n == nil {
		t.Fatalf("no node default.live: %v", out.NodeIDs())
	}
	b, err := StaticBootstrap(n, BootstrapOptions{AdminPort: uint32(testnet.FreePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	js, err := CanonicalJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	e := envoyproc.StartT(t, envoyproc.Options{Bin: envoy, Bootstrap: js,
		// Access-log files flush every 100 ms, not Envoy's 10 s.
		Args: []string{"--file-flush-interval-msec", "100"}})
	return &livePolicy{envoy: e, world: w, node: n}
}

// liveDataplane is the head of a world: Dataplane "live" with an outbound
// port per service (name=port pairs) and a transparent port of its own;
// skip lists the default policies to leave out ("*" = all, "" = none).
func liveDataplane(t *testing.T, skip string, outbounds map[string]int) string {
	t.Helper()
	var b strings.Builder
	if skip != "" {
		fmt.Fprintf(&b, "# skip-defaults: %s\n", skip)
	}
	fmt.Fprintf(&b, "type: Dataplane\nmesh: default\nname: live\nnetworking:\n  address: 127.0.0.1\n")
	fmt.Fprintf(&b, "  transparentProxying: {redirectPortOutbound: %d}\n  outbound:\n", testnet.FreePort(t))
	for name, port := range outbounds {
		fmt.Fprintf(&b, "    - port: %d\n      backendRef: {kind: MeshExternalService, name: %s}\n", port, name)
	}
	return b.String()
}

func mesYAML(name, protocol string, matchPort int, endpoints ...int) string {
	var eps []string
	for _, p := range endpoints {
		eps = append(eps, fmt.Sprintf("{address: 127.0.0.1, port: %d}", p))
	}
	return fmt.Sprintf("---\ntype: MeshExternalService\nname: %s\nmesh: default\nspec:\n  match: {port: %d, protocol: %s}\n  endpoints: [%s]\n",
		name, matchPort, protocol, strings.Join(eps, ", "))
}

func httpServer(t *testing.T, h http.HandlerFunc) int { return testnet.HTTPServer(t, h) }

// nameServer answers every request with its name.
func nameServer(t *testing.T, name string) int {
	return httpServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) })
}

var liveClient = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// get sends one request to 127.0.0.1:port and returns status and body.
func get(t *testing.T, port int, path string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := liveClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitStat polls a stat until ok holds (bounded: 15 s).
func waitStat(t *testing.T, e *envoyproc.Proc, name string, ok func(int64) bool) int64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := e.StatInt(context.Background(), name)
		if err == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d (%v): condition not met within 15 s", name, v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEnvoyMeshRetryTurnsTwo503sIntoA200: the upstream answers 503 twice,
// then 200; with a MeshRetry the client sees one 200 and Envoy counts two
// retries.
func TestEnvoyMeshRetryTurnsTwo503sIntoA200(t *testing.T) {
	var calls atomic.Int32
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "third time lucky")
	})
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"flaky": out}) + mesYAML("flaky", "http", 80, up) + `---
type: MeshRetry
name: retry-flaky
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: flaky}
      default:
        http:
          numRetries: 3
          retryOn: ["503"]
          backOff: {baseInterval: 10ms, maxInterval: 20ms}
`
	lp := startPolicyEnvoy(t, yaml, Options{})
	code, body := get(t, out, "/")
	if code != 200 || body != "third time lucky" {
		t.Fatalf("got %d %q, want 200 after two retries", code, body)
	}
	cluster := lp.world.Service("default", "flaky").ClusterName()
	retries := waitStat(t, lp.envoy, "cluster."+cluster+".upstream_rq_retry", func(v int64) bool { return v > 0 })
	if retries != 2 || calls.Load() != 3 {
		t.Fatalf("upstream_rq_retry = %d and the upstream saw %d requests, want 2 retries of 3 requests", retries, calls.Load())
	}
	t.Logf("one request: upstream saw %d attempts, Envoy upstream_rq_retry = %d, client got %d", calls.Load(), retries, code)
}

// TestEnvoyMeshTimeoutAnswers504: an upstream that takes 3 s and a
// MeshTimeout of 1 s: the client gets 504 after about a second.
func TestEnvoyMeshTimeoutAnswers504(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "too late")
	})
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"slow": out}) + mesYAML("slow", "http", 80, up) + `---
type: MeshTimeout
name: slow-timeout
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: slow}
      default:
        http: {requestTimeout: 1s}
`
	lp := startPolicyEnvoy(t, yaml, Options{})
	start := time.Now()
	code, body := get(t, out, "/")
	took := time.Since(start)
	if code != 504 {
		t.Fatalf("got %d %q, want 504", code, body)
	}
	if took < 900*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("504 after %v, want about the 1 s timeout", took)
	}
	cluster := lp.world.Service("default", "slow").ClusterName()
	waitStat(t, lp.envoy, "cluster."+cluster+".upstream_rq_timeout", func(v int64) bool { return v == 1 })
	t.Logf("504 %q after %v (requestTimeout 1s, upstream 3s)", strings.TrimSpace(body), took.Round(time.Millisecond))
}

// TestEnvoyMeshCircuitBreakerOverflowsWith503: maxConnections 1 (and one
// pending request: for HTTP/1.1 Envoy queues what the connection limit
// holds back) against a slow upstream: of 6 concurrent requests the one
// that waits for the single connection is served, the others get 503 at
// once (flag UO), and the upstream never sees a second connection.
func TestEnvoyMeshCircuitBreakerOverflowsWith503(t *testing.T) {
	var open, maxOpen atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(500 * time.Millisecond)
			fmt.Fprint(w, "served")
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				n := open.Add(1)
				for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
				}
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	up := l.Addr().(*net.TCPAddr).Port
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"small": out}) + mesYAML("small", "http", 80, up) + `---
type: MeshCircuitBreaker
name: one-connection
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: small}
      default:
        connectionLimits: {maxConnections: 1, maxPendingRequests: 1}
`
	lp := startPolicyEnvoy(t, yaml, Options{})
	const n = 6
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client connection each, so Envoy sees 6 concurrent requests.
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", out))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[503] < 1 || count[200] < 1 || count[200]+count[503] != n {
		t.Fatalf("status codes %v: want some 200 and the overflow as 503", count)
	}
	if m := maxOpen.Load(); m != 1 {
		t.Fatalf("the upstream saw %d concurrent connections, want 1", m)
	}
	cluster := lp.world.Service("default", "small").ClusterName()
	overflow := waitStat(t, lp.envoy, "cluster."+cluster+".upstream_rq_pending_overflow", func(v int64) bool { return v > 0 })
	t.Logf("%d concurrent requests: %d x 200, %d x 503; upstream connections at most %d; upstream_rq_pending_overflow = %d",
		n, count[200], count[503], maxOpen.Load(), overflow)
}

// TestEnvoyMeshHealthCheckMovesTrafficOffADeadEndpoint: two endpoints, an
// HTTP health check every 200 ms (with or without traffic: Envoy's
// no_traffic_interval is a minute by default); one endpoint dies while no request is
// in flight. The health check alone marks it unhealthy, and every request
// after that goes to the live one: none fails, none was needed to notice.
func TestEnvoyMeshHealthCheckMovesTrafficOffADeadEndpoint(t *testing.T) {
	la, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvA := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "a") }), ReadHeaderTimeout: 10 * time.Second}
	go srvA.Serve(la)
	t.Cleanup(func() { srvA.Close() })
	a := la.Addr().(*net.TCPAddr).Port
	b := nameServer(t, "b")
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"pair": out}) + mesYAML("pair", "http", 80, a, b) + `---
type: MeshHealthCheck
name: pair-health
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: pair}
      default:
        interval: 200ms
        noTrafficInterval: 200ms
        timeout: 1s
        unhealthyThreshold: 1
        healthyThreshold: 1
        healthyPanicThreshold: 0
        http: {path: /health}
`
	lp := startPolicyEnvoy(t, yaml, Options{})
	cluster := "cluster." + lp.world.Service("default", "pair").ClusterName()
	waitStat(t, lp.envoy, cluster+".membership_healthy", func(v int64) bool { return v == 2 })
	seen := map[string]int{}
	for range 20 {
		_, body := get(t, out, "/")
		seen[body]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("both endpoints healthy: want traffic on both, got %v", seen)
	}
	// Endpoint a dies: its listener and connections close.
	srvA.Close()
	waitStat(t, lp.envoy, cluster+".membership_healthy", func(v int64) bool { return v == 1 })
	after := map[string]int{}
	for range 40 {
		code, body := get(t, out, "/")
		if code != 200 {
			t.Fatalf("a request failed after the health check marked the endpoint dead: %d %q", code, body)
		}
		after[body]++
	}
	if after["b"] != 40 {
		t.Fatalf("after the health check: %v, want every request on b", after)
	}
	if v := lp.envoy.StatValue(cluster + ".outlier_detection.ejections_enforced_total"); v != "" && v != "0" {
		t.Fatalf("outlier detection ejected %s endpoints: the health check, not failed requests, must move the traffic", v)
	}
	failures, _ := lp.envoy.StatInt(context.Background(), cluster+".health_check.failure")
	t.Logf("before: %v; endpoint a marked unhealthy by %d failed checks, then 40/40 requests to b, 0 ejections", seen, failures)
}

// TestEnvoyRingHashKeepsAHeaderValueOnOneEndpoint: RingHash on x-user over
// three endpoints: every request of one user goes to one endpoint.
func TestEnvoyRingHashKeepsAHeaderValueOnOneEndpoint(t *testing.T) {
	ports := []int{nameServer(t, "e0"), nameServer(t, "e1"), nameServer(t, "e2")}
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"sticky": out}) + mesYAML("sticky", "http", 80, ports...) + `---
type: MeshLoadBalancingStrategy
name: sticky-users
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: sticky}
      default:
        loadBalancer:
          type: RingHash
          ringHash:
            hashPolicies:
              - type: Header
                header: {name: x-user}
`
	startPolicyEnvoy(t, yaml, Options{})
	used := map[string]int{}
	for u := range 20 {
		user := "user-" + strconv.Itoa(u)
		first := ""
		for range 10 {
			code, body := get(t, out, "/", "x-user", user)
			if code != 200 {
				t.Fatalf("%s: %d %q", user, code, body)
			}
			if first == "" {
				first = body
			} else if body != first {
				t.Fatalf("%s went to %s, then to %s", user, first, body)
			}
		}
		used[first]++
	}
	if len(used) < 2 {
		t.Fatalf("20 users all on one endpoint %v: the hash is not spreading", used)
	}
	t.Logf("20 users x 10 requests each, every user on one endpoint; users per endpoint: %v", used)
}

// TestEnvoyMeshHTTPRouteHeaderMatchAndSplit: a header-matched request goes
// to one service; the rest is split 80/20 between two, within 5 points
// over 1,000 requests.
func TestEnvoyMeshHTTPRouteHeaderMatchAndSplit(t *testing.T) {
	blue, green := nameServer(t, "blue"), nameServer(t, "green")
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"blue": out}) + mesYAML("blue", "http", 80, blue) + mesYAML("green", "http", 81, green) + `---
type: MeshHTTPRoute
name: canary
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: blue}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /}
              headers: [{name: x-color, value: green}]
          default:
            backendRefs: [{kind: MeshExternalService, name: green}]
        - matches:
            - path: {type: PathPrefix, value: /}
          default:
            backendRefs:
              - {kind: MeshExternalService, name: blue, weight: 80}
              - {kind: MeshExternalService, name: green, weight: 20}
`
	startPolicyEnvoy(t, yaml, Options{})
	for range 20 {
		if _, body := get(t, out, "/", "x-color", "green"); body != "green" {
			t.Fatalf("x-color: green went to %q", body)
		}
	}
	const total = 1000
	got := map[string]int{}
	for range total {
		code, body := get(t, out, "/")
		if code != 200 {
			t.Fatalf("%d %q", code, body)
		}
		got[body]++
	}
	share := float64(got["blue"]) / total
	if share < 0.75 || share > 0.85 || got["blue"]+got["green"] != total {
		t.Fatalf("split %v over %d requests: blue %.1f %%, want 80 ± 5", got, total, share*100)
	}
	t.Logf("header match: 20/20 to green; split over %d requests: blue %d (%.1f %%), green %d", total, got["blue"], share*100, got["green"])
}

// TestEnvoyMeshTCPRouteSplit: a MeshTCPRoute splits connections 80/20,
// within 5 points over 1,000 connections.
func TestEnvoyMeshTCPRouteSplit(t *testing.T) {
	a, b := testnet.LineServer(t, "primary"), testnet.LineServer(t, "replica")
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"db": out}) + mesYAML("db", "tcp", 5432, a) + mesYAML("db-replica", "tcp", 5433, b) + `---
type: MeshTCPRoute
name: db-split
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: db}
      rules:
        - default:
            backendRefs:
              - {kind: MeshExternalService, name: db, weight: 80}
              - {kind: MeshExternalService, name: db-replica, weight: 20}
`
	startPolicyEnvoy(t, yaml, Options{})
	const total = 1000
	got := map[string]int{}
	for range total {
		got[readLine(t, out)]++
	}
	share := float64(got["primary"]) / total
	if share < 0.75 || share > 0.85 || got["primary"]+got["replica"] != total {
		t.Fatalf("split %v over %d connections: primary %.1f %%, want 80 ± 5", got, total, share*100)
	}
	t.Logf("split over %d connections: primary %d (%.1f %%), replica %d", total, got["primary"], share*100, got["replica"])
}

// sinkRecords are a TCP sink's JSON lines as "key=value ...".
func sinkRecords(lines []string) string {
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			out = append(out, "not JSON: "+l)
			continue
		}
		out = append(out, fmt.Sprintf("sink=%v destination=%v bytes=%v", m["sink"], m["destination"], m["bytes"]))
	}
	return strings.Join(out, "\n")
}

// TestEnvoyMeshAccessLogFileAndTCP: with a MeshAccessLog, an HTTP request
// and a TCP connection are logged to a file and, through meshext's relay,
// to a TCP sink, with Kuma's placeholders filled and meshext's TLS failure
// reason field; without one, Envoy logs nothing anywhere.
func TestEnvoyMeshAccessLogFileAndTCP(t *testing.T) {
	web := nameServer(t, "web")
	echo := testnet.LineServer(t, "hello over tcp")
	logFile := filepath.Join(t.TempDir(), "access.log")
	sinkAddr, sinkLines := testnet.LineSink(t)
	fifoDir := t.TempDir()
	relay := accesslog.New(nil)
	t.Cleanup(relay.Close)

	world := func(withLog bool) (string, int, int) {
		httpOut, tcpOut := testnet.FreePort(t), testnet.FreePort(t)
		y := liveDataplane(t, "*", map[string]int{"web": httpOut, "echo": tcpOut}) + mesYAML("web", "http", 80, web) + mesYAML("echo", "tcp", 4242, echo)
		if withLog {
			y += fmt.Sprintf(`---
type: MeshAccessLog
name: log-everything
mesh: default
spec:
  to:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file:
              path: %s
              format:
                type: Plain
                plain: 'file %%KUMA_MESH%% %%KUMA_SOURCE_SERVICE%% -> %%KUMA_DESTINATION_SERVICE%% code=%%RESPONSE_CODE%% tls="%%UPSTREAM_TRANSPORT_FAILURE_REASON%%"'
          - type: Tcp
            tcp:
              address: %q
              format:
                type: Json
                json:
                  - {key: sink, value: tcp}
                  - {key: destination, value: "%%KUMA_DESTINATION_SERVICE%%"}
                  - {key: bytes, value: "%%BYTES_SENT%%"}
`, logFile, sinkAddr)
		}
		return y, httpOut, tcpOut
	}
	traffic := func(httpOut, tcpOut int) {
		if code, body := get(t, httpOut, "/logged"); code != 200 || body != "web" {
			t.Fatalf("http: %d %q", code, body)
		}
		if got := readLine(t, tcpOut); got != "hello over tcp" {
			t.Fatalf("tcp: %q", got)
		}
	}

	t.Run("without a MeshAccessLog nothing is logged", func(t *testing.T) {
		y, httpOut, tcpOut := world(false)
		lp := startPolicyEnvoy(t, y, Options{AccessLogFIFODir: fifoDir})
		if lp.node.AccessLogFIFO != "" {
			t.Fatalf("a node without Tcp backends needs no FIFO, got %s", lp.node.AccessLogFIFO)
		}
		traffic(httpOut, tcpOut)
		// Ten flush intervals: anything written would be there by now.
		time.Sleep(time.Second)
		if _, err := os.Stat(logFile); !os.IsNotExist(err) {
			t.Fatalf("access log file exists without a MeshAccessLog (%v)", err)
		}
		if s := sinkLines(); len(s) > 0 {
			t.Fatalf("TCP sink got %q without a MeshAccessLog", s)
		}
		if log := lp.envoy.LogText(); strings.Contains(log, "/logged") || strings.Contains(log, "hello") {
			t.Fatalf("Envoy printed an access log line:\n%s", log)
		}
	})

	t.Run("with a MeshAccessLog both backends get each access", func(t *testing.T) {
		y, httpOut, tcpOut := world(true)
		// The relay reads the node's FIFO before Envoy gets the config, as
		// meshext run does.
		if err := relay.Ensure(AccessLogFIFO(fifoDir, "default.live")); err != nil {
			t.Fatal(err)
		}
		lp := startPolicyEnvoy(t, y, Options{AccessLogFIFODir: fifoDir})
		if want := AccessLogFIFO(fifoDir, "default.live"); lp.node.AccessLogFIFO != want {
			t.Fatalf("node FIFO %q, want %q", lp.node.AccessLogFIFO, want)
		}
		traffic(httpOut, tcpOut)
		wantFile := []string{`file default live -> web code=200 tls="-"`, `file default live -> echo code=0 tls="-"`}
		// One JSON object per line; Envoy types a lone number command.
		wantSink := []string{"sink=tcp destination=web bytes=3", "sink=tcp destination=echo bytes=15"}
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, _ := os.ReadFile(logFile)
			file, tcp := string(b), sinkRecords(sinkLines())
			missing := ""
			for _, w := range wantFile {
				if !strings.Contains(file, w) {
					missing += fmt.Sprintf("file lacks %q; ", w)
				}
			}
			for _, w := range wantSink {
				if !strings.Contains(tcp, w) {
					missing += fmt.Sprintf("sink lacks %q; ", w)
				}
			}
			if missing == "" {
				t.Logf("file:\n%s\ntcp sink:\n%s", strings.TrimSpace(file), tcp)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s\nfile:\n%s\nsink:\n%s", missing, file, tcp)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if relay.Dropped.Load() != 0 {
			t.Errorf("relay dropped %d records", relay.Dropped.Load())
		}
	})
}

// TestEnvoyConfigDumpShowsKumaDefaults: with no policy of their own, a
// mesh's services get Kuma's default policies, and Envoy's /config_dump
// shows them: mesh-timeout-all (connect 5 s, idle 1 h, request 15 s,
// stream idle 30 min), mesh-retry-all (5 connect attempts; 5 retries,
// 16 s per try, 25-250 ms back-off) and mesh-circuit-breaker-all (1024
// connections, pending requests and requests, 3 retries).
func TestEnvoyConfigDumpShowsKumaDefaults(t *testing.T) {
	web, echo := nameServer(t, "web"), testnet.EchoServer(t)
	httpOut, tcpOut := testnet.FreePort(t), testnet.FreePort(t)
	yaml := liveDataplane(t, "", map[string]int{"web": httpOut, "echo": tcpOut}) +
		mesYAML("web", "http", 80, web) + mesYAML("echo", "tcp", 4242, echo)
	lp := startPolicyEnvoy(t, yaml, Options{})
	dump, err := lp.envoy.ConfigDump("")
	if err != nil {
		t.Fatal(err)
	}
	compact := strings.Join(strings.Fields(dump), "")
	webCluster := lp.world.Service("default", "web").ClusterName()
	want := map[string]string{
		"mesh-timeout-all: connect timeout":        `"connect_timeout":"5s"`,
		"mesh-timeout-all: upstream idle timeout":  `"common_http_protocol_options":{"idle_timeout":"3600s"`,
		"mesh-timeout-all: tcp_proxy idle timeout": `"idle_timeout":"3600s"`,
		"mesh-timeout-all: request timeout":        `"timeout":"15s"`,
		"mesh-timeout-all: stream idle timeout":    `"idle_timeout":"1800s"`,
		"mesh-retry-all: http retries":             `"retry_on":"gateway-error,connect-failure,refused-stream","num_retries":5,"per_try_timeout":"16s"`,
		"mesh-retry-all: back-off":                 `"retry_back_off":{"base_interval":"0.025s","max_interval":"0.250s"}`,
		"mesh-retry-all: tcp connect attempts":     `"max_connect_attempts":5`,
		"mesh-circuit-breaker-all: thresholds":     `"max_connections":1024,"max_pending_requests":1024,"max_requests":1024,"max_retries":3,"track_remaining":true`,
		"the http route goes to the service":       `"cluster":"` + webCluster + `"`,
	}
	for what, frag := range want {
		if !strings.Contains(compact, frag) {
			t.Errorf("%s: /config_dump lacks %s", what, frag)
		}
	}
	if t.Failed() {
		t.Logf("config dump:\n%s", dump)
	}
	// And the config carries traffic.
	if code, body := get(t, httpOut, "/"); code != 200 || body != "web" {
		t.Fatalf("http: %d %q", code, body)
	}
	testnet.EchoThrough(t, fmt.Sprintf("127.0.0.1:%d", tcpOut), "ping\n", 10*time.Second)
}

// TestEnvoyMeshAccessLogOnAMeshHTTPRoute: a MeshAccessLog aimed at a
// MeshHTTPRoute logs that route's requests to its own file; the service's
// MeshAccessLog logs the others, and not those.
func TestEnvoyMeshAccessLogOnAMeshHTTPRoute(t *testing.T) {
	web := nameServer(t, "web")
	dir := t.TempDir()
	routeLog, serviceLog := filepath.Join(dir, "admin.log"), filepath.Join(dir, "service.log")
	out := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{"web": out}) + mesYAML("web", "http", 80, web) + fmt.Sprintf(`---
type: MeshHTTPRoute
name: admin
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: web}
      rules:
        - matches: [{path: {type: PathPrefix, value: /admin}}]
          default: {}
---
type: MeshAccessLog
name: service-log
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: web}
      default:
        backends: [{type: File, file: {path: %s, format: {type: Plain, plain: 'service %%REQ(:PATH)%%'}}}]
---
type: MeshAccessLog
name: admin-log
mesh: default
spec:
  to:
    - targetRef: {kind: MeshHTTPRoute, name: admin}
      default:
        backends: [{type: File, file: {path: %s, format: {type: Plain, plain: 'admin %%REQ(:PATH)%%'}}}]
`, serviceLog, routeLog)
	startPolicyEnvoy(t, yaml, Options{})
	for _, p := range []string{"/admin/users", "/public", "/admin", "/other"} {
		if code, body := get(t, out, p); code != 200 || body != "web" {
			t.Fatalf("%s: %d %q", p, code, body)
		}
	}
	want := map[string]string{routeLog: "admin /admin/users\nadmin /admin\n", serviceLog: "service /public\nservice /other\n"}
	deadline := time.Now().Add(15 * time.Second)
	for path, w := range want {
		for {
			b, _ := os.ReadFile(path)
			if string(b) == w {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %q, want %q", filepath.Base(path), b, w)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestEnvoyForwardProxyLogsPerDestination: on the forward-proxy listener
// each destination's MeshAccessLog logs the requests that went to it.
func TestEnvoyForwardProxyLogsPerDestination(t *testing.T) {
	logged, quiet := nameServer(t, "logged"), nameServer(t, "quiet")
	logFile := filepath.Join(t.TempDir(), "proxy.log")
	proxy := testnet.FreePort(t)
	yaml := liveDataplane(t, "*", map[string]int{}) + mesYAML("logged", "http", 80, logged) + mesYAML("quiet", "http", 80, quiet) + fmt.Sprintf(`---
type: HostnameGenerator
name: gen
mesh: default
spec:
  selector: {meshExternalService: {matchLabels: {kuma.io/origin: zone}}}
  template: "{{ .DisplayName }}.svc.meshext.local"
---
type: MeshAccessLog
name: logged-only
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: logged}
      default:
        backends: [{type: File, file: {path: %s, format: {type: Plain, plain: '%%REQ(:AUTHORITY)%% -> %%KUMA_DESTINATION_SERVICE%% %%RESPONSE_CODE%%'}}}]
`, logFile)
	startPolicyEnvoy(t, yaml, Options{HTTPProxyListen: fmt.Sprintf("127.0.0.1:%d", proxy)})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
		return url.Parse(fmt.Sprintf("http://127.0.0.1:%d", proxy))
	}}}
	for _, host := range []string{"logged", "quiet"} {
		resp, err := c.Get("http://" + host + ".svc.meshext.local/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != host {
			t.Fatalf("%s: %d %q", host, resp.StatusCode, body)
		}
	}
	want := "logged.svc.meshext.local -> default_logged__default_extsvc_80 200\n"
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if string(b) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy log %q, want %q", b, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEnvoyRequestIDOnlyWithAMeshAccessLog: without a MeshAccessLog the
// outbound makes up no x-request-id (the upstream sees none), and a
// caller's own passes through; with one, Envoy gives each request an ID,
// and the upstream and the log line see the same one.
func TestEnvoyRequestIDOnlyWithAMeshAccessLog(t *testing.T) {
	web := httpServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Header.Get("X-Request-Id")) })
	logFile := filepath.Join(t.TempDir(), "access.log")
	world := func(withLog bool) (string, int) {
		out := testnet.FreePort(t)
		y := liveDataplane(t, "*", map[string]int{"web": out}) + mesYAML("web", "http", 80, web)
		if withLog {
			y += fmt.Sprintf(`---
type: MeshAccessLog
name: ids
mesh: default
spec:
  to:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file:
              path: %s
              format: {type: Plain, plain: 'id=%%REQ(X-REQUEST-ID)%%'}
`, logFile)
		}
		return y, out
	}

	t.Run("without a MeshAccessLog", func(t *testing.T) {
		y, out := world(false)
		startPolicyEnvoy(t, y, Options{})
		if code, id := get(t, out, "/"); code != 200 || id != "" {
			t.Fatalf("upstream saw x-request-id %q (status %d), want none", id, code)
		}
		if code, id := get(t, out, "/", "X-Request-Id", "caller-chosen-1"); code != 200 || id != "caller-chosen-1" {
			t.Fatalf("upstream saw x-request-id %q (status %d), want the caller's", id, code)
		}
	})

	t.Run("with a MeshAccessLog", func(t *testing.T) {
		y, out := world(true)
		startPolicyEnvoy(t, y, Options{})
		code, id := get(t, out, "/")
		if code != 200 || len(id) != 36 || strings.Count(id, "-") != 4 {
			t.Fatalf("upstream saw x-request-id %q (status %d), want a UUID", id, code)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, _ := os.ReadFile(logFile)
			if strings.Contains(string(b), "id="+id) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("log lacks id=%s:\n%s", id, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
