package xds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// File layout under FileWriter.Dir:
//
//	<Dir>/<node>/cds.json   DiscoveryResponse of the node's Clusters   (0644)
//	<Dir>/<node>/lds.json   DiscoveryResponse of the node's Listeners  (0644)
//	<Dir>/sds/<secret>.json DiscoveryResponse of one Secret (0600: keys)
//
// Secrets are shared by all nodes (clusters, and so their SDS references,
// are node-independent). A bootstrap points cds_config/lds_config at the
// first two with watched_directory = <Dir>/<node>; each SDS config names its
// file with watched_directory = <Dir>/sds (render.Options.SecretsDir).

// NodeDir is the directory holding one node's files.
func NodeDir(dir, node string) string { return filepath.Join(dir, SafeName(node)) }

// CDSPath is the clusters file of a node.
func CDSPath(dir, node string) string { return filepath.Join(NodeDir(dir, node), "cds.json") }

// LDSPath is the listeners file of a node.
func LDSPath(dir, node string) string { return filepath.Join(NodeDir(dir, node), "lds.json") }

// SecretDir is the directory of the SDS files.
func SecretDir(dir string) string { return filepath.Join(dir, "sds") }

// SecretPath is the SDS file of one secret.
func SecretPath(dir, secret string) string {
	return filepath.Join(SecretDir(dir), SafeName(secret)+".json")
}

// SafeName maps a node id or secret name to one path element: characters
// other than letters, digits, '.', '_' and '-' become '_', and names made of
// dots only get a prefix, so no name can climb out of its directory.
func SafeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if strings.Trim(out, ".") == "" {
		out = "_" + out
	}
	return out
}

// File modes: Envoy only needs to read; SDS files hold private keys.
const (
	configFileMode = 0o644
	secretFileMode = 0o600
)

