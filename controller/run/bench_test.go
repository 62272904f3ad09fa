package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
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

const benchPerFile = 100

func benchReload(b *testing.B, n int, mode string) {
	unchanged := mode == "unchanged"
	if unchanged {
		mode = XDSFile
	}
	dir, out := b.TempDir(), b.TempDir()
	caPEM := newCAPEM(b)
	writeBenchFiles(b, dir, n, caPEM, 0)
	cfg := &Config{Dir: dir, XDS: mode, XDSDir: out, ADSListen: "unix:" + filepath.Join(b.TempDir(), "ads.sock"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
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
		writeBenchFile(b, dir, 0, min(n, benchPerFile), caPEM, i+1) // edit: new endpoint port for service 0
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
