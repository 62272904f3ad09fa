package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
	"github.com/meshext/meshext/e2e/envoyproc"
)

// pipeline is the controller's work for one config change, as meshext run
// does it: load → build → render → write files.
type pipeline struct {
	resDir, xdsDir string
	writer         *xds.FileWriter
}

type timings struct {
	load, build, render, write time.Duration
	// CPU time of the whole process (every core, GC included) per stage:
	// on a shared 2-core VM wall time moves with the neighbours' load.
	loadCPU, buildCPU, renderCPU, writeCPU time.Duration
	out                                    *render.Output
	problems, broken                       int
}

func newPipeline(dir string) *pipeline {
	x := abs(filepath.Join(dir, "xds"))
	return &pipeline{resDir: filepath.Join(dir, "resources"), xdsDir: x, writer: &xds.FileWriter{Dir: x, Format: dropFormat}}
}

func (p *pipeline) run() (timings, error) {
	var t timings
	t0, c0 := time.Now(), cpuTime()
	set, lerrs, err := resource.Load([]string{p.resDir}, resource.Options{Zone: "default"})
	if err != nil {
		return t, err
	}
	t.load, t.loadCPU = time.Since(t0), cpuTime()-c0
	t0, c0 = time.Now(), cpuTime()
	w := model.Build(set, model.Options{Zone: "default"})
	t.build, t.buildCPU = time.Since(t0), cpuTime()-c0
	t.problems = len(lerrs) + len(w.Problems)
	t0, c0 = time.Now(), cpuTime()
	out, err := render.Render(w, render.Options{SecretsVia: render.SecretsFile, SecretsDir: xds.SecretDir(p.xdsDir), FileFormat: dropFormat})
	if err != nil {
		return t, err
	}
	t.render, t.renderCPU = time.Since(t0), cpuTime()-c0
	for _, s := range w.Services {
		if s.Broken != "" {
			t.broken++
		}
	}
	nodes := map[string]*xds.Resources{}
	for id, n := range out.Nodes {
		nodes[id] = &xds.Resources{Clusters: n.Clusters, Listeners: n.Listeners, Secrets: n.Secrets}
	}
	t0, c0 = time.Now(), cpuTime()
	if _, err := p.writer.Write(nodes); err != nil {
		return t, err
	}
	t.write, t.writeCPU = time.Since(t0), cpuTime()-c0
	t.out = out
	return t, nil
}

func stages(n int, dir string) (*Result, error) {
	r, _, _, err := firstRun(n, dir)
	return r, err
}

func firstRun(n int, dir string) (*Result, *pipeline, timings, error) {
	p := newPipeline(dir)
	files, err := generate(p.resDir, n)
	if err != nil {
		return nil, nil, timings{}, err
	}
	t, err := p.run()
	if err != nil {
		return nil, nil, t, err
	}
	r := &Result{N: n, Files: files, DropRSSMB: maxRSSMB(), LoadMS: ms(t.load), BuildMS: ms(t.build), RenderMS: ms(t.render), WriteMS: ms(t.write),
		TotalMS: ms(t.load + t.build + t.render + t.write), Problems: t.problems, Broken: t.broken,
		LoadCPUMS: ms(t.loadCPU), BuildCPUMS: ms(t.buildCPU), RenderCPUMS: ms(t.renderCPU), WriteCPUMS: ms(t.writeCPU)}
	for _, node := range t.out.Nodes {
		r.Clusters += len(node.Clusters)
		r.Listeners += len(node.Listeners)
		r.Secrets += len(node.Secrets)
	}
	r.CDSBytes = fileSize(dropFormat.CDSPath(p.xdsDir, render.DefaultNodeID))
	r.LDSBytes = fileSize(dropFormat.LDSPath(p.xdsDir, render.DefaultNodeID))
	r.HeapLiveMB, r.TotalAllocMB = heapMB()
	// The same config again: what meshext run pays on a no-op change.
	t2, err := p.run()
	if err != nil {
		return r, p, t, err
	}
	r.RewriteMS = ms(t2.write)
	if r.Problems > 0 || r.Broken > 0 {
		return r, p, t, fmt.Errorf("generated config has %d problems and %d broken services", r.Problems, r.Broken)
	}
	return r, p, t, nil
}

