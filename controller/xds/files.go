package xds

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/meshext/meshext/controller/inputfile"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/parallel"
)

// File layout under FileWriter.Dir:
//
//	<Dir>/<node>/cds.json   DiscoveryResponse of the node's Clusters   (0644)
//	<Dir>/<node>/lds.json   DiscoveryResponse of the node's Listeners  (0644)
//	<Dir>/<node>/rds/<route>.json  one RouteConfiguration (routes.go)
//	<Dir>/sds/<secret>.json DiscoveryResponse of one Secret (0600: keys)
//	<Dir>/.meshext-manifest.json  what meshext wrote (ManifestFile)
//
// With FileWriter.Format FormatProto every ".json" above but the manifest is
// ".pb" (binary protobuf; see Format).
//
// <node> and <secret> are names.PathElement of the node id and secret name:
// injective, so two nodes never share a directory nor two secrets a file,
// and never ".", "..", a dot-file or a path with '/'. Secrets are shared by
// all nodes (clusters, and so their SDS references, are node-independent). A
// bootstrap points cds_config/lds_config at the first two with
// watched_directory = <Dir>/<node>; each SDS config names its file with
// watched_directory = <Dir>/sds (render.Options.SecretsDir).

// secretDirName is the SDS directory; no node directory takes its name.
const secretDirName = "sds"

// nodeDirName is the directory name of a node id.
func nodeDirName(node string) string {
	e := names.PathElement(node)
	if e == secretDirName {
		// PathElement never escapes 's', so "%73ds" is no other node's name.
		return "%73ds"
	}
	return e
}

// NodeDir is the directory holding one node's files.
func NodeDir(dir, node string) string { return filepath.Join(dir, nodeDirName(node)) }

// CDSPath is the clusters file of a node (JSON; Format.CDSPath for others).
func CDSPath(dir, node string) string { return FormatJSON.CDSPath(dir, node) }

// LDSPath is the listeners file of a node (JSON; Format.LDSPath for others).
func LDSPath(dir, node string) string { return FormatJSON.LDSPath(dir, node) }

// SecretDir is the directory of the SDS files.
func SecretDir(dir string) string { return filepath.Join(dir, secretDirName) }

// SecretPath is the SDS file of one secret.
func SecretPath(dir, secret string) string { return SecretFile(SecretDir(dir), secret) }

// SecretFile is the JSON file of one secret in the SDS directory sdsDir
// (Format.SecretFile for others).
func SecretFile(sdsDir, secret string) string { return FormatJSON.SecretFile(sdsDir, secret) }

// Paths relative to the output directory, as its manifest lists them.
func (f Format) relCDS(nodeDir string) string { return nodeDir + "/cds" + f.Ext() }
func (f Format) relLDS(nodeDir string) string { return nodeDir + "/lds" + f.Ext() }
func relSecret(fileName string) string        { return secretDirName + "/" + fileName }

// File modes: Envoy only needs to read; SDS files hold private keys.
const (
	configFileMode = 0o644
	secretFileMode = 0o600
)

// FileWriter publishes resources as file-based xDS. Files are replaced
// atomically (temp file in the same directory, then one durable sync for the
// whole write and the renames, see Batch), only when
// their content changed, in an order that never lets a listener reference a
// cluster Envoy does not have yet. It writes, empties and removes only files
// its manifest lists (see OutDir): Dir must be empty or written by meshext
// before. Safe for concurrent use.
type FileWriter struct {
	Dir string
	// Format is how the files are encoded ("" is FormatJSON: every Format
	// method treats it so).
	Format Format

	mu      sync.Mutex
	out     *OutDir
	nodes   map[string]*writtenNode // by node directory name
	secrets map[string]string       // secret file name -> content hash, as on disk
	// stale are node files of another format, removed by the next Write.
	stale []string
	// trace, when set (tests), sees each file written or removed, in order.
	trace func(op, path string)
}

func (w *FileWriter) note(op, path string) {
	if w.trace != nil {
		w.trace(op, path)
	}
}

// writtenNode is what was last written for a node.
type writtenNode struct {
	id                     string // node id ("" when adopted from a previous run)
	cdsVersion, ldsVersion string
	clusters               []*clusterv3.Cluster
	routes                 map[string]string // route file name -> content hash, as on disk
	// routesGone are the route files no listener names any more, removed
	// once the listeners are on disk.
	routesGone []string
}

