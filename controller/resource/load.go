package resource

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/meshext/meshext/controller/inputfile"
	"github.com/meshext/meshext/controller/parallel"
)

// Set is every resource read from a set of files, indexed by kind.
type Set struct {
	MeshExternalServices   []*MeshExternalService
	HostnameGenerators     []*HostnameGenerator
	MeshTrafficPermissions []*MeshTrafficPermission
	Dataplanes             []*Dataplane
	Meshes                 []*Mesh
	Secrets                []*Secret
	ZoneEgresses           []*ZoneEgress
	// Policies are the targetRef policies (PolicyKinds), in the order read.
	Policies []Policy
	// Files lists the files read, in order.
	Files []string

	// index holds every resource added through Add by Meta.Key, so Add's
	// duplicate check stays O(1) and a 10k-resource load stays linear.
	index map[string]*Meta
}

// Objects returns every resource in report order (kind, mesh, name).
func (s *Set) Objects() []Object {
	var out []Object
	for _, r := range s.Meshes {
		out = append(out, r)
	}
	for _, r := range s.Secrets {
		out = append(out, r)
	}
	for _, r := range s.HostnameGenerators {
		out = append(out, r)
	}
	for _, r := range s.MeshExternalServices {
		out = append(out, r)
	}
	for _, r := range s.MeshTrafficPermissions {
		out = append(out, r)
	}
	for _, r := range s.Dataplanes {
		out = append(out, r)
	}
	for _, r := range s.ZoneEgresses {
		out = append(out, r)
	}
	for _, r := range s.Policies {
		out = append(out, r)
	}
	return out
}

// Mesh returns the named Mesh resource, or nil when the mesh is implicit.
func (s *Set) Mesh(name string) *Mesh {
	for _, m := range s.Meshes {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Secret returns the mesh's secret of that name, or nil.
func (s *Set) Secret(mesh, name string) *Secret {
	for _, sec := range s.Secrets {
		if sec.Mesh == mesh && sec.Name == name {
			return sec
		}
	}
	return nil
}

// MeshExternalService returns the mesh's MES of that name, or nil.
func (s *Set) MeshExternalService(mesh, name string) *MeshExternalService {
	for _, m := range s.MeshExternalServices {
		if m.Mesh == mesh && m.Name == name {
			return m
		}
	}
	return nil
}

// Add puts obj into the set. It refuses a second resource with the same kind, mesh and name.
func (s *Set) Add(obj Object) *FieldError {
	m := obj.GetMeta()
	if s.index == nil {
		// Built lazily: sets may also be filled by assigning the slices.
		s.index = map[string]*Meta{}
		for _, o := range s.Objects() {
			s.index[o.GetMeta().Key()] = o.GetMeta()
		}
	}
	key := m.Key()
	if om, dup := s.index[key]; dup {
		return m.Errorf("name", "duplicate %s %s/%s: already defined at %s; the first definition in file order is used, this one is ignored",
			m.Kind, m.Mesh, m.Name, om.Source.Where())
	}
	s.index[key] = m
	s.put(obj)
	return nil
}

// put appends obj to the slice of its kind.
func (s *Set) put(obj Object) {
	switch r := obj.(type) {
	case *MeshExternalService:
		s.MeshExternalServices = append(s.MeshExternalServices, r)
	case *HostnameGenerator:
		s.HostnameGenerators = append(s.HostnameGenerators, r)
	case *MeshTrafficPermission:
		s.MeshTrafficPermissions = append(s.MeshTrafficPermissions, r)
	case *Dataplane:
		s.Dataplanes = append(s.Dataplanes, r)
	case *Mesh:
		s.Meshes = append(s.Meshes, r)
	case *Secret:
		s.Secrets = append(s.Secrets, r)
	case *ZoneEgress:
		s.ZoneEgresses = append(s.ZoneEgresses, r)
	case Policy:
		s.Policies = append(s.Policies, r)
	}
}

// Subset returns a set (without Files) of the resources of s that keep
// accepts, called on each in Objects order, as Adding them would. When
// every resource of s came through Add (so none is a duplicate) it skips
// Add's duplicate check and index, which a 10k-resource subset would
// otherwise rebuild on every reload; a later Add builds the index.
func (s *Set) Subset(keep func(Object) bool) *Set {
	out := &Set{}
	objs := s.Objects()
	unique := s.index != nil && len(s.index) == len(objs)
	for _, o := range objs {
		if !keep(o) {
			continue
		}
		if unique {
			out.put(o)
		} else {
			_ = out.Add(o) // the first of a name stays, as Add keeps it
		}
	}
	return out
}

// Options tune how resources are read.
type Options struct {
	// Zone is the local zone name put into kuma.io/zone (Kuma's default zone is "default").
	Zone string
	// MaxFileSize bounds each file read (0 = inputfile.DefaultMaxSize).
	MaxFileSize int64
}

// IsResourceFile reports whether a file in a drop directory is read:
// *.yaml and *.yml, but not hidden files or editors' temporary files.
func IsResourceFile(path string) bool {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") || strings.HasPrefix(base, "#") || strings.HasSuffix(base, "~") {
		return false
	}
	ext := strings.ToLower(filepath.Ext(base))
	return ext == ".yaml" || ext == ".yml"
}

// ExpandPaths turns files and directories (walked recursively) into the
// sorted list of resource files. A directory named like a resource file
// (x.yaml/) is listed, not walked, so that reading it reports it.
func ExpandPaths(paths []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if !seen[p] {
				files = append(files, p)
				seen[p] = true
			}
			continue
		}
		var found []string
		root := WalkRoot(p)
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path == root {
					return nil
				}
				if strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				if IsResourceFile(path) && !seen[path] {
					found = append(found, path)
					seen[path] = true
					return filepath.SkipDir
				}
				return nil
			}
			if IsResourceFile(path) && !seen[path] {
				found = append(found, path)
				seen[path] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// WalkRoot is dir as filepath.WalkDir should be given it: with a trailing
// separator when dir is a symlink, which WalkDir would not follow otherwise
// (a drop directory may be a symlink swapped to switch versions).
func WalkRoot(dir string) string {
	if st, err := os.Lstat(dir); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return filepath.Clean(dir) + string(filepath.Separator)
	}
	return dir
}