// cpuTime is the CPU time this process has used (user and system, every thread).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fileVersion is version_info of a DiscoveryResponse file.
func fileVersion(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(path, xds.FormatProto.Ext()) {
		var dr discoveryv3.DiscoveryResponse
		if err := proto.Unmarshal(data, &dr); err != nil {
			return "", err
		}
		return dr.VersionInfo, nil
	}
	var dr struct {
		VersionInfo string `json:"versionInfo"`
	}
	if err := json.Unmarshal(data, &dr); err != nil {
		return "", err
	}
	return dr.VersionInfo, nil
}

// waitVersion polls Envoy's cds version_text (bounded) until it is want.
func waitVersion(e *envoyproc.Proc, want string, limit time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for time.Since(t0) < limit {
		if strings.Trim(e.StatValue("cluster_manager.cds.version_text"), `"`) == want {
			return time.Since(t0), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("Envoy did not report cds version %s within %s (rejected updates: %s)", want, limit,
		e.StatValue("cluster_manager.cds.update_rejected"))
}

func apply(n int, dir, envoyBin string, changes int) (*Result, error) {
	r, p, _, err := firstRun(n, dir)
	if err != nil {
		return r, err
	}
	nodeDir := xds.NodeDir(p.xdsDir, render.DefaultNodeID)
	admin, err := envoyproc.FreePort()
	if err != nil {
		return r, err
	}
	b, err := render.Bootstrap(render.BootstrapOptions{XDS: render.XDSFile, XDSDir: nodeDir, AdminPort: uint32(admin), FileFormat: dropFormat})
	if err != nil {
		return r, err
	}
	bj, err := protojson.Marshal(b)
	if err != nil {
		return r, err
	}
	bootPath := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(bootPath, bj, 0o644); err != nil {
		return r, err
	}
	want, err := fileVersion(dropFormat.CDSPath(p.xdsDir, render.DefaultNodeID))
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	// At 10k services Envoy is ready only after its first CDS from the
	// drop (about 20 s on a 2-core VM).
	eo := envoyproc.Pinned(envoyBin, bootPath, dir, "cp-envoy", nil)
	eo.ReadyTimeout = 180 * time.Second
	e, err := envoyproc.Start(eo)
	if err != nil {
		return r, err
	}
	defer e.Stop()
	if _, err := waitVersion(e, want, 120*time.Second); err != nil {
		return r, err
	}
	r.EnvoyInitialMS = ms(time.Since(t0))
	r.EnvoyRSSMB = envoyproc.RSSMB(e.Pid())
	r.EnvoyInotify = envoyproc.InotifyInstances(e.Pid())
	for k := 0; k < changes; k++ {
		i := (k * 7919) % n
		t0 := time.Now()
		if _, err := editOne(p.resDir, i, 60000+k); err != nil {
			return r, err
		}
		if _, err := p.run(); err != nil {
			return r, err
		}
		pipe := time.Since(t0)
		want, err := fileVersion(dropFormat.CDSPath(p.xdsDir, render.DefaultNodeID))
		if err != nil {
			return r, err
		}
		wait, err := waitVersion(e, want, 60*time.Second)
		if err != nil {
			return r, err
		}
		r.ChangePipeMS = append(r.ChangePipeMS, ms(pipe))
		r.ChangeApplyMS = append(r.ChangeApplyMS, ms(wait))
		r.ChangeTotalMS = append(r.ChangeTotalMS, ms(time.Since(t0)))
	}
	r.EnvoyRejected = rejected(e)
	return r, nil
}
