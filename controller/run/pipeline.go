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

	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/inputfile"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/meshca"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/parallel"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/source"
	"github.com/meshext/meshext/controller/validate"
	"github.com/meshext/meshext/controller/xds"
)

// pipeline turns the drop directory into per-node Envoy resources. It holds
// the last good version of every resource, so bad input never takes working
// config away. Not safe for concurrent use: the loop owns it.
type pipeline struct {
	cfg  *Config
	log  *slog.Logger
	ipam ipam.Assigner

	// inputHash is the hash of the file names and contents last compiled.
	inputHash [32]byte
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
	// fileMemo and adsMemo carry each delivery's unchanged services'
	// messages from one render to the next (render.Memo).
	fileMemo, adsMemo render.Memo
	// validations and buildValidations remember resources' violations by
	// identity from one reload to the next (validate.Memo): this
	// pipeline's own check, and model.Build's.
	validations, buildValidations validate.Memo
	// hostnames remembers rendered hostnames by service identity (hostname.Memo).
	hostnames hostname.Memo
	// derived remembers what model.Build derives from each service by its
	// identity (model.Memo).
	derived model.Memo
	// claims keeps each node id and cluster name with the resource that had
	// it first, across reloads (see model.Options.Claims).
	claims names.Claims
	// read is readInput, or reads cfg.Source; tests replace it to stand for
	// a stuck file system.
	read func(dir string, maxFileSize int64) (*input, error)
	// parseDoc reads one document: resource.ParseBytes, or cfg.Source's.
	parseDoc func(name string, data []byte) ([]resource.Object, []*resource.FieldError)
	// meshCA issues the mesh CAs' identities and keeps them across reloads.
	meshCA *meshca.Authority
}

type parsedFile struct {
	sum  [32]byte
	objs []resource.Object
	errs []*resource.FieldError
}

// parseChanged parses, on every core, each read file whose content is not
// in the cache (a cold start parses them all): afterwards p.parsed holds
// every read file's current parse.
func (p *pipeline) parseChanged(in *input) {
	type miss struct {
		file string
		data []byte
		sum  [32]byte
	}
	var misses []miss
	for _, f := range in.files {
		data, ok := in.data[f]
		if !ok {
			continue
		}
		sum, ok := in.sums[f]
		if !ok {
			sum = sha256.Sum256(data)
		}
		if c, ok := p.parsed[f]; ok && c.sum == sum {
			continue
		}
		misses = append(misses, miss{f, data, sum})
	}
	done := make([]parsedFile, len(misses))
	parallel.ForEach(len(misses), func(i int) {
		objs, errs := p.parseDoc(misses[i].file, misses[i].data)
		done[i] = parsedFile{sum: misses[i].sum, objs: objs, errs: errs}
	})
	for i, m := range misses {
		p.parsed[m.file] = done[i]
	}
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

func newPipeline(cfg *Config, alloc ipam.Assigner) *pipeline {
	p := &pipeline{
		cfg: cfg, log: cfg.Logger, ipam: alloc,
		parsed:        map[string]parsedFile{},
		goodObjects:   map[string]resource.Object{},
		publishedFile: map[string]*xds.Resources{},
		publishedADS:  map[string]*xds.Resources{},
		read:          readInput,
		parseDoc:      resource.ParseBytes,
		meshCA:        meshca.New(cfg.StateDir),
	}
	if src := cfg.Source; src != nil {
		p.read, p.parseDoc = func(string, int64) (*input, error) { return readSource(src) }, src.Parse
	}
	return p
}

// readSource is one reading of a source other than the drop directory.
func readSource(src source.Source) (*input, error) {
	in, err := src.Read()
	if err != nil {
		return nil, err
	}
	return &input{files: in.Names, data: in.Data, problems: in.Problems, sum: in.Sum}, nil
}

// errUnchanged says the input is byte-for-byte what was last compiled.
var errUnchanged = errors.New("input unchanged")

// sourceError says the drop directory itself could not be listed.
type sourceError struct {
	dir string
	err error
}

func (e *sourceError) Error() string { return fmt.Sprintf("read %s: %v", e.dir, e.err) }
func (e *sourceError) Unwrap() error { return e.err }

// input is one listing and read of the drop directory.
type input struct {
	// files lists every resource file found, in order, read or not.
	files []string
	// data holds the content of each file that was read.
	data map[string][]byte
	// problems says why each other file was not read (not a regular file,
	// over the size limit, unreadable).
	problems []*resource.FieldError
	// sums holds each read file's content hash, when the reader took it
	// (readInput); parseChanged hashes the others.
	sums map[string][32]byte
	// sum hashes names, contents and read errors: any change to them changes it.
	sum [32]byte
}

// readInput lists and reads the drop directory. Every read is bounded and
// non-blocking (see inputfile.Read); a file that cannot be read is reported
// and the others are read. Files are read and hashed on every core, each
// hashed once: parseChanged takes the same per-file sums.
func readInput(dir string, maxFileSize int64) (*input, error) {
	files, err := resource.ExpandPaths([]string{dir})
	if err != nil {
		return nil, err
	}
	type read struct {
		data []byte
		sum  [32]byte
		err  error
	}
	reads := make([]read, len(files))
	parallel.ForEach(len(files), func(i int) {
		r := &reads[i]
		if r.data, r.err = inputfile.Read(files[i], maxFileSize); r.err == nil {
			r.sum = sha256.Sum256(r.data)
		}
	})
	in := &input{data: make(map[string][]byte, len(files)), sums: make(map[string][32]byte, len(files))}
	h := sha256.New()
	for i, f := range files {
		r := &reads[i]
		if errors.Is(r.err, os.ErrNotExist) {
			continue // removed between listing and reading; the next event reloads
		}
		in.files = append(in.files, f)
		if r.err != nil {
			fe := resource.ReadProblem(f, r.err)
			in.problems = append(in.problems, fe)
			fmt.Fprintf(h, "%s\x00!%s\x00", f, fe.Message)
			continue
		}
		in.data[f], in.sums[f] = r.data, r.sum
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(r.data))
		h.Write(r.sum[:])
	}
	copy(in.sum[:], h.Sum(nil))
	return in, nil
}

