package main

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The head and tail of a real callgrind dump (valgrind 3.19, Envoy 1.39).
const callgrindDump = `# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 18168
cmd:  /work/main/.tools/envoy/envoy/_bin/envoy -c b.yaml --concurrency 1
part: 1

desc: I1 cache: 
desc: Timerange: Basic block 0 - 729094364
desc: Trigger: dump

positions: line
events: Ir
summary: 0

fn=(1) 0x0000000006108340
0 274130979
totals: 779259494
`

func TestParseCallgrindTotals(t *testing.T) {
	got, err := parseCallgrindTotals(strings.NewReader(callgrindDump))
	if err != nil || got != 779259494 {
		t.Errorf("totals = %d, %v; want 779259494", got, err)
	}
	for _, bad := range []string{"events: Ir\nsummary: 0\n", "totals:\n", "totals: x\n"} {
		if _, err := parseCallgrindTotals(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// tcpEcho with a count must make exactly n round trips, however n splits over the
// connections.
func TestTCPEchoCountMakesExactlyN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var bytes atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(c, c)
				bytes.Add(n)
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const size, n = 1000, 23
	r, err := tcpEcho(ctx, ln.Addr().String(), 4, size, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != n || r.Errors != 0 {
		t.Errorf("%d round trips, %d errors; want %d, 0", r.Requests, r.Errors, n)
	}
	// The server counts a connection's bytes when the client closes it.
	for end := time.Now().Add(5 * time.Second); bytes.Load() < size*n && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := bytes.Load(); got != size*n {
		t.Errorf("echoed %d bytes, want %d (%d round trips of %d)", got, size*n, n, size)
	}
}

// Every row of the side-by-side and instruction tables has its header's
// column count.
func TestRowsMatchHeaders(t *testing.T) {
	cols := func(s string) int { return strings.Count(strings.SplitN(s, "\n", 2)[0], "|") }
	res := make([]sbsResult, len(sbsPairs))
	res[0] = sbsResult{thr: []float64{0.99, 1.01}, cpuReq: []float64{1.0}}
	res[2].errs = []string{"h2load: boom"}
	if h, r := cols(sbsHeader), cols(sbsRow("HTTP/1.1", res)); h != r {
		t.Errorf("side by side: header has %d bars, row %d", h, r)
	}
	runs := make([]*variantRun, len(variants))
	for i := range runs {
		runs[i] = &variantRun{ir: float64(1000 + i), irWorker: float64(500 + i)}
	}
	runs[vD].irWhy = "failed: no"
	row := irRow("TCP", runs)
	sec := irSection(dpConfig{instructions: irConfig{valgrind: "valgrind", requests: 1, warmup: 1}}, []string{row})
	header := sec[strings.Index(sec, "| protocol"):]
	if h, r := cols(header), cols(row); h != r {
		t.Errorf("instructions: header has %d bars, row %d", h, r)
	}
	// (b) is vB = 1001, (c) vC = 1003, (c+p) vCP = 1002; (d) failed.
	if !strings.Contains(row, "| TCP | 1001 (501) | 1003 (503) | 1002 (502) | failed: no | 1.002 (1.004) | 1.001 (1.002) | n/a |") {
		t.Errorf("instructions row: %s", row)
	}
}

// A counted load is h2load -n for every HTTP protocol (wrk cannot count);
// a timed one keeps wrk and h2load -D.
func TestCountedLoadCommand(t *testing.T) {
	timed := loadSpec{Proto: "http", Target: "127.0.0.1:1", Conns: 4, Duration: 2 * time.Second, WorkDir: "/w"}
	if got := shellJoin(timed.command("wrk", "h2load")); got != "wrk -t1 -c4 -d2s --latency http://127.0.0.1:1/" {
		t.Errorf("timed http: %s", got)
	}
	counted := timed
	counted.Requests = 300
	if got := shellJoin(counted.command("wrk", "h2load")); got != "h2load --h1 -t1 -c4 -n 300 http://127.0.0.1:1/" {
		t.Errorf("counted http: %s", got)
	}
	grpc := loadSpec{Proto: "grpc", Target: "127.0.0.1:1", Conns: 4, Streams: 8, Duration: 2 * time.Second, WorkDir: "/w"}
	g := shellJoin(grpc.command("wrk", "h2load"))
	grpc.Requests = 300
	gc := shellJoin(grpc.command("wrk", "h2load"))
	if !strings.Contains(g, " -D 2 ") || strings.Contains(g, " -n ") {
		t.Errorf("timed grpc: %s", g)
	}
	if gc != strings.Replace(g, " -D 2 ", " -n 300 ", 1) {
		t.Errorf("counted grpc differs from timed grpc other than in its length:\n%s\n%s", gc, g)
	}
}
