package run

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
	"github.com/meshext/meshext/controller/xds"
)

// pipeline turns the drop directory into per-node Envoy resources. It holds
// the last good input, per file and per resource, so bad input never takes
// working config away. Not safe for concurrent use: the loop owns it.
type pipeline struct {
	cfg  *Config
	log  *slog.Logger
	ipam *ipam.Allocator

	// inputHash is the hash of the file names and contents last compiled.
	inputHash [32]byte
	// goodFiles holds the content of every file as it last parsed cleanly.
	goodFiles map[string][]byte
	// parsed caches each file's parse by content hash: an edit re-parses one
	// file, not the directory. Parsed resources are never modified later.
	parsed map[string]parsedFile
	// goodObjects holds, by Key, every resource as it last passed validation.
	goodObjects map[string]resource.Object
	// published is what each delivery last got, per node (Sanitize falls back to it).
	publishedFile map[string]*xds.Resources
	publishedADS  map[string]*xds.Resources
	// validator skips re-validating resources whose content passed before.
	validator xds.Validator
	// claims keeps each node id and cluster name with the resource that had
	// it first, across reloads (see model.Options.Claims).
	claims names.Claims
}

type parsedFile struct {
	sum  [32]byte
	objs []resource.Object
	errs []*resource.FieldError
}

// parse returns the resources of one file, from the cache when its content is unchanged.
func (p *pipeline) parse(file string, data []byte) ([]resource.Object, []*resource.FieldError) {
	sum := sha256.Sum256(data)
	if c, ok := p.parsed[file]; ok && c.sum == sum {
		return c.objs, c.errs
	}
	objs, errs := resource.ParseBytes(file, data)
	p.parsed[file] = parsedFile{sum: sum, objs: objs, errs: errs}
	return objs, errs
}

// result is one compile of the drop directory.
type result struct {
	world    *model.World
	set      *resource.Set // what was built (with last-good substitutions)
	problems []*resource.FieldError
	// notes are render warnings and resource-level substitutions and drops.
	notes []string
	// file and ads are the per-node resources for each delivery (nil when unused).
	file, ads map[string]*xds.Resources
	// records are hostname -> VIP for the DNS server.
	records map[string]netip.Addr
	// fifos are the access-log relay FIFOs the rendered nodes write to.
	fifos    []string
	duration time.Duration
}

func newPipeline(cfg *Config, alloc *ipam.Allocator) *pipeline {
	return &pipeline{
		cfg: cfg, log: cfg.Logger, ipam: alloc,
		goodFiles:     map[string][]byte{},
		parsed:        map[string]parsedFile{},
		goodObjects:   map[string]resource.Object{},
		publishedFile: map[string]*xds.Resources{},
		publishedADS:  map[string]*xds.Resources{},
	}
}

// errUnchanged says the input is byte-for-byte what was last compiled.
var errUnchanged = errors.New("input unchanged")

// readInput lists and reads the drop directory.
func readInput(dir string) ([]string, map[string][]byte, [32]byte, error) {
	files, err := resource.ExpandPaths([]string{dir})
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	data := make(map[string][]byte, len(files))
	h := sha256.New()
	var kept []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed between listing and reading; the next event reloads
		}
		if err != nil {
			return nil, nil, [32]byte{}, err
		}
		data[f] = b
		kept = append(kept, f)
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return kept, data, sum, nil
}