// compile reads the drop directory and, when it changed (or force), builds
// and renders it. errUnchanged means there is nothing to do.
func (p *pipeline) compile(force bool) (*result, error) {
	start := time.Now()
	in, err := p.read(p.cfg.Dir, p.cfg.MaxFileSize)
	if err != nil {
		return nil, &sourceError{dir: p.cfg.sourceName(), err: err}
	}
	if !force && in.sum == p.inputHash {
		return nil, errUnchanged
	}
	res := &result{problems: append([]*resource.FieldError{}, in.problems...)}
	p.parseChanged(in)
	set := &resource.Set{}
	var objs []resource.Object // every file's resources, in file order
	for _, f := range in.files {
		var fobjs []resource.Object
		_, read := in.data[f]
		whole := !read // reported by readInput
		if read {
			c := p.parsed[f] // filled by parseChanged
			fobjs = c.objs
			res.problems = append(res.problems, c.errs...)
			whole = wholeFile(fobjs, c.errs)
		}
		// Errors that are each a resource's own leave the file's other
		// resources current (a resource in error keeps its last good
		// version, below). A file that cannot be read, or is torn (a file
		// cut mid-write stops the YAML reader), says nothing sure about what
		// it holds: every resource it was serving keeps its last good version.
		if whole {
			if served := p.servedFrom(f); len(served) > 0 {
				fobjs = served
				why := "has errors"
				if !read {
					why = "cannot be read"
				}
				res.notes = append(res.notes, fmt.Sprintf("%s: %s; serving its last good version", f, why))
			}
		}
		set.Files = append(set.Files, f)
		objs = append(objs, fobjs...)
	}
	owner, incumbent := p.owners(objs)
	for _, o := range objs {
		m := o.GetMeta()
		if own := owner[m.Key()]; own != m {
			res.problems = append(res.problems, duplicate(m, own, incumbent[m.Key()]))
			continue
		}
		if fe := set.Add(o); fe != nil {
			res.problems = append(res.problems, fe)
		}
	}
	listed := make(map[string]bool, len(in.files))
	for _, f := range in.files {
		listed[f] = true
	}
	for f := range p.parsed {
		if !listed[f] {
			delete(p.parsed, f)
		}
	}
	set.ComputeLabels(resource.Options{Zone: p.cfg.Zone})

	// Per resource: one that fails validation keeps its last good version.
	valid, vproblems := p.validations.WithOptions(set, validate.Options{Zone: p.cfg.Zone})
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
		SkipDefaultPolicies: p.cfg.SkipDefaultPolicies, Validations: &p.buildValidations,
		Hostnames: &p.hostnames, Memo: &p.derived})
	res.notes = append(res.notes, p.meshCA.Issue(w)...)
	res.problems = dedupe(append(res.problems, w.Problems...))
	res.world, res.set = w, built

	p.validator.Round()
	if p.cfg.fileDelivery() {
		out, err := p.fileMemo.Render(w, p.renderOptions(render.SecretsFile))
		if err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		res.notes = append(res.notes, out.Warnings...)
		res.fifos = append(res.fifos, accessLogFIFOs(out)...)
		res.file = p.sanitize(out, p.publishedFile, &res.notes)
	}
	if p.cfg.adsDelivery() {
		out, err := p.adsMemo.Render(w, p.renderOptions(render.SecretsADS))
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
	p.inputHash = in.sum
	res.duration = time.Since(start)
	return res, nil
}

