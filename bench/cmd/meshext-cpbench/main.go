// Command meshext-cpbench measures the control plane in-process, one N per
// process so peak memory (getrusage maxrss) belongs to that N alone:
//
//	meshext-cpbench stages -n 1000 -dir DIR
//	    generate N MES (TLS, two hostnames each) as YAML, then time
//	    load → build → render → file write; print one JSON object.
//	meshext-cpbench run -n 1000 -dir DIR -envoy ENVOY -meshext bin/meshext
//	    the same change timing through the real `meshext run` process
//	    (fsnotify + debounce + reload), resource edit → Envoy version.
//	meshext-cpbench fleet -n 100 -nodes 100 -envoys 5 -dir DIR -envoy ENVOY -meshext bin/meshext [-delta]
//	    one `meshext run --xds ads` serving M nodes over its unix socket:
//	    E real Envoys, the rest gRPC clients that ACK like Envoy; each
//	    one-MES edit timed until every node has ACKed the new CDS, and
//	    meshext run's CPU and memory.
//	meshext-cpbench static -res DIR -node default.bench -out envoy.json
//	    render one node as a fully static Envoy config (data-path variant c).
//	meshext-cpbench apply -n 1000 -dir DIR -envoy ENVOY -changes 5
//	    also start a real Envoy on the file drop, then change one MES K times
//	    and time pipeline and Envoy apply (until its cds version_text equals
//	    the file's version_info); print one JSON object.
//
// It is built separately from meshext-bench because it imports the
// controller packages (build/bench.sh reports a build failure as
// "not available").
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/meshext/meshext/controller/xds"
)

