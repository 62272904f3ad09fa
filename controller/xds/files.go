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

// File layout under FileWriter.Dir, one directory per Envoy node id:
//
//	<Dir>/<node>/cds.json          DiscoveryResponse of Clusters   (0644)
//	<Dir>/<node>/lds.json          DiscoveryResponse of Listeners  (0644)
//	<Dir>/<node>/sds/<secret>.json DiscoveryResponse of one Secret (0600: keys)
//
// A bootstrap points cds_config/lds_config at the first two with
// watched_directory = <Dir>/<node>, and each SDS secret config at its file
// with watched_directory = <Dir>/<node>/sds.

// NodeDir is the directory holding one node's files.
func NodeDir(dir, node string) string { return filepath.Join(dir, SafeName(node)) }

// CDSPath is the clusters file of a node.
func CDSPath(dir, node string) string { return filepath.Join(NodeDir(dir, node), "cds.json") }

// LDSPath is the listeners file of a node.
func LDSPath(dir, node string) string { return filepath.Join(NodeDir(dir, node), "lds.json") }

// SecretDir is the directory of a node's SDS files.
func SecretDir(dir, node string) string { return filepath.Join(NodeDir(dir, node), "sds") }

// SecretPath is the SDS file of one secret of a node.
func SecretPath(dir, node, secret string) string {
	return filepath.Join(SecretDir(dir, node), SafeName(secret)+".json")
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

	mu    sync.Mutex
	nodes map[string]*writtenNode
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
	secrets                map[string]string // secret name -> content hash
}

// WriteStats says what a Write changed.
type WriteStats struct {
	FilesWritten int
	FilesRemoved int
}

// Write brings every node's files to the given resources. Nodes that were
// written before but are absent now get empty CDS and LDS (their Envoy loses
// its config, as it would over ADS) and their secrets removed.
func (w *FileWriter) Write(nodes map[string]*Resources) (WriteStats, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodes == nil {
		w.nodes = map[string]*writtenNode{}
	}
	var st WriteStats
	var errs []error
	for node := range w.nodes {
		if _, ok := nodes[node]; !ok {
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
	return st, errors.Join(errs...)
}

func (w *FileWriter) writeNode(node string, res *Resources, st *WriteStats) error {
	if err := checkResources(res); err != nil {
		return fmt.Errorf("node %q: %w", node, err)
	}
	prev := w.nodes[node]
	if prev == nil {
		prev = &writtenNode{secrets: map[string]string{}}
	}
	next := &writtenNode{clusters: res.Clusters, secrets: map[string]string{}}
	var err error
	if next.cdsVersion, err = versionOf(res.Clusters); err != nil {
		return err
	}
	if next.ldsVersion, err = versionOf(res.Listeners); err != nil {
		return err
	}
	if err := os.MkdirAll(SecretDir(w.Dir, node), 0o755); err != nil {
		return err
	}

	// Secrets first: a new cluster's SDS config needs its file to exist.
	for _, s := range res.Secrets {
		h, err := hashOf(s)
		if err != nil {
			return err
		}
		next.secrets[s.GetName()] = h
		if prev.secrets[s.GetName()] == h {
			continue
		}
		data, err := discoveryJSON(h[:16], resourcev3.SecretType, s)
		if err != nil {
			return fmt.Errorf("secret %q: %w", s.GetName(), err)
		}
		if err := writeFileAtomic(SecretPath(w.Dir, node, s.GetName()), data, secretFileMode); err != nil {
			return err
		}
		w.note("write", SecretPath(w.Dir, node, s.GetName()))
		st.FilesWritten++
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
	// Old secrets go last, once no cluster uses them.
	for name := range prev.secrets {
		if _, ok := next.secrets[name]; ok {
			continue
		}
		if err := os.Remove(SecretPath(w.Dir, node, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		st.FilesRemoved++
		w.note("remove", SecretPath(w.Dir, node, name))
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
