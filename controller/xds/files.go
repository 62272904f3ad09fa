package xds

import (
	"errors"
	"fmt"
	"github.com/meshext/meshext/controller/inputfile"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/names"
)

// File layout under FileWriter.Dir:
//
//	<Dir>/<node>/cds.json   DiscoveryResponse of the node's Clusters   (0644)
//	<Dir>/<node>/lds.json   DiscoveryResponse of the node's Listeners  (0644)
//	<Dir>/<node>/rds/<route>.json  one RouteConfiguration (routes.go)
//	<Dir>/sds/<secret>.json DiscoveryResponse of one Secret (0600: keys)
//	<Dir>/.meshext-manifest.json  what meshext wrote (ManifestFile)
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

// CDSPath is the clusters file of a node.
func CDSPath(dir, node string) string { return filepath.Join(NodeDir(dir, node), "cds.json") }

// LDSPath is the listeners file of a node.
func LDSPath(dir, node string) string { return filepath.Join(NodeDir(dir, node), "lds.json") }

// SecretDir is the directory of the SDS files.
func SecretDir(dir string) string { return filepath.Join(dir, secretDirName) }

// SecretPath is the SDS file of one secret.
func SecretPath(dir, secret string) string { return SecretFile(SecretDir(dir), secret) }

// SecretFile is the file of one secret in the SDS directory sdsDir.
func SecretFile(sdsDir, secret string) string {
	return filepath.Join(sdsDir, secretFileName(secret))
}

func secretFileName(secret string) string { return names.PathElement(secret) + ".json" }

// Paths relative to the output directory, as its manifest lists them.
func relCDS(nodeDir string) string     { return nodeDir + "/cds.json" }
func relLDS(nodeDir string) string     { return nodeDir + "/lds.json" }
func relSecret(fileName string) string { return secretDirName + "/" + fileName }

// File modes: Envoy only needs to read; SDS files hold private keys.
const (
	configFileMode = 0o644
	secretFileMode = 0o600
)