// wholeFile reports whether a file's errors are about the file rather than
// about resources it holds: a YAML syntax error (a file cut mid-write stops
// the reader), or a document without a kind or name.
func wholeFile(objs []resource.Object, errs []*resource.FieldError) bool {
	if len(errs) == 0 {
		return false
	}
	keys := make(map[string]bool, len(objs))
	for _, o := range objs {
		keys[o.GetMeta().Key()] = true
	}
	for _, e := range errs {
		m := resource.Meta{Kind: e.Kind, Mesh: e.Mesh, Name: e.Name}
		if e.Kind == "" || e.Name == "" || !keys[m.Key()] {
			return true
		}
	}
	return false
}

// servedFrom returns what file f serves now (each resource as it last
// passed validation), in file order.
func (p *pipeline) servedFrom(f string) []resource.Object {
	var out []resource.Object
	for _, o := range p.goodObjects {
		if o.GetMeta().Source.File == f {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetMeta().Source.Index < out[j].GetMeta().Source.Index })
	return out
}

// owners decides who owns each kind/mesh/name: the definition already
// serving keeps it, from the file it serves from; with none serving (a fresh
// start, or the owner's file dropped it) the first in file order does, as
// `meshext validate` decides. incumbent marks the owners that were serving.
func (p *pipeline) owners(objs []resource.Object) (owner map[string]*resource.Meta, incumbent map[string]bool) {
	owner = make(map[string]*resource.Meta, len(objs))
	incumbent = map[string]bool{}
	for _, o := range objs {
		m := o.GetMeta()
		key := m.Key()
		if incumbent[key] {
			continue
		}
		if g, ok := p.goodObjects[key]; ok && g.GetMeta().Source.File == m.Source.File {
			owner[key], incumbent[key] = m, true
		} else if owner[key] == nil {
			owner[key] = m
		}
	}
	return owner, incumbent
}

// duplicate is the problem reported at a definition of a name that another
// definition owns (see owners): it names the ignored definition's file.
func duplicate(m, owner *resource.Meta, serving bool) *resource.FieldError {
	why := "the first definition in file order is used"
	if serving {
		why = "that definition is serving and keeps it"
	}
	return m.Errorf("name", "duplicate %s %s/%s: already defined at %s; %s, this one is ignored",
		m.Kind, m.Mesh, m.Name, owner.Source.Where(), why)
}

func (p *pipeline) renderOptions(secretsVia string) render.Options {
	o := render.Options{UpstreamDNS: p.cfg.UpstreamDNS, SecretsVia: secretsVia,
		Flavor: p.cfg.EnvoyFlavor, Plugin: p.cfg.Plugin, HTTPProxyListen: p.cfg.HTTPProxyListen,
		AccessLogFIFODir: p.cfg.AccessLogFIFODir}
	o.RoutesVia = render.RoutesADS
	if secretsVia == render.SecretsFile {
		o.SecretsDir = xds.SecretDir(p.cfg.XDSDir)
		o.RoutesVia, o.RoutesDir = render.RoutesFile, p.cfg.XDSDir
		o.FileFormat = p.cfg.fileFormat()
	}
	return o
}

// sanitize validates every rendered message (inner Anys included); a bad
// one falls back to what that node was last sent, or is dropped.
func (p *pipeline) sanitize(out *render.Output, prev map[string]*xds.Resources, notes *[]string) map[string]*xds.Resources {
	nodes := make(map[string]*xds.Resources, len(out.Nodes))
	for id, n := range out.Nodes {
		clean, errs := p.validator.Sanitize(prev[id], &xds.Resources{Clusters: n.Clusters, Listeners: n.Listeners, Routes: n.Routes, Secrets: n.Secrets})
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
