package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/meshext/meshext/controller/inputfile"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
)

// StatusFile is the name of the status document in the state directory.
const StatusFile = "status.json"

// Status is what /status serves and StateDir/status.json holds.
type Status struct {
	// Reloads counts the changes that were compiled and delivered (also on delivery errors).
	Reloads     int64     `json:"reloads"`
	LastAttempt time.Time `json:"lastAttempt"`
	// LastSuccess is when config was last delivered without error.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// Error is the last reload's failure, if it failed as a whole (the
	// previous config is still served).
	Error    string          `json:"error,omitempty"`
	Services []ServiceStatus `json:"services"`
	// Problems are every parse, validation and build error, each with file and line.
	Problems []*resource.FieldError `json:"problems"`
	// RenderErrors are render warnings, resources dropped or held back at their
	// last good version, and delivery errors.
	RenderErrors []string     `json:"renderErrors"`
	Nodes        []NodeStatus `json:"nodes"`
	// Resources counts the valid input resources by kind.
	Resources map[string]int `json:"resources"`
	// Source is the state of the drop directory itself.
	Source SourceStatus `json:"source"`
	// Identities are the mTLS meshes' CAs and the nodes' identities
	// (SPIFFE ID, serial, validity; never keys).
	Identities []model.IdentityView `json:"identities,omitempty"`
}

// Source states.
const (
	SourceReady      = "Ready"
	SourceMissing    = "Missing"
	SourceUnreadable = "Unreadable"
)

// SourceStatus says whether the drop directory could be read. While it
// cannot (removed, being replaced, no permission) the last good config keeps
// serving and this says since when.
type SourceStatus struct {
	// Status is SourceReady, SourceMissing or SourceUnreadable.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	// Since is when the directory was first found missing or unreadable.
	Since time.Time `json:"since,omitzero"`
}

// nextSource is the source state after a reload attempt at now that ended
// with err (nil or any error but a sourceError: the directory was read).
func nextSource(prev SourceStatus, dir string, err error, now time.Time) SourceStatus {
	var se *sourceError
	if !errors.As(err, &se) {
		return SourceStatus{Status: SourceReady}
	}
	st := SourceStatus{Status: SourceUnreadable, Since: now}
	if errors.Is(err, fs.ErrNotExist) {
		st.Status = SourceMissing
	}
	if prev.Status == st.Status {
		st.Since = prev.Since
	}
	what := "unreadable (" + se.err.Error() + ")"
	if st.Status == SourceMissing {
		what = "missing"
	}
	st.Message = fmt.Sprintf("drop directory %s %s since %s; serving the last good config", dir, what, st.Since.UTC().Format(time.RFC3339))
	return st
}

// ServiceStatus is the status of one MeshExternalService.
type ServiceStatus struct {
	Mesh       string            `json:"mesh"`
	Name       string            `json:"name"`
	VIP        string            `json:"vip,omitempty"`
	Port       uint32            `json:"port"`
	Protocol   string            `json:"protocol"`
	Hostnames  []string          `json:"hostnames"`
	Cluster    string            `json:"cluster"`
	Conditions []model.Condition `json:"conditions"`
	// Broken says why the service is not served (empty when it is).
	Broken string `json:"broken,omitempty"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
}

// NodeStatus is what one Envoy node is being served.
type NodeStatus struct {
	ID        string `json:"id"`
	Clusters  int    `json:"clusters"`
	Listeners int    `json:"listeners"`
	Secrets   int    `json:"secrets"`
	// CDSPath and LDSPath are the file drops (file delivery only).
	CDSPath string `json:"cdsPath,omitempty"`
	LDSPath string `json:"ldsPath,omitempty"`
}

func servicesStatus(w *model.World) []ServiceStatus {
	out := make([]ServiceStatus, 0, len(w.Services))
	for _, s := range w.Services {
		st := ServiceStatus{
			Mesh: s.Mesh, Name: s.Name, Port: s.Port, Protocol: s.Protocol,
			Hostnames: append([]string{}, s.Hostnames...), Cluster: s.ClusterName(),
			Conditions: append([]model.Condition{}, s.Conditions...), Broken: s.Broken,
		}
		if s.VIP.IsValid() {
			st.VIP = s.VIP.String()
		}
		if s.Resource != nil {
			st.File, st.Line = s.Resource.Source.File, s.Resource.Source.Line
		}
		out = append(out, st)
	}
	return out
}

func nodesStatus(file, ads map[string]*xds.Resources, xdsDir string, format xds.Format) []NodeStatus {
	src := file
	if src == nil {
		src = ads
	}
	out := make([]NodeStatus, 0, len(src))
	for id, r := range src {
		ns := NodeStatus{ID: id, Clusters: len(r.Clusters), Listeners: len(r.Listeners), Secrets: len(r.Secrets)}
		if file != nil {
			ns.CDSPath, ns.LDSPath = format.CDSPath(xdsDir, id), format.LDSPath(xdsDir, id)
		}
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func resourceCounts(set *resource.Set) map[string]int {
	counts := map[string]int{}
	if set == nil {
		return counts
	}
	for _, o := range set.Objects() {
		counts[string(o.GetMeta().Kind)]++
	}
	return counts
}

// writeStatus stores st as StateDir/status.json (atomically, 0644: no secrets in it).
func writeStatus(stateDir string, st *Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(stateDir, StatusFile)
	f, err := os.CreateTemp(stateDir, "."+StatusFile+".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(append(b, '\n'))
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o644)); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// ReadStatus loads the status `meshext run` wrote into stateDir.
func ReadStatus(stateDir string) (*Status, error) {
	b, err := inputfile.Read(filepath.Join(stateDir, StatusFile), 1<<30)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