// Result is what the parent harness reads (one JSON object on stdout).
type Result struct {
	N         int     `json:"n"`
	Files     int     `json:"files"`
	LoadMS    float64 `json:"load_ms"`
	BuildMS   float64 `json:"build_ms"`
	RenderMS  float64 `json:"render_ms"`
	WriteMS   float64 `json:"write_ms"`   // first write of every file
	RewriteMS float64 `json:"rewrite_ms"` // write of an unchanged config (skipped by hash)
	TotalMS   float64 `json:"total_ms"`   // load+build+render+write
	// CPU time of the process (all cores, GC included) in each stage.
	LoadCPUMS    float64 `json:"load_cpu_ms"`
	BuildCPUMS   float64 `json:"build_cpu_ms"`
	RenderCPUMS  float64 `json:"render_cpu_ms"`
	WriteCPUMS   float64 `json:"write_cpu_ms"`
	Clusters     int     `json:"clusters"`       // all nodes
	Listeners    int     `json:"listeners"`      // all nodes
	Secrets      int     `json:"secrets"`        // all nodes
	CDSBytes     int64   `json:"cds_bytes"`      // default node
	LDSBytes     int64   `json:"lds_bytes"`      // default node
	Problems     int     `json:"problems"`       // validation / build problems (should be 0)
	Broken       int     `json:"broken"`         // services that did not render (should be 0)
	HeapLiveMB   float64 `json:"heap_live_mb"`   // live heap after render, after GC
	TotalAllocMB float64 `json:"total_alloc_mb"` // bytes allocated by the whole pipeline
	MaxRSSMB     float64 `json:"max_rss_mb"`     // getrusage peak RSS of this process
	// DropRSSMB is the peak RSS when the first drop is written (files →
	// drops), before the rewrite and anything after it.
	DropRSSMB float64 `json:"drop_rss_mb,omitempty"`

	// apply only
	EnvoyInitialMS float64   `json:"envoy_initial_ms,omitempty"` // Envoy start → first version applied
	EnvoyRSSMB     float64   `json:"envoy_rss_mb,omitempty"`     // after the initial config
	EnvoyInotify   int       `json:"envoy_inotify,omitempty"`    // inotify instances Envoy holds then
	ChangePipeMS   []float64 `json:"change_pipeline_ms,omitempty"`
	ChangeApplyMS  []float64 `json:"change_apply_ms,omitempty"` // file renamed → Envoy reports it
	ChangeTotalMS  []float64 `json:"change_total_ms,omitempty"` // resource file edited → Envoy reports it
	EnvoyRejected  string    `json:"envoy_update_rejected,omitempty"`
	// run only
	ControllerRSSMB float64 `json:"controller_rss_mb,omitempty"` // meshext run after the last change
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	if os.Args[1] == "static" {
		if err := staticConfig(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "meshext-cpbench static:", err)
			os.Exit(1)
		}
		return
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ContinueOnError)
	n := fs.Int("n", 100, "number of MeshExternalServices")
	dir := fs.String("dir", "", "work directory (created; resources/ and xds/ inside)")
	envoy := fs.String("envoy", "", "Envoy binary (apply)")
	changes := fs.Int("changes", 5, "single-MES changes to time (apply, run)")
	meshext := fs.String("meshext", "", "meshext CLI (run)")
	plugin := fs.String("plugin", "", "libmeshext.so for Envoy when meshext run renders the Go filter; \"\" = run with --plugin off (run)")
	debounce := fs.Duration("debounce", 200*time.Millisecond, "meshext run --debounce (run)")
	xdsMode := fs.String("xds", "file", "meshext run --xds: file or ads (run)")
	delta := fs.Bool("delta", false, "Envoy uses incremental (delta) ADS: meshext bootstrap --delta (run -xds ads)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to the file (stages, apply)")
	memProfile := fs.String("memprofile", "", "write a heap profile (allocations since start) of this process to the file at the end (stages, apply)")
	format := fs.String("format", "json", "file drops' encoding: json or pb, as meshext run --xds-format (stages, apply, run -xds file)")
	nodes := fs.Int("nodes", 100, "xDS nodes (Dataplanes) served (fleet)")
	envoys := fs.Int("envoys", 5, "of the nodes, real Envoy processes; the rest are gRPC clients that ACK like Envoy (fleet)")
	fs.Usage = usage
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if *dir == "" || *n < 1 {
		usage()
		os.Exit(2)
	}
	f, ferr := xds.ParseFormat(*format)
	if ferr != nil {
		fmt.Fprintln(os.Stderr, "meshext-cpbench:", ferr)
		os.Exit(2)
	}
	dropFormat = f
	var (
		res *Result
		err error
	)
	if *cpuProfile != "" {
		f, perr := os.Create(*cpuProfile)
		if perr != nil {
			fmt.Fprintln(os.Stderr, "meshext-cpbench:", perr)
			os.Exit(1)
		}
		if perr := pprof.StartCPUProfile(f); perr != nil {
			fmt.Fprintln(os.Stderr, "meshext-cpbench:", perr)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	switch os.Args[1] {
	case "stages":
		res, err = stages(*n, *dir)
	case "apply":
		if *envoy == "" || *changes < 1 {
			usage()
			os.Exit(2)
		}
		res, err = apply(*n, *dir, *envoy, *changes)
	case "fleet":
		if *envoy == "" || *meshext == "" || *changes < 1 || *nodes < 1 {
			usage()
			exit(2)
		}
		fr, err := fleet(*n, *nodes, *envoys, *dir, *envoy, *meshext, *changes, *debounce, *delta)
		if err != nil {
			fmt.Fprintln(os.Stderr, "meshext-cpbench:", err)
			exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(fr)
		return
	case "run":
		if *envoy == "" || *meshext == "" || *changes < 1 {
			usage()
			os.Exit(2)
		}
		switch *xdsMode {
		case "file":
			res, err = viaRun(*n, *dir, *envoy, *meshext, *plugin, *changes, *debounce)
		case "ads":
			res, err = viaRunADS(*n, *dir, *envoy, *meshext, *plugin, *changes, *debounce, *delta)
		default:
			usage()
			exit(2)
		}
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshext-cpbench:", err)
		exit(1)
	}
	res.MaxRSSMB = maxRSSMB()
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			fmt.Fprintln(os.Stderr, "meshext-cpbench:", err)
			exit(1)
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// dropFormat is the file drops' encoding (-format).
var dropFormat = xds.FormatJSON

// exit lets deferred work (the CPU profile) finish first.
func exit(code int) {
	pprof.StopCPUProfile()
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: meshext-cpbench stages -n N -dir DIR [-format json|pb]
       meshext-cpbench apply  -n N -dir DIR -envoy ENVOY [-changes K] [-format json|pb]
       meshext-cpbench run    -n N -dir DIR -envoy ENVOY -meshext MESHEXT [-xds file|ads [-delta]] [-format json|pb] [-plugin libmeshext.so] [-changes K] [-debounce D]
       meshext-cpbench fleet  -n N -nodes M -envoys E -dir DIR -envoy ENVOY -meshext MESHEXT [-delta] [-changes K]
       meshext-cpbench static -res DIR -node MESH.DATAPLANE -out FILE`)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func maxRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // Linux reports KiB
}

func heapMB() (live, total float64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / 1e6, float64(m.TotalAlloc) / 1e6
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