// Open takes over Dir (see OutDir): it refuses a non-empty directory that
// has no manifest. Write opens on first use; callers that want the error at
// start-up call Open first.
func (w *FileWriter) Open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.open()
}

func (w *FileWriter) open() error {
	if w.out != nil {
		return nil
	}
	out, err := OpenOutDir(w.Dir)
	if err != nil {
		return err
	}
	w.out = out
	w.adopt()
	return nil
}

// WriteStats says what a Write changed.
type WriteStats struct {
	FilesWritten int
	FilesRemoved int
}

// Write brings every node's files to the given resources. Nodes that were
// written before but are absent now get empty CDS and LDS (their Envoy loses
// its config, as it would over ADS). Secrets are written first (a new
// cluster's SDS file must exist), and unused ones removed last.
func (w *FileWriter) Write(nodes map[string]*Resources) (WriteStats, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var st WriteStats
	if err := w.open(); err != nil {
		return st, err
	}
	// Everything that could refuse the write is checked before any file
	// changes: bad resources, two nodes or secrets on one file, and paths
	// in Dir that meshext did not write.
	dirs := make(map[string]string, len(nodes)) // node dir -> node id
	var claim []string
	for node, res := range nodes {
		if res == nil {
			res = &Resources{}
		}
		if err := checkResources(res); err != nil {
			return st, fmt.Errorf("node %q: %w", node, err)
		}
		d := nodeDirName(node)
		if other, dup := dirs[d]; dup {
			return st, fmt.Errorf("nodes %q and %q would share directory %s", other, node, filepath.Join(w.Dir, d))
		}
		dirs[d] = node
		claim = append(claim, w.Format.relCDS(d), w.Format.relLDS(d))
		for _, rc := range res.Routes {
			claim = append(claim, relRoute(d, w.Format.fileName(rc.GetName())))
		}
	}
	secrets, err := wantedSecrets(nodes, w.Format)
	if err != nil {
		return st, err
	}
	secretFiles := make([]string, 0, len(secrets))
	for file := range secrets {
		secretFiles = append(secretFiles, relSecret(file))
	}
	if err := w.out.Claim(0o755, claim...); err != nil {
		return st, err
	}
	if err := w.out.Claim(0o700, secretFiles...); err != nil {
		return st, err
	}
	// Every file goes into one of three batches, all made durable with one
	// sync, then renamed batch after batch, each in order: secrets first (a
	// new cluster's SDS file must exist), then each node's first, second and
	// third file of its sequence (see stageNode), so a node's files keep
	// their order, as if written one by one.
	var stages [nodeSteps]*Batch
	for i := range stages {
		stages[i] = w.out.NewBatch()
	}
	defer func() {
		for _, b := range stages {
			b.Abort()
		}
	}()
	written := w.stageSecrets(secrets, stages[0])
	var errs []error
	plans := map[string]*writtenNode{}
	stage := func(d, node string, res *Resources) {
		next, err := w.stageNode(d, node, res, &stages)
		if err != nil {
			errs = append(errs, err)
			return
		}
		plans[d] = next
	}
	for d, prev := range w.nodes {
		if _, ok := dirs[d]; !ok {
			stage(d, prev.id, &Resources{})
		}
	}
	for d, node := range dirs {
		res := nodes[node]
		if res == nil {
			res = &Resources{}
		}
		stage(d, node, res)
	}
	if written.err != nil {
		errs = append(errs, written.err)
	}
	if len(errs) > 0 {
		// Nothing renamed yet: the deferred Abort leaves every file as it was.
		return st, errors.Join(errs...)
	}
	err = CommitBatches(func(i int, rel string) {
		st.FilesWritten++
		w.note("write", w.out.Path(rel))
		if i == 0 {
			if file, ok := strings.CutPrefix(rel, secretDirName+"/"); ok {
				if h, ok := written.hashes[file]; ok {
					w.secrets[file] = h
				}
			}
		}
	}, stages[:]...)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// Envoy may hold any of the files of a node not fully written:
		// rewrite both next time, ordered against every cluster it may have.
		for d, next := range plans {
			prev := w.nodes[d]
			if prev == nil {
				prev = &writtenNode{}
			}
			// Route files of either version may be on disk: all are
			// rewritten next time (unknown content), the unused removed.
			routes := map[string]string{}
			for f := range prev.routes {
				routes[f] = ""
			}
			for f := range next.routes {
				routes[f] = ""
			}
			w.nodes[d] = &writtenNode{id: next.id, cdsVersion: "?", ldsVersion: "?", clusters: unionClusters(next.clusters, prev.clusters), routes: routes}
		}
		// Some node may still use an old secret: keep them all.
		return st, errors.Join(errs...)
	}
	maps.Copy(w.nodes, plans)
	var gone []string
	for _, d := range slices.Sorted(maps.Keys(plans)) {
		for _, file := range plans[d].routesGone {
			gone = append(gone, relRoute(d, file))
		}
		plans[d].routesGone = nil
	}
	for file := range w.secrets {
		if _, ok := secrets[file]; !ok {
			gone = append(gone, relSecret(file))
		}
	}
	gone = append(gone, w.stale...)
	w.stale = nil
	slices.Sort(gone)
	// One manifest save for all of them.
	err = w.out.Remove(gone...)
	for _, rel := range gone {
		if w.out.Owns(rel) {
			continue // not removed: tried again next time
		}
		if d, file, ok := isRouteFile(rel); ok {
			if n := w.nodes[d]; n != nil {
				delete(n.routes, file)
			}
		} else {
			delete(w.secrets, strings.TrimPrefix(rel, secretDirName+"/"))
		}
		st.FilesRemoved++
		w.note("remove", w.out.Path(rel))
	}
	return st, err
}

