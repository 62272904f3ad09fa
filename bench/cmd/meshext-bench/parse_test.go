package main

import (
	"strings"
	"testing"
	"time"
)

// Output captured from wrk 4.1.0 (Debian) with --latency.
const wrkOut = `Running 1s test @ http://127.0.0.1:40681/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   380.12us    1.02ms  20.00ms   97.50%
    Req/Sec    51.90k     2.10k   54.00k    80.00%
  Latency Distribution
     50%  219.00us
     75%  260.00us
     90%  330.00us
     99%    3.99ms
  51658 requests in 1.00s, 8.42MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  51658.31
Transfer/sec:      8.42MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 51658 || r.RPS != 51658.31 || r.Elapsed != time.Second {
		t.Errorf("totals: %+v", r)
	}
	if r.P50 != 219*time.Microsecond || r.P99 != 3990*time.Microsecond {
		t.Errorf("latency: p50 %s p99 %s", r.P50, r.P99)
	}
	if r.Errors != 7 {
		t.Errorf("errors = %d, want 3 socket + 4 non-2xx", r.Errors)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("garbage output parsed without error")
	}
	noLatency := strings.Replace(wrkOut, "     50%  219.00us\n", "", 1)
	if _, err := parseWrk(noLatency); err == nil {
		t.Error("output without p50 parsed without error")
	}
}

// Output shape of h2load (nghttp2 1.52.0).
const h2Out = `starting benchmark...
finished in 1.00s, 41591.00 req/s, 2.30MB/s
requests: 41591 total, 41623 started, 41591 done, 41590 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 41590 2xx, 0 3xx, 0 4xx, 1 5xx
`

func TestParseH2load(t *testing.T) {
	r, err := parseH2load(h2Out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 41590 || r.RPS != 41591 || r.Elapsed != time.Second {
		t.Errorf("totals: %+v", r)
	}
	if r.Errors != 2 { // 1 failed + 1 5xx
		t.Errorf("errors = %d", r.Errors)
	}
	if _, err := parseH2load("starting benchmark...\n"); err == nil {
		t.Error("no summary parsed without error")
	}
	lat, err := parseH2loadLog(strings.NewReader("1764100000000000\t200\t350\n1764100000000100\t200\t1200\n"))
	if err != nil || len(lat) != 2 || lat[1] != 1200*time.Microsecond {
		t.Errorf("log: %v %v", lat, err)
	}
	if _, err := parseH2loadLog(strings.NewReader("1\t200\tabc\n")); err == nil {
		t.Error("bad duration parsed without error")
	}
	if _, err := parseH2loadLog(strings.NewReader("")); err == nil {
		t.Error("empty log parsed without error")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i))
	}
	if p := percentile(s, 50); p != 50 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(s, 99); p != 99 {
		t.Errorf("p99 = %d", p)
	}
	if p := percentile(nil, 50); p != 0 {
		t.Errorf("empty p50 = %d", p)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"h2load", "-H", "content-type: application/grpc", "it's"})
	want := `h2load -H 'content-type: application/grpc' 'it'\''s'`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestPairedRatioUsesSameRounds(t *testing.T) {
	x := &variantRun{results: []loadResult{{RPS: 90}, {RPS: 50}, {RPS: 200}}, round: []int{0, 1, 3}}
	y := &variantRun{results: []loadResult{{RPS: 100}, {RPS: 100}, {RPS: 400}}, round: []int{0, 1, 2}}
	// Rounds 0 and 1 pair: 0.9 and 0.5; round 3 has no partner.
	if got := paired(x, y, false); got != 0.7 {
		t.Errorf("paired = %v, want 0.7", got)
	}
	if got := paired(x, nil, false); got != 0 {
		t.Errorf("paired with a missing variant = %v", got)
	}
	if ratio(0) != "n/a" || verdict(0.96, 0.97) != "**missed**" || verdict(0.97, 0.97) != "met" {
		t.Error("ratio/verdict formatting")
	}
}

func TestPairedCPU(t *testing.T) {
	x := &variantRun{results: []loadResult{{Requests: 100}, {Requests: 100}}, cpu: []float64{2, 3}, round: []int{0, 1}}
	y := &variantRun{results: []loadResult{{Requests: 100}, {Requests: 200}}, cpu: []float64{1, 4}, round: []int{0, 1}}
	// Per request: x 0.02, 0.03; y 0.01, 0.02 → ratios 2 and 1.5.
	if got := pairedCPU(x, y); got != 1.75 {
		t.Errorf("pairedCPU = %v, want 1.75", got)
	}
	direct := &variantRun{results: []loadResult{{Requests: 100}}, round: []int{0}}
	if got := pairedCPU(direct, y); got != 0 {
		t.Errorf("pairedCPU without Envoy CPU = %v", got)
	}
}

// medMax and medianCell read their input without reordering it.
func TestMedMaxAndMedianCell(t *testing.T) {
	v := []float64{300, 100, 200, 1000}
	if got := medMax(v); got != "250 ms / 1000 ms" {
		t.Errorf("medMax = %q", got)
	}
	if got := medianCell(v); got != "250 ms" {
		t.Errorf("medianCell = %q", got)
	}
	if v[0] != 300 || v[3] != 1000 {
		t.Errorf("input reordered: %v", v)
	}
	if medMax(nil) != "n/a" || medianCell(nil) != "n/a" {
		t.Error("empty input is not n/a")
	}
}
