package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The generated benchmark config must be what it claims: N valid MES, each
// rendered (no problems, nothing broken), with two hostnames each.
func TestGeneratedConfigRenders(t *testing.T) {
	dir := t.TempDir()
	r, p, tm, err := firstRun(12, dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Clusters < 12 || r.Problems != 0 || r.Broken != 0 || r.CDSBytes == 0 || r.LDSBytes == 0 {
		t.Errorf("result %+v", r)
	}
	set := 0
	for _, n := range tm.out.Nodes {
		set += len(n.Clusters)
	}
	if set != r.Clusters {
		t.Errorf("clusters %d vs %d", set, r.Clusters)
	}
	// An edit changes exactly the file holding that MES.
	path, err := editOne(p.resDir, 5, 61234)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "port: 61234") {
		t.Errorf("edit not in %s", path)
	}
	if _, err := editOne(p.resDir, 500, 1); err == nil {
		t.Error("editing a MES that does not exist succeeded")
	}
	if _, err := p.run(); err != nil {
		t.Fatal(err)
	}
}

func TestStaticConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := generate(filepath.Join(dir, "res"), 3); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "envoy.json")
	if err := staticConfig([]string{"-res", filepath.Join(dir, "res"), "-node", "default", "-out", out}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(data), "staticResources") {
		t.Errorf("static config: %v", err)
	}
	if err := staticConfig([]string{"-res", filepath.Join(dir, "res"), "-node", "nope.nope", "-out", out}); err == nil {
		t.Error("unknown node rendered without error")
	}
}