// adopt takes over what a previous process listed in the manifest: its
// nodes (emptied on the first Write unless still rendered) and its secrets
// (removed unless still used).
func (w *FileWriter) adopt() {
	w.nodes = map[string]*writtenNode{}
	w.secrets = map[string]string{}
	for _, rel := range w.out.Files() {
		dir, file := path.Split(rel)
		dir = strings.TrimSuffix(dir, "/")
		f := w.Format
		switch {
		case dir == secretDirName && (strings.HasSuffix(file, ".json") || strings.HasSuffix(file, ".pb")):
			// Unknown content: rewritten if still used. A file of the
			// other format is never used, so it is removed.
			w.secrets[file] = ""
		case dir != "" && !strings.Contains(dir, "/") && file == path.Base(f.relCDS(dir)) && w.out.Owns(f.relLDS(dir)):
			// Unknown versions: the first Write rewrites both files, ordered
			// against the clusters Envoy may hold from the old file.
			w.nodes[dir] = &writtenNode{cdsVersion: "?", ldsVersion: "?", clusters: readClusters(w.out.Path(rel), f), routes: map[string]string{}}
		case dir != "" && !strings.Contains(dir, "/") && (file == "cds.json" || file == "lds.json" || file == "cds.pb" || file == "lds.pb"):
			// A node file of the other format (--xds-format changed): its
			// Envoy is told by a new bootstrap where to read; removed.
			w.stale = append(w.stale, rel)
		default:
			// Unknown content: rewritten if still used, else removed.
			if d, f, ok := isRouteFile(rel); ok && w.nodes[d] != nil {
				w.nodes[d].routes[f] = ""
			}
		}
	}
}

// maxOwnFile bounds reading back a file meshext wrote (a cds.json of 10k
// services is some tens of MB).
const maxOwnFile = 1 << 30

// readClusters reads a clusters file written before; nil when it cannot.
func readClusters(path string, f Format) []*clusterv3.Cluster {
	// A special file planted in the output directory must not block start-up.
	b, err := inputfile.Read(path, maxOwnFile)
	if err != nil {
		return nil
	}
	var resp discoveryv3.DiscoveryResponse
	if err := readDiscovery(b, f, &resp); err != nil {
		return nil
	}
	var out []*clusterv3.Cluster
	for _, a := range resp.Resources {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil
		}
		out = append(out, c)
	}
	return out
}

// wantedSecret is one secret in use, by file name.
type wantedSecret struct {
	secret *tlsv3.Secret
	hash   string
}

// wantedSecrets collects every secret in use by file name. One name must
// mean one content on all nodes, and one file one name.
func wantedSecrets(nodes map[string]*Resources, f Format) (map[string]wantedSecret, error) {
	want := map[string]wantedSecret{}
	for node, res := range nodes {
		if res == nil {
			continue
		}
		for _, s := range res.Secrets {
			h, err := hashOf(s)
			if err != nil {
				return nil, err
			}
			file := f.fileName(s.GetName())
			if old, ok := want[file]; ok {
				switch {
				case old.secret.GetName() != s.GetName():
					return nil, fmt.Errorf("secrets %q and %q would share file %s", old.secret.GetName(), s.GetName(), file)
				case old.hash != h:
					return nil, fmt.Errorf("node %q: secret %q differs from another node's secret of that name", node, s.GetName())
				}
				continue
			}
			want[file] = wantedSecret{secret: s, hash: h}
		}
	}
	return want, nil
}