// FileWriter publishes resources as file-based xDS. Files are replaced
// atomically (temp file in the same directory, fsync, rename), only when
// their content changed, in an order that never lets a listener reference a
// cluster Envoy does not have yet. It writes, empties and removes only files
// its manifest lists (see OutDir): Dir must be empty or written by meshext
// before. Safe for concurrent use.
type FileWriter struct {
	Dir string

	mu      sync.Mutex
	out     *OutDir
	nodes   map[string]*writtenNode // by node directory name
	secrets map[string]string       // secret file name -> content hash, as on disk
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
		claim = append(claim, relCDS(d), relLDS(d))
		for _, rc := range res.Routes {
			claim = append(claim, relRoute(d, routeFileName(rc.GetName())))
		}
	}
	secrets, err := wantedSecrets(nodes)
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
	if err := w.writeSecrets(secrets, &st); err != nil {
		return st, err
	}
	var errs []error
	for d, prev := range w.nodes {
		if _, ok := dirs[d]; !ok {
			if err := w.writeNode(d, prev.id, &Resources{}, &st); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for d, node := range dirs {
		res := nodes[node]
		if res == nil {
			res = &Resources{}
		}
		if err := w.writeNode(d, node, res, &st); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Some node may still use an old secret: keep them all.
		return st, errors.Join(errs...)
	}
	for file := range w.secrets {
		if _, ok := secrets[file]; ok {
			continue
		}
		if err := w.out.Remove(relSecret(file)); err != nil {
			return st, err
		}
		delete(w.secrets, file)
		st.FilesRemoved++
		w.note("remove", w.out.Path(relSecret(file)))
	}
	return st, nil
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
		switch {
		case dir == secretDirName && strings.HasSuffix(file, ".json"):
			w.secrets[file] = "" // unknown content: rewritten if still used
		case dir != "" && !strings.Contains(dir, "/") && file == "cds.json" && w.out.Owns(relLDS(dir)):
			// Unknown versions: the first Write rewrites both files, ordered
			// against the clusters Envoy may hold from the old file.
			w.nodes[dir] = &writtenNode{cdsVersion: "?", ldsVersion: "?", clusters: readClusters(w.out.Path(rel)), routes: map[string]string{}}
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

// readClusters reads a cds.json written before; nil when it cannot.
func readClusters(path string) []*clusterv3.Cluster {
	// A special file planted in the output directory must not block start-up.
	b, err := inputfile.Read(path, maxOwnFile)
	if err != nil {
		return nil
	}
	var resp discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(b, &resp); err != nil {
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
func wantedSecrets(nodes map[string]*Resources) (map[string]wantedSecret, error) {
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
			file := secretFileName(s.GetName())
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

// writeSecrets writes the secrets that are new or changed.
func (w *FileWriter) writeSecrets(want map[string]wantedSecret, st *WriteStats) error {
	for _, file := range slices.Sorted(maps.Keys(want)) {
		ws := want[file]
		if w.secrets[file] == ws.hash {
			continue
		}
		data, err := discoveryJSON(ws.hash[:16], resourcev3.SecretType, ws.secret)
		if err != nil {
			return fmt.Errorf("secret %q: %w", ws.secret.GetName(), err)
		}
		if err := w.out.WriteFile(relSecret(file), data, secretFileMode); err != nil {
			return err
		}
		w.secrets[file] = ws.hash
		st.FilesWritten++
		w.note("write", w.out.Path(relSecret(file)))
	}
	return nil
}

// writeNode brings the files of one node directory to res; node is its id,
// for messages ("" for a node adopted from a previous run).
func (w *FileWriter) writeNode(dir, node string, res *Resources, st *WriteStats) error {
	prev := w.nodes[dir]
	if prev == nil {
		prev = &writtenNode{}
	}
	next := &writtenNode{id: node, clusters: res.Clusters, routes: prev.routes}
	if next.routes == nil {
		next.routes = map[string]string{}
	}
	if node == "" {
		node = dir
	}
	routes, err := wantedRoutes(res)
	if err != nil {
		return fmt.Errorf("node %q: %w", node, err)
	}
	if next.cdsVersion, err = versionOf(res.Clusters); err != nil {
		return err
	}
	if next.ldsVersion, err = versionOf(res.Listeners); err != nil {
		return err
	}

	cdsChanged := next.cdsVersion != prev.cdsVersion
	ldsChanged := next.ldsVersion != prev.ldsVersion
	// Route tables go with the listeners: those a listener names are
	// written before it, those none names any more removed after.
	rdsChanged := routesChanged(prev.routes, routes)
	added, removed := diffNames(prev.clusters, res.Clusters)
	writeCDS := func(version string, clusters []*clusterv3.Cluster) error {
		data, err := discoveryJSON(version, resourcev3.ClusterType, toMessages(clusters)...)
		if err != nil {
			return err
		}
		st.FilesWritten++
		w.note("write", w.out.Path(relCDS(dir)))
		if err := w.out.WriteFile(relCDS(dir), data, configFileMode); err != nil {
			return fmt.Errorf("node %q: %w", node, err)
		}
		return nil
	}
	// writeLDS writes the listeners' side: new and changed route tables,
	// lds.json when it changed, then the route files no longer named.
	writeLDS := func() error {
		if err := w.writeRoutes(dir, routes, next.routes, st); err != nil {
			return fmt.Errorf("node %q: %w", node, err)
		}
		if !ldsChanged {
			return w.removeRoutes(dir, routes, next.routes, st)
		}
		data, err := discoveryJSON(next.ldsVersion, resourcev3.ListenerType, toMessages(res.Listeners)...)
		if err != nil {
			return err
		}
		st.FilesWritten++
		w.note("write", w.out.Path(relLDS(dir)))
		if err := w.out.WriteFile(relLDS(dir), data, configFileMode); err != nil {
			return fmt.Errorf("node %q: %w", node, err)
		}
		return w.removeRoutes(dir, routes, next.routes, st)
	}

	switch {
	case !ldsChanged && !rdsChanged:
		if cdsChanged {
			if err := writeCDS(next.cdsVersion, res.Clusters); err != nil {
				return err
			}
		}
	case removed && added:
		// Make before break: clusters old and new, then the listeners, then
		// only the new clusters.
		union := unionClusters(res.Clusters, prev.clusters)
		uv, err := versionOf(union)
		if err != nil {
			return err
		}
		if err := writeCDS(uv, union); err != nil {
			return err
		}
		if err := writeLDS(); err != nil {
			return err
		}
		if err := writeCDS(next.cdsVersion, res.Clusters); err != nil {
			return err
		}
	case removed:
		// Listeners stop referencing the clusters before they go.
		if err := writeLDS(); err != nil {
			return err
		}
		if err := writeCDS(next.cdsVersion, res.Clusters); err != nil {
			return err
		}
	default:
		// Clusters first, so new listeners find them.
		if cdsChanged {
			if err := writeCDS(next.cdsVersion, res.Clusters); err != nil {
				return err
			}
		}
		if err := writeLDS(); err != nil {
			return err
		}
	}
	w.nodes[dir] = next
	return nil
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

// discoveryJSON is the file form Envoy's path_config_source reads: one
// DiscoveryResponse with the resources packed as Any.
func discoveryJSON(version, typeURL string, items ...proto.Message) ([]byte, error) {
	resp := &discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: typeURL}
	for _, it := range items {
		a, err := anypb.New(it)
		if err != nil {
			return nil, err
		}
		resp.Resources = append(resp.Resources, a)
	}
	return protojson.MarshalOptions{}.Marshal(resp)
}

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
