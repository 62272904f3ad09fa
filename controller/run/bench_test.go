package run

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cpworkload "github.com/meshext/meshext/bench/workload" // meshext-cpbench's resource set
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/xds"
)

// BenchmarkReload measures one reload after a one-service edit, end to end:
// read and parse every file, validate, build (VIPs, hostnames, TLS), render,
// validate every message, and deliver (file drops: only changed files are
// written; ADS: SetSnapshot for the node). Half the services originate TLS
// with an inline CA. compile-ms is the part before delivery. "unchanged" is
// the cost of a file event that changed nothing (read and hash the directory).
func BenchmarkReload(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		for _, mode := range []string{XDSFile, XDSADS, "unchanged"} {
			b.Run(fmt.Sprintf("mes=%d/%s", n, mode), func(b *testing.B) { benchReload(b, n, mode) })
		}
	}
}

// BenchmarkReloadHTTP is BenchmarkReload on meshext-cpbench's workload
// (bench/cmd/meshext-cpbench generate.go): every service HTTP with TLS (an
// inline base64 CA, a server name, an exact SAN), two HostnameGenerators,
// and the Go filter on, as cpbench's `run -xds ads -plugin` renders it.
func BenchmarkReloadHTTP(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, mode := range []string{XDSFile, XDSADS} {
			b.Run(fmt.Sprintf("mes=%d/%s", n, mode), func(b *testing.B) { benchReloadWith(b, n, mode, httpWorkload) })
		}
	}
}

const benchPerFile = 100

// workload writes a benchmark's drop directory (edit 0) and rewrites the
// file of service 0 with edit > 0, a real change to that one service.
type workload struct {
	writeAll func(b *testing.B, dir string, n int, caPEM []byte)
	editOne  func(b *testing.B, dir string, n int, caPEM []byte, edit int)
	plugin   string
}

var tcpWorkload = workload{
	writeAll: func(b *testing.B, dir string, n int, caPEM []byte) { writeBenchFiles(b, dir, n, caPEM, 0) },
	editOne: func(b *testing.B, dir string, n int, caPEM []byte, edit int) {
		writeBenchFile(b, dir, 0, min(n, benchPerFile), caPEM, edit)
	},
}

var httpWorkload = workload{
	writeAll: func(b *testing.B, dir string, n int, caPEM []byte) {
		for f := 0; f*benchPerFile < n; f++ {
			writeHTTPBenchFile(b, dir, f, min(n-f*benchPerFile, benchPerFile), caPEM, 0)
		}
		gens := cpworkload.HostnameGenerators()
		dropWrite(b, dir, "00-hostnamegenerators.yaml", gens)
	},
	editOne: func(b *testing.B, dir string, n int, caPEM []byte, edit int) {
		writeHTTPBenchFile(b, dir, 0, min(n, benchPerFile), caPEM, edit)
	},
	plugin: render.PluginOn,
}

func benchReload(b *testing.B, n int, mode string) { benchReloadWith(b, n, mode, tcpWorkload) }

func benchReloadWith(b *testing.B, n int, mode string, wl workload) {
	unchanged := mode == "unchanged"
	if unchanged {
		mode = XDSFile
	}
	dir, out := b.TempDir(), b.TempDir()
	caPEM := newCAPEM(b)
	wl.writeAll(b, dir, n, caPEM)
	cfg := &Config{Dir: dir, XDS: mode, XDSDir: out, ADSListen: "unix:" + filepath.Join(b.TempDir(), "ads.sock"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Plugin: wl.plugin}
	if err := cfg.check(); err != nil {
		b.Fatal(err)
	}
	alloc, err := ipam.Open(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	p := newPipeline(cfg, alloc)
	files := &xds.FileWriter{Dir: out}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads := xds.NewServer(ctx, cfg.Logger)
	ads.UseHashes(p.validator.Hash) // as Runner does
	deliver := func(res *result) {
		if mode == XDSFile {
			if _, err := files.Write(res.file); err != nil {
				b.Fatal(err)
			}
			p.publishedFile = res.file
		} else {
			if err := ads.Update(ctx, res.ads); err != nil {
				b.Fatal(err)
			}
			p.publishedADS = res.ads
		}
	}
	res, err := p.compile(true)
	if err != nil {
		b.Fatal(err)
	}
	if got := len(res.world.Services); got != n {
		b.Fatalf("built %d services, want %d; problems: %v", got, n, res.problems)
	}
	for _, s := range res.world.Services {
		if s.Broken != "" {
			b.Fatalf("%s broken: %s", s.Name, s.Broken)
		}
	}
	deliver(res)

	if unchanged {
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := p.compile(false); err != errUnchanged {
				b.Fatalf("want errUnchanged, got %v", err)
			}
		}
		return
	}
	var compileNanos int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		wl.editOne(b, dir, n, caPEM, i+1) // edit: new endpoint port for service 0
		b.StartTimer()
		res, err := p.compile(false)
		if err != nil {
			b.Fatal(err)
		}
		compileNanos += res.duration.Nanoseconds()
		deliver(res)
	}
	b.ReportMetric(float64(compileNanos)/float64(b.N)/1e6, "compile-ms/op")
}

func writeBenchFiles(b *testing.B, dir string, n int, caPEM []byte, edit int) {
	for f := 0; f*benchPerFile < n; f++ {
		writeBenchFile(b, dir, f, min(n-f*benchPerFile, benchPerFile), caPEM, edit)
	}
	if err := os.WriteFile(filepath.Join(dir, "gen.yaml"), []byte(generatorYAML), 0o644); err != nil {
		b.Fatal(err)
	}
}

// writeBenchFile writes file f with count services; edit changes the first
// service's endpoint port so each call is a real change.
func writeBenchFile(b *testing.B, dir string, f, count int, caPEM []byte, edit int) {
	var sb strings.Builder
	for i := 0; i < count; i++ {
		k := f*benchPerFile + i
		port := 10000 + k%50000
		if i == 0 {
			port = 1000 + edit%1000
		}
		sb.WriteString("---\n")
		name := fmt.Sprintf("svc-%05d", k)
		if k%2 == 1 {
			sb.WriteString(tcpMES(name, 8000+k%1000, port))
			fmt.Fprintf(&sb, "  tls:\n    enabled: true\n    verification:\n      serverName: %s.example.test\n      caCert:\n        inlineString: |\n", name)
			for _, line := range strings.Split(strings.TrimSpace(string(caPEM)), "\n") {
				sb.WriteString("          " + line + "\n")
			}
		} else {
			sb.WriteString(tcpMES(name, 8000+k%1000, port))
		}
	}
	dropWrite(b, dir, fmt.Sprintf("mes-%04d.yaml", f), sb.String())
}

// writeHTTPBenchFile writes file f of the HTTP workload; edit changes the
// first service's endpoint port.
func writeHTTPBenchFile(b *testing.B, dir string, f, count int, caPEM []byte, edit int) {
	caB64 := base64.StdEncoding.EncodeToString(caPEM)
	var sb strings.Builder
	for i := 0; i < count; i++ {
		k := f*benchPerFile + i
		port := 10000 + k%50000
		if i == 0 {
			port = 1000 + edit%1000
		}
		sb.WriteString("---\n" + cpworkload.MES(k, port, caB64))
	}
	dropWrite(b, dir, fmt.Sprintf("mes-%06d.yaml", f), sb.String())
}