// stagedSecrets are the secret files added to a batch, by file name, with
// the content hash each will have once renamed.
type stagedSecrets struct {
	hashes map[string]string
	err    error
}

// stageSecrets adds the secrets that are new or changed to b.
func (w *FileWriter) stageSecrets(want map[string]wantedSecret, b *Batch) stagedSecrets {
	out := stagedSecrets{hashes: map[string]string{}}
	for _, file := range slices.Sorted(maps.Keys(want)) {
		ws := want[file]
		if w.secrets[file] == ws.hash {
			continue
		}
		err := b.AddFunc(relSecret(file), secretFileMode, func(f io.Writer) error {
			return writeDiscovery(f, w.Format, ws.hash[:16], resourcev3.SecretType, []proto.Message{ws.secret}, nil)
		})
		if err != nil {
			out.err = fmt.Errorf("secret %q: %w", ws.secret.GetName(), err)
			return out
		}
		out.hashes[file] = ws.hash
	}
	return out
}

// nodeSteps is the most files one node's update writes in sequence (make
// before break: clusters old and new, listeners, new clusters).
const nodeSteps = 3

// stageNode adds the files of one node directory for res to the batches,
// its i-th file in sequence to stages[i]; node is its id, for messages (""
// for a node adopted from a previous run). It returns what the node will
// hold once the batches are committed.
func (w *FileWriter) stageNode(dir, node string, res *Resources, stages *[nodeSteps]*Batch) (*writtenNode, error) {
	prev := w.nodes[dir]
	if prev == nil {
		prev = &writtenNode{}
	}
	next := &writtenNode{id: node, clusters: res.Clusters, routes: maps.Clone(prev.routes)}
	if next.routes == nil {
		next.routes = map[string]string{}
	}
	if node == "" {
		node = dir
	}
	routes, err := wantedRoutes(res, w.Format)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", node, err)
	}
	// Both formats write from the encodings the versions are hashed from.
	var cdsWires, ldsWires [][]byte
	if next.cdsVersion, cdsWires, err = encodeList(res.Clusters); err != nil {
		return nil, err
	}
	if next.ldsVersion, ldsWires, err = encodeList(res.Listeners); err != nil {
		return nil, err
	}

	cdsChanged := next.cdsVersion != prev.cdsVersion
	ldsChanged := next.ldsVersion != prev.ldsVersion
	// Route tables go with the listeners: those a listener names are
	// written before it (in its step), those none names any more removed
	// after every batch is renamed.
	rdsChanged := routesChanged(prev.routes, routes)
	added, removed := diffNames(prev.clusters, res.Clusters)
	step := 0
	addAt := func(i int, rel, version, typeURL string, items []proto.Message, wires [][]byte) error {
		err := stages[i].AddFunc(rel, configFileMode, func(f io.Writer) error {
			return writeDiscovery(f, w.Format, version, typeURL, items, wires)
		})
		if err != nil {
			return fmt.Errorf("node %q: %w", node, err)
		}
		return nil
	}
	// wires are the clusters' encodings, or nil (marshalled as written).
	cds := func(version string, clusters []*clusterv3.Cluster, wires [][]byte) error {
		step++
		return addAt(step-1, w.Format.relCDS(dir), version, resourcev3.ClusterType, toMessages(clusters), wires)
	}
	// lds stages the listeners' side in one step: new and changed route
	// tables, then lds.json when it changed.
	lds := func() error {
		step++
		for _, file := range slices.Sorted(maps.Keys(routes)) {
			wr := routes[file]
			if h, ok := next.routes[file]; ok && h == wr.hash {
				continue
			}
			if err := addAt(step-1, relRoute(dir, file), wr.hash[:16], resourcev3.RouteType, []proto.Message{wr.route}, nil); err != nil {
				return err
			}
			next.routes[file] = wr.hash
		}
		for _, file := range slices.Sorted(maps.Keys(next.routes)) {
			if _, ok := routes[file]; !ok {
				next.routesGone = append(next.routesGone, file)
			}
		}
		if !ldsChanged {
			return nil
		}
		return addAt(step-1, w.Format.relLDS(dir), next.ldsVersion, resourcev3.ListenerType, toMessages(res.Listeners), ldsWires)
	}

	switch {
	case !ldsChanged && !rdsChanged:
		if cdsChanged {
			err = cds(next.cdsVersion, res.Clusters, cdsWires)
		}
	case removed && added:
		// Make before break: clusters old and new, then the listeners, then
		// only the new clusters.
		union := unionClusters(res.Clusters, prev.clusters)
		uv, verr := versionOf(union)
		if verr != nil {
			return nil, verr
		}
		err = errors.Join(cds(uv, union, nil), lds(), cds(next.cdsVersion, res.Clusters, cdsWires))
	case removed:
		// Listeners stop referencing the clusters before they go.
		err = errors.Join(lds(), cds(next.cdsVersion, res.Clusters, cdsWires))
	default:
		// Clusters first, so new listeners find them.
		if cdsChanged {
			err = cds(next.cdsVersion, res.Clusters, cdsWires)
		}
		err = errors.Join(err, lds())
	}
	return next, err
}