// FileWriter publishes resources as file-based xDS. Files are replaced
// atomically (temp file in the same directory, fsync, rename), only when
// their content changed, in an order that never lets a listener reference a
// cluster Envoy does not have yet. Safe for concurrent use.
type FileWriter struct {
	Dir string

	mu      sync.Mutex
	nodes   map[string]*writtenNode
	secrets map[string]string // secret name -> content hash, as on disk
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
	cdsVersion, ldsVersion string
	clusters               []*clusterv3.Cluster
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
	if w.nodes == nil {
		w.adopt()
	}
	var st WriteStats
	for node, res := range nodes {
		if res == nil {
			res = &Resources{}
		}
		if err := checkResources(res); err != nil {
			return st, fmt.Errorf("node %q: %w", node, err)
		}
	}
	secrets, err := w.writeSecrets(nodes, &st)
	if err != nil {
		return st, err
	}
	var errs []error
	live := make(map[string]bool, len(nodes))
	for node := range nodes {
		live[SafeName(node)] = true
	}
	for node := range w.nodes {
		if _, ok := nodes[node]; !ok && !live[SafeName(node)] {
			if err := w.writeNode(node, &Resources{}, &st); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for node, res := range nodes {
		if res == nil {
			res = &Resources{}
		}
		if err := w.writeNode(node, res, &st); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Some node may still use an old secret: keep them all.
		return st, errors.Join(errs...)
	}
	for name := range w.secrets {
		if _, ok := secrets[name]; ok {
			continue
		}
		if err := os.Remove(SecretPath(w.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, err
		}
		delete(w.secrets, name)
		st.FilesRemoved++
		w.note("remove", SecretPath(w.Dir, name))
	}
	return st, nil
}

// adopt takes over what a previous process left in Dir: its nodes (emptied
// on the first Write unless still rendered), its secrets (removed unless
// still used) and any temp files a crash left behind.
func (w *FileWriter) adopt() {
	w.nodes = map[string]*writtenNode{}
	w.secrets = map[string]string{}
	removeTemps := func(dir string) []os.DirEntry {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		return ents
	}
	for _, e := range removeTemps(w.Dir) {
		if !e.IsDir() || e.Name() == "sds" {
			continue
		}
		removeTemps(filepath.Join(w.Dir, e.Name()))
		if _, err := os.Stat(filepath.Join(w.Dir, e.Name(), "cds.json")); err == nil {
			// Unknown versions: the first Write rewrites both files, ordered
			// against the clusters Envoy may hold from the old file.
			w.nodes[e.Name()] = &writtenNode{cdsVersion: "?", ldsVersion: "?",
				clusters: readClusters(filepath.Join(w.Dir, e.Name(), "cds.json"))}
		}
	}
	for _, e := range removeTemps(SecretDir(w.Dir)) {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() && !strings.HasPrefix(name, ".") {
			w.secrets[name] = "" // unknown content: rewritten if still used
		}
	}
}

// readClusters reads a cds.json written before; nil when it cannot.
func readClusters(path string) []*clusterv3.Cluster {
	b, err := os.ReadFile(path)
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

// writeSecrets writes the secrets that are new or changed and returns the
// hash of every secret in use. One name must mean one content on all nodes.
func (w *FileWriter) writeSecrets(nodes map[string]*Resources, st *WriteStats) (map[string]string, error) {
	if err := os.MkdirAll(SecretDir(w.Dir), 0o755); err != nil {
		return nil, err
	}
	want := map[string]string{}
	for node, res := range nodes {
		if res == nil {
			continue
		}
		for _, s := range res.Secrets {
			h, err := hashOf(s)
			if err != nil {
				return nil, err
			}
			if old, ok := want[s.GetName()]; ok && old != h {
				return nil, fmt.Errorf("node %q: secret %q differs from another node's secret of that name", node, s.GetName())
			}
			if _, ok := want[s.GetName()]; ok {
				continue
			}
			want[s.GetName()] = h
			if w.secrets[s.GetName()] == h {
				continue
			}
			data, err := discoveryJSON(h[:16], resourcev3.SecretType, s)
			if err != nil {
				return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
			}
			path := SecretPath(w.Dir, s.GetName())
			if err := writeFileAtomic(path, data, secretFileMode); err != nil {
				return nil, err
			}
			w.secrets[s.GetName()] = h
			st.FilesWritten++
			w.note("write", path)
		}
	}
	return want, nil
}

func (w *FileWriter) writeNode(node string, res *Resources, st *WriteStats) error {
	prev := w.nodes[node]
	if prev == nil {
		prev = &writtenNode{}
	}
	next := &writtenNode{clusters: res.Clusters}
	var err error
	if next.cdsVersion, err = versionOf(res.Clusters); err != nil {
		return err
	}
	if next.ldsVersion, err = versionOf(res.Listeners); err != nil {
		return err
	}
	if err := os.MkdirAll(NodeDir(w.Dir, node), 0o755); err != nil {
		return err
	}

	cdsChanged := next.cdsVersion != prev.cdsVersion
	ldsChanged := next.ldsVersion != prev.ldsVersion
	added, removed := diffNames(prev.clusters, res.Clusters)
	writeCDS := func(version string, clusters []*clusterv3.Cluster) error {
		data, err := discoveryJSON(version, resourcev3.ClusterType, toMessages(clusters)...)
		if err != nil {
			return err
		}
		st.FilesWritten++
		w.note("write", CDSPath(w.Dir, node))
		return writeFileAtomic(CDSPath(w.Dir, node), data, configFileMode)
	}
	writeLDS := func() error {
		data, err := discoveryJSON(next.ldsVersion, resourcev3.ListenerType, toMessages(res.Listeners)...)
		if err != nil {
			return err
		}
		st.FilesWritten++
		w.note("write", LDSPath(w.Dir, node))
		return writeFileAtomic(LDSPath(w.Dir, node), data, configFileMode)
	}

	switch {
	case !ldsChanged:
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
	w.nodes[node] = next
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
