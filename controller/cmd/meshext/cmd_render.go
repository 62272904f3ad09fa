package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/meshca"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
)

func init() {
	register(&command{name: "render", summary: "render the Envoy config of resource files once (static bootstrap + xDS files) for inspection", run: runRender})
}

func runRender(args []string) int { return renderMain(args, os.Stdout, os.Stderr) }

// renderMain is runRender with its outputs, for tests.
func renderMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output directory (required); created if missing")
	stateDir := fs.String("state-dir", "", "directory holding the VIP allocations (as `meshext run` keeps them); without it VIPs are first-fit in sorted order and nothing is written")
	cidr := fs.String("cidr", "", "VIP range (default $"+ipam.EnvCIDR+", else "+ipam.DefaultCIDR+")")
	upstreamDNS := fs.String("upstream-dns", "", "IP:PORT resolver for Envoy's DNS clusters (default: Envoy's, from resolv.conf)")
	zone := fs.String("zone", "default", "local zone name")
	maxFileSize := addMaxFileSize(fs)
	flavor := fs.String("envoy-flavor", render.FlavorStock, flavorUsage)
	plugin := fs.String("plugin", render.PluginOn, pluginUsage)
	httpProxy := fs.String("http-proxy-listen", "", httpProxyUsage)
	systemCA := fs.String("system-ca-path", "", "CA bundle for services without caCert (default $"+model.EnvSystemCAPath+", else the first OS bundle found)")
	skipDefaults := fs.String("skip-default-policies", "", skipDefaultsUsage)
	fifoDir := fs.String("access-log-fifo-dir", "", "directory of the FIFOs of 'meshext access-log-relay': MeshAccessLog Tcp backends write there (\"\" = Tcp backends left out)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext render PATH... --out DIR [--state-dir DIR] [--upstream-dns IP:PORT]

Loads the resource files under PATH, builds the model and renders Envoy's
config once, per node (one per Dataplane "<mesh>.<name>", or "default"):

  DIR/<node>/bootstrap.json   static bootstrap, everything inline (secrets too,
                              so mode 0600): envoy --mode validate -c it, or run it
  DIR/<node>/cds.json         clusters as a DiscoveryResponse (file-based xDS)
  DIR/<node>/lds.json         listeners as a DiscoveryResponse
  DIR/sds/<secret>.json       one SDS secret each (mode 0600), referenced by cds.json

The layout is meshext run's --xds-dir layout, so DIR also works with
'meshext bootstrap --xds file --xds-dir DIR --node <node>'.

Problems go to stderr as FILE:LINE: KIND MESH/NAME: FIELD.PATH: message; a
service that cannot be rendered is listed with the reason and left out.
Exit status: 0 when there are no problems, 1 when there are (files are still
written), 2 on usage or I/O errors. Flags may come before or after the paths.

Flags:`)
		fs.PrintDefaults()
	}
	paths, code := parseInterspersed(fs, args)
	if code >= 0 {
		return code
	}
	if len(paths) == 0 || *out == "" {
		fmt.Fprintln(stderr, "meshext render: at least one PATH and --out DIR are required")
		fs.Usage()
		return 2
	}
	skip, err := parseSkipDefaults(*skipDefaults)
	if err != nil {
		fmt.Fprintf(stderr, "meshext render: %v\n", err)
		return 2
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintf(stderr, "meshext render: %v\n", err)
		return 2
	}
	alloc, err := ipam.Open(*stateDir, *cidr)
	if err != nil {
		fmt.Fprintf(stderr, "meshext render: %v\n", err)
		return 2
	}
	set, loadProblems, err := resource.Load(paths, resource.Options{Zone: *zone, MaxFileSize: *maxFileSize})
	if err != nil {
		fmt.Fprintf(stderr, "meshext render: %v\n", err)
		return 2
	}
	w := model.Build(set, model.Options{Zone: *zone, IPAM: alloc, SystemCAPath: *systemCA, SkipDefaultPolicies: skip})
	idNotes := meshca.New(*stateDir).Issue(w)
	res, err := render.Render(w, render.Options{UpstreamDNS: *upstreamDNS, SecretsVia: render.SecretsFile, SecretsDir: xds.SecretDir(dir),
		Flavor: *flavor, Plugin: *plugin, HTTPProxyListen: *httpProxy, AccessLogFIFODir: absOrEmpty(*fifoDir)})
	if err != nil {
		fmt.Fprintf(stderr, "meshext render: %v\n", err)
		return 2
	}
	if err := writeRendered(dir, res, stdout); err != nil {
		fmt.Fprintf(stderr, "meshext render: %v\n", err)
		return 2
	}

	problems := append(loadProblems, w.Problems...)
	sortByFileAndLine(problems, set.Files)
	for _, p := range problems {
		fmt.Fprintln(stderr, p.Error())
	}
	failed := 0
	for _, s := range w.Services {
		if s.Broken != "" {
			failed++
			fmt.Fprintf(stderr, "not rendered: MeshExternalService %s/%s: %s\n", s.Mesh, s.Name, s.Broken)
		}
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", warn)
	}
	for _, n := range idNotes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	if len(problems) > 0 || failed > 0 {
		return 1
	}
	return 0
}

// parseInterspersed parses flags that may come before or after positional
// arguments. It returns the positionals and -1, or an exit code.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0
			}
			return nil, 2
		}
		if fs.NArg() == 0 {
			return pos, -1
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// writeRendered writes every node's files and the shared secrets, and prints
// one summary line per node. dir is meshext's only where its manifest says so
// (xds.OutDir): a non-empty directory without one is refused, a file someone
// else put where meshext would write is never replaced, and of the files a
// previous render left, only those listed and not rendered now are removed.
func writeRendered(dir string, res *render.Output, stdout io.Writer) error {
	out, err := xds.OpenOutDir(dir)
	if err != nil {
		return err
	}
	type file struct {
		data []byte
		mode os.FileMode
	}
	nodeFiles := map[string]file{}   // relative path -> content, in node directories
	secretFiles := map[string]file{} // relative path -> content, in the SDS directory
	rel := func(p string) string {
		r, _ := filepath.Rel(dir, p)
		return filepath.ToSlash(r)
	}
	secretDir := xds.SecretDir(dir)
	for _, id := range res.NodeIDs() {
		n := res.Nodes[id]
		nodeDir := rel(xds.NodeDir(dir, id))
		b, err := render.StaticBootstrap(n, render.BootstrapOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", id, err)
		}
		boot, err := render.CanonicalJSON(b)
		if err != nil {
			return err
		}
		cds, err := n.CDS()
		if err != nil {
			return err
		}
		lds, err := n.LDS()
		if err != nil {
			return err
		}
		files, err := n.SecretFiles(secretDir)
		if err != nil {
			return err
		}
		for p, b := range files {
			secretFiles[rel(p)] = file{b, 0o600}
		}
		// The static bootstrap inlines the secrets, so it is 0600 too.
		nodeFiles[nodeDir+"/bootstrap.json"] = file{boot, 0o600}
		nodeFiles[nodeDir+"/"+render.CDSFile] = file{cds, 0o644}
		nodeFiles[nodeDir+"/"+render.LDSFile] = file{lds, 0o644}
	}
	if err := out.Claim(0o755, slices.Sorted(maps.Keys(nodeFiles))...); err != nil {
		return err
	}
	if err := out.Claim(0o700, slices.Sorted(maps.Keys(secretFiles))...); err != nil {
		return err
	}
	// Secrets first (the static bootstrap and cds.json reference them), then
	// per node bootstrap, cds.json, and lds.json, whose listeners need its
	// clusters: one batch, renamed in that order after one durable sync.
	batch := out.NewBatch()
	defer batch.Abort()
	for _, p := range slices.Sorted(maps.Keys(secretFiles)) {
		if err := batch.Add(p, secretFiles[p].data, secretFiles[p].mode); err != nil {
			return err
		}
	}
	for _, id := range res.NodeIDs() {
		nodeDir := rel(xds.NodeDir(dir, id))
		for _, name := range []string{"bootstrap.json", render.CDSFile, render.LDSFile} {
			f := nodeFiles[nodeDir+"/"+name]
			if err := batch.Add(nodeDir+"/"+name, f.data, f.mode); err != nil {
				return err
			}
		}
	}
	if err := batch.Commit(nil); err != nil {
		return err
	}
	for _, id := range res.NodeIDs() {
		n := res.Nodes[id]
		version, err := n.Version()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "node %s: %d clusters, %d listeners, %d secrets, version %s -> %s\n",
			id, len(n.Clusters), len(n.Listeners), len(n.Secrets), version, out.Path(rel(xds.NodeDir(dir, id))))
	}
	var stale []string
	for _, p := range out.Files() {
		if _, ok := nodeFiles[p]; !ok {
			if _, ok := secretFiles[p]; !ok {
				stale = append(stale, p)
			}
		}
	}
	if err := out.Remove(stale...); err != nil {
		return err
	}
	return out.PruneDirs()
}

// writeFileAtomic replaces path with data: a temp file in the same directory,
// synced, then renamed, so a watching Envoy never reads half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".meshext-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// absOrEmpty makes a path absolute (Envoy resolves paths from its own
// working directory); "" stays "".
func absOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