func diffNames(old, cur []*clusterv3.Cluster) (added, removed bool) {
	o := make(map[string]bool, len(old))
	for _, c := range old {
		o[c.GetName()] = true
	}
	n := make(map[string]bool, len(cur))
	for _, c := range cur {
		n[c.GetName()] = true
		if !o[c.GetName()] {
			added = true
		}
	}
	for name := range o {
		if !n[name] {
			removed = true
			break
		}
	}
	return added, removed
}

// unionClusters is cur plus those of old whose names cur lacks.
func unionClusters(cur, old []*clusterv3.Cluster) []*clusterv3.Cluster {
	have := make(map[string]bool, len(cur))
	out := append([]*clusterv3.Cluster(nil), cur...)
	for _, c := range cur {
		have[c.GetName()] = true
	}
	for _, c := range old {
		if !have[c.GetName()] {
			out = append(out, c)
		}
	}
	return out
}

func toMessages[T proto.Message](items []T) []proto.Message {
	out := make([]proto.Message, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

// writeDiscoveryJSON writes the file form Envoy's path_config_source reads,
// one DiscoveryResponse with the resources packed as Any, one resource at a
// time: a 10k-cluster CDS file is tens of MB, and building it as one
// DiscoveryResponse of Anys costs a binary copy of every resource plus a
// JSON buffer of the whole file. Each resource is printed by appendJSON
// (jsonwire.go) as protojson prints an Any of it: "@type" first; wires,
// when not nil, are the items' deterministic wire forms (encodeList),
// which it reads instead of marshalling again.
func writeDiscoveryJSON(w io.Writer, version, typeURL string, items []proto.Message, wires [][]byte) error {
	head, err := protojson.Marshal(&discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: typeURL})
	if err != nil {
		return err
	}
	head = bytes.TrimRight(head, " }")
	if _, err := w.Write(head); err != nil {
		return err
	}
	sep := `,"resources":[`
	if len(head) == 1 { // "{": no field before
		sep = sep[1:]
	}
	if len(items) == 0 {
		sep = ""
	}
	err = marshalInChunks(len(items), func(i int) ([]byte, error) {
		if largeListener(items[i]) != nil {
			return nil, nil // written chain by chain below
		}
		url := anyTypePrefix + string(items[i].ProtoReflect().Descriptor().FullName())
		if wires != nil {
			return appendJSONWire(getJSONBuf(), items[i], wires[i], url)
		}
		return appendJSON(getJSONBuf(), items[i], url)
	}, func(i int, body []byte) error {
		if l := largeListener(items[i]); l != nil {
			var wire []byte
			if wires != nil {
				wire = wires[i]
			}
			err := writeLargeListenerJSON(w, sep, l, wire)
			sep = ","
			return err
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		_, err := w.Write(body)
		putJSONBuf(body)
		sep = ","
		return err
	})
	if err != nil {
		return err
	}
	if len(items) > 0 {
		sep = "]"
	}
	_, err = io.WriteString(w, sep+"}")
	return err
}

// splitChains is the filter-chain count from which a listener's JSON is
// written chain by chain, each chunk of chains marshalled on every core: the
// transparent listener of 10k services is one 12 MB message, which as one
// buffer (and the chains' parts besides) was the peak of a 10k-service drop.
const splitChains = 512

// largeListener is m as a listener of at least splitChains filter chains, or nil.
func largeListener(m proto.Message) *listenerv3.Listener {
	if l, ok := m.(*listenerv3.Listener); ok && len(l.FilterChains) >= splitChains {
		return l
	}
	return nil
}

// writeLargeListenerJSON writes sep and l as an Any's JSON object: "@type",
// l's fields other than the chains, then the chains, printed a chunk at a
// time on every core (JSON field order means nothing to Envoy's parser).
// wire is l's deterministic wire form, or nil.
func writeLargeListenerJSON(w io.Writer, sep string, l *listenerv3.Listener, wire []byte) error {
	// A shallow copy without the chains: its fields alias l's, read only.
	shell := &listenerv3.Listener{}
	dst := shell.ProtoReflect()
	l.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != filterChainsField {
			dst.Set(fd, v)
		}
		return true
	})
	// The chains' encodings are the filter_chains records of l's, in order;
	// the shell's are the other records.
	var shellWire []byte
	var chainWires [][]byte
	for b := wire; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[max(n, 0):])
		if n < 0 || m < 0 {
			return fmt.Errorf("listener %s: %v", l.Name, protowire.ParseError(min(n, m)))
		}
		if num == filterChainsField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			chainWires = append(chainWires, v)
		} else {
			shellWire = append(shellWire, b[:n+m]...)
		}
		b = b[n+m:]
	}
	var head []byte
	var err error
	url := anyTypePrefix + string(l.ProtoReflect().Descriptor().FullName())
	if wire == nil || len(chainWires) != len(l.FilterChains) {
		chainWires = nil
		head, err = appendJSON(nil, shell, url)
	} else {
		head, err = appendJSONWire(nil, shell, shellWire, url)
	}
	if err != nil {
		return err
	}
	head = bytes.TrimSpace(head)
	if len(head) < 2 || head[0] != '{' || head[len(head)-1] != '}' {
		return fmt.Errorf("JSON of listener %s is not an object", l.Name)
	}
	// The object has "@type" at least: the chains follow a comma.
	open := sep + string(head[:len(head)-1])
	if _, err := io.WriteString(w, open+`,"filterChains":[`); err != nil {
		return err
	}
	err = marshalInChunks(len(l.FilterChains), func(i int) ([]byte, error) {
		if chainWires != nil {
			return appendJSONWire(getJSONBuf(), l.FilterChains[i], chainWires[i], "")
		}
		return appendJSON(getJSONBuf(), l.FilterChains[i], "")
	}, func(i int, chain []byte) error {
		if i > 0 {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		_, err := w.Write(chain)
		putJSONBuf(chain)
		return err
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "]}")
	return err
}

// marshalInChunks marshals items 0..n-1 a chunk at a time on every core
// and hands each to write in order: JSON is most of a large drop's CPU
// (10k clusters: 16 MB), and memory holds one chunk's JSON, not the file's.
func marshalInChunks(n int, marshal func(i int) ([]byte, error), write func(i int, b []byte) error) error {
	const chunk = 256
	bodies := make([][]byte, min(chunk, n))
	errs := make([]error, len(bodies))
	for start := 0; start < n; start += chunk {
		size := min(chunk, n-start)
		parallel.ForEach(size, func(i int) { bodies[i], errs[i] = marshal(start + i) })
		for i := range size {
			if errs[i] != nil {
				return errs[i]
			}
			if err := write(start+i, bodies[i]); err != nil {
				return err
			}
			bodies[i] = nil
		}
	}
	return nil
}

// jsonBufs are the items' JSON buffers, reused from one item to the next.
var jsonBufs = sync.Pool{New: func() any { return new([]byte) }}

func getJSONBuf() []byte { return (*jsonBufs.Get().(*[]byte))[:0] }

func putJSONBuf(b []byte) {
	if cap(b) > 1<<20 {
		return // a rare huge item: let it go rather than pin it
	}
	jsonBufs.Put(&b)
}

// filterChainsField is Listener.filter_chains' field number.
var filterChainsField = (&listenerv3.Listener{}).ProtoReflect().Descriptor().Fields().ByName("filter_chains").Number()

// writeFileAtomic replaces path so that a reader sees the old or the new
// content, never a torn file: a temp file in the same directory (a rename
// across file systems is a copy), mode set before any byte is written,
// fsync, rename, then fsync of the directory so the rename survives a crash.
// The temp name starts with '.', which file watchers here ignore.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