// compile reads the drop directory and, when it changed (or force), builds
// and renders it. errUnchanged means there is nothing to do.
func (p *pipeline) compile(force bool) (*result, error) {
	start := time.Now()
	files, data, sum, err := readInput(p.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.cfg.Dir, err)
	}
	if !force && sum == p.inputHash {
		return nil, errUnchanged
	}
	res := &result{}
	set := &resource.Set{}
	for _, f := range files {
		objs, errs := p.parse(f, data[f])
		if len(errs) > 0 {
			res.problems = append(res.problems, errs...)
			if good, ok := p.goodFiles[f]; ok {
				// A torn or broken file keeps its last good content whole.
				objs, _ = resource.ParseBytes(f, good)
				res.notes = append(res.notes, fmt.Sprintf("%s: has errors; serving its last good version", f))
			}
		} else {
			p.goodFiles[f] = data[f]
		}
		set.Files = append(set.Files, f)
		for _, o := range objs {
			if fe := set.Add(o); fe != nil {
				res.problems = append(res.problems, fe)
			}
		}
	}
	for f := range p.parsed {
		if _, ok := data[f]; !ok {
			delete(p.goodFiles, f) // deleted files are really gone
			delete(p.parsed, f)
		}
	}
	set.ComputeLabels(resource.Options{Zone: p.cfg.Zone})

	// Per resource: one that fails validation keeps its last good version.
	valid, vproblems := validate.WithOptions(set, validate.Options{Zone: p.cfg.Zone})
	res.problems = append(res.problems, vproblems...)
	validKeys := map[string]bool{}
	for _, o := range valid.Objects() {
		validKeys[o.GetMeta().Key()] = true
	}
	built := &resource.Set{Files: set.Files}
	nextGood := map[string]resource.Object{}
	for _, o := range set.Objects() {
		key := o.GetMeta().Key()
		if !validKeys[key] {
			if old, ok := p.goodObjects[key]; ok {
				o = old
				res.notes = append(res.notes, fmt.Sprintf("%s: invalid; serving its last good version", key))
			} else {
				continue
			}
		}
		if built.Add(o) == nil {
			nextGood[key] = o
		}
	}
	p.goodObjects = nextGood

	w := model.Build(built, model.Options{Zone: p.cfg.Zone, IPAM: p.ipam, SystemCAPath: p.cfg.SystemCAPath, Claims: &p.claims,
		SkipDefaultPolicies: p.cfg.SkipDefaultPolicies})
	res.problems = dedupe(append(res.problems, w.Problems...))
	res.world, res.set = w, built

	if p.cfg.fileDelivery() {
		out, err := render.Render(w, p.renderOptions(render.SecretsFile))
		if err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		res.notes = append(res.notes, out.Warnings...)
		res.fifos = append(res.fifos, accessLogFIFOs(out)...)
		res.file = p.sanitize(out, p.publishedFile, &res.notes)
	}
	if p.cfg.adsDelivery() {
		out, err := render.Render(w, p.renderOptions(render.SecretsADS))
		if err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		if res.file == nil {
			res.notes = append(res.notes, out.Warnings...)
		}
		res.fifos = append(res.fifos, accessLogFIFOs(out)...)
		res.ads = p.sanitize(out, p.publishedADS, &res.notes)
	}
	res.records = map[string]netip.Addr{}
	for _, s := range w.Services {
		if !s.VIP.IsValid() {
			continue
		}
		for _, h := range s.Hostnames {
			res.records[h] = s.VIP
		}
	}
	p.inputHash = sum
	res.duration = time.Since(start)
	return res, nil
}

func (p *pipeline) renderOptions(secretsVia string) render.Options {
	o := render.Options{UpstreamDNS: p.cfg.UpstreamDNS, SecretsVia: secretsVia,
		Flavor: p.cfg.EnvoyFlavor, Plugin: p.cfg.Plugin, HTTPProxyListen: p.cfg.HTTPProxyListen,
		AccessLogFIFODir: p.cfg.AccessLogFIFODir}
	if secretsVia == render.SecretsFile {
		o.SecretsDir = xds.SecretDir(p.cfg.XDSDir)
	}
	return o
}

// sanitize validates every rendered message (inner Anys included); a bad
// one falls back to what that node was last sent, or is dropped.
func (p *pipeline) sanitize(out *render.Output, prev map[string]*xds.Resources, notes *[]string) map[string]*xds.Resources {
	nodes := make(map[string]*xds.Resources, len(out.Nodes))
	for id, n := range out.Nodes {
		clean, errs := p.validator.Sanitize(prev[id], &xds.Resources{Clusters: n.Clusters, Listeners: n.Listeners, Secrets: n.Secrets})
		for _, e := range errs {
			*notes = append(*notes, fmt.Sprintf("node %s: %v", id, e))
		}
		nodes[id] = clean
	}
	return nodes
}

// dedupe drops repeated problems (validation runs before and inside Build),
// keeping file and line order.
func dedupe(in []*resource.FieldError) []*resource.FieldError {
	seen := map[string]bool{}
	out := in[:0:0]
	for _, e := range in {
		k := e.Error()
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out
}

// accessLogFIFOs lists the relay FIFOs of out's nodes.
func accessLogFIFOs(out *render.Output) []string {
	var fifos []string
	for _, id := range out.NodeIDs() {
		if f := out.Nodes[id].AccessLogFIFO; f != "" {
			fifos = append(fifos, f)
		}
	}
	return fifos
}