// Load reads every resource file under paths. It returns what it could read
// and all problems; a broken document or file affects only itself.
func Load(paths []string, opts Options) (*Set, []*FieldError, error) {
	files, err := ExpandPaths(paths)
	if err != nil {
		return nil, nil, err
	}
	// Read and parse every file in parallel, then add in file order, so
	// the result (first definition wins, problem order) is the serial one.
	type parsed struct {
		readErr *FieldError
		objs    []Object
		errs    []*FieldError
	}
	results := make([]parsed, len(files))
	parallel.ForEach(len(files), func(i int) {
		data, err := inputfile.Read(files[i], opts.MaxFileSize)
		if err != nil {
			results[i].readErr = ReadProblem(files[i], err)
			return
		}
		results[i].objs, results[i].errs = ParseBytes(files[i], data)
	})
	set := &Set{}
	var errs []*FieldError
	for i, f := range files {
		r := &results[i]
		if r.readErr != nil {
			errs = append(errs, r.readErr)
			continue
		}
		set.Files = append(set.Files, f)
		errs = append(errs, r.errs...)
		for _, o := range r.objs {
			if e := set.Add(o); e != nil {
				errs = append(errs, e)
			}
		}
		*r = parsed{} // let the parsed file go as soon as it is in the set
	}
	set.ComputeLabels(opts)
	return set, errs, nil
}

// ReadProblem is the problem reported for a file that could not be read
// (see inputfile.Read): it is skipped, and says why.
func ReadProblem(file string, err error) *FieldError {
	msg := "cannot read: " + err.Error()
	if errors.Is(err, inputfile.ErrTooLarge) {
		msg += " (--max-file-size)"
	}
	return &FieldError{File: file, Line: 0, Message: msg}
}

// ComputeLabels adds the labels a Kuma zone control plane adds to what users
// apply, only where absent: kuma.io/mesh, kuma.io/origin=zone, kuma.io/zone
// (not for origin=global), kuma.io/env and k8s.kuma.io/namespace. This is why
// the seed's HostnameGenerator (selecting kuma.io/origin: zone) matches the
// seed's MeshExternalServices.
func (s *Set) ComputeLabels(opts Options) {
	zone := opts.Zone
	if zone == "" {
		zone = "default"
	}
	for _, o := range s.Objects() {
		m := o.GetMeta()
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		if m.Kind.MeshScoped() {
			setIfAbsent(m.Labels, LabelMesh, m.Mesh)
		}
		setIfAbsent(m.Labels, LabelOrigin, "zone")
		if m.Labels[LabelOrigin] != "global" {
			setIfAbsent(m.Labels, LabelZone, zone)
		}
		if m.Source.Style == StyleKubernetes {
			setIfAbsent(m.Labels, LabelEnv, "kubernetes")
			if m.Namespace != "" {
				setIfAbsent(m.Labels, LabelNamespace, m.Namespace)
			}
		} else {
			setIfAbsent(m.Labels, LabelEnv, "universal")
		}
	}
}

func setIfAbsent(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}
