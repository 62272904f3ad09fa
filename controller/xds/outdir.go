package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ManifestFile lists, at the top of an output directory (meshext run
// --xds-dir, meshext render --out), every file and directory meshext
// created there. Nothing else in the directory is ever replaced, emptied or
// removed.
const ManifestFile = ".meshext-manifest.json"

// manifestVersion is the "meshext" field of the manifest.
const manifestVersion = 1

type manifest struct {
	Meshext int      `json:"meshext"`
	Dirs    []string `json:"dirs"`
	Files   []string `json:"files"`
}

// OutDir is an output directory that meshext owns only in part: what its
// manifest lists. OpenOutDir refuses a non-empty directory without a
// manifest (another program's files, or an older meshext's, would be
// overwritten); Claim refuses a path that something else already holds;
// Remove removes only what the manifest lists. Paths are relative to the
// root, with '/' separators. Not safe for concurrent use.
type OutDir struct {
	root  string
	files map[string]bool
	dirs  map[string]bool
}

// OpenOutDir opens root (created when missing) for writing. It removes the
// temp files an interrupted write of a listed file left behind.
func OpenOutDir(root string) (*OutDir, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	d := &OutDir{root: root, files: map[string]bool{}, dirs: map[string]bool{}}
	b, err := os.ReadFile(filepath.Join(root, ManifestFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ents, err := os.ReadDir(root)
		if err != nil {
			return nil, err
		}
		if len(ents) > 0 {
			return nil, fmt.Errorf("output directory %s is not empty and has no %s: meshext writes only into an empty directory or one it wrote before, and never touches files it did not write (empty it or choose another directory)", root, ManifestFile)
		}
		return d, nil
	case err != nil:
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Meshext != manifestVersion {
		return nil, fmt.Errorf("output directory %s: %s is not a meshext manifest (version %d): %v", root, ManifestFile, manifestVersion, err)
	}
	for _, list := range []struct {
		entries []string
		into    map[string]bool
	}{{m.Dirs, d.dirs}, {m.Files, d.files}} {
		for _, rel := range list.entries {
			if err := checkRel(rel); err != nil {
				return nil, fmt.Errorf("output directory %s: %s: %w", root, ManifestFile, err)
			}
			list.into[rel] = true
		}
	}
	d.removeTemps()
	return d, nil
}

// checkRel accepts only clean, local, non-empty relative paths: a manifest
// entry can never name something outside the directory or the manifest itself.
func checkRel(rel string) error {
	if rel == "" || rel == ManifestFile || !filepath.IsLocal(rel) || filepath.Clean(rel) != rel {
		return fmt.Errorf("path %q is not a plain relative path inside the directory", rel)
	}
	return nil
}

// Root is the directory.
func (d *OutDir) Root() string { return d.root }

// Path is the absolute path of rel.
func (d *OutDir) Path(rel string) string { return filepath.Join(d.root, rel) }

// Owns reports whether the manifest lists file rel.
func (d *OutDir) Owns(rel string) bool { return d.files[rel] }

// Files lists the manifest's files, sorted.
func (d *OutDir) Files() []string { return slices.Sorted(maps.Keys(d.files)) }

// Claim makes every rel a file meshext may write: one the manifest lists, or
// one that does not exist yet (its missing parent directories are created
// with dirMode and listed too). A path held by anything else, or a parent
// that is not a plain directory (a symlink, say), refuses the whole claim
// before anything is created. The manifest is saved once, before any of the
// new files is written, so a crash never leaves an unlisted file behind.
func (d *OutDir) Claim(dirMode os.FileMode, rels ...string) error {
	var newFiles []string
	var newDirs []string
	planned := map[string]bool{}
	for _, rel := range rels {
		if d.files[rel] || planned[rel] {
			continue
		}
		if err := checkRel(rel); err != nil {
			return err
		}
		if _, err := os.Lstat(d.Path(rel)); err == nil {
			return fmt.Errorf("%s already exists and was not written by meshext (it is not in %s): refusing to replace it", d.Path(rel), ManifestFile)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, dir := range parents(rel) {
			if d.dirs[dir] || planned[dir] {
				continue
			}
			st, err := os.Lstat(d.Path(dir))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				planned[dir] = true
				newDirs = append(newDirs, dir)
			case err != nil:
				return err
			case !st.IsDir():
				return fmt.Errorf("%s is not a directory meshext created (%v): refusing to write under it", d.Path(dir), st.Mode().Type())
			}
		}
		planned[rel] = true
		newFiles = append(newFiles, rel)
	}
	if len(newFiles) == 0 {
		return nil
	}
	for _, f := range newFiles {
		d.files[f] = true
	}
	var err error
	for _, dir := range newDirs {
		if err = os.Mkdir(d.Path(dir), dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			break
		}
		err = nil
		d.dirs[dir] = true
	}
	if serr := d.save(); err == nil {
		err = serr
	}
	return err
}

// parents lists rel's parent directories, outermost first ("a/b/c" -> a, a/b).
func parents(rel string) []string {
	var out []string
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			out = append(out, rel[:i])
		}
	}
	return out
}

// WriteFile atomically replaces rel, which must have been claimed. A parent
// meshext created and someone removed since is created again.
func (d *OutDir) WriteFile(rel string, data []byte, mode os.FileMode) error {
	if err := d.prepare(rel); err != nil {
		return err
	}
	return writeFileAtomic(d.Path(rel), data, mode)
}

// prepare checks that rel was claimed and creates again the parents meshext
// created that someone removed since.
func (d *OutDir) prepare(rel string) error {
	if !d.files[rel] {
		return fmt.Errorf("%s: not claimed", d.Path(rel))
	}
	for _, dir := range parents(rel) {
		if !d.dirs[dir] {
			continue
		}
		if err := os.Mkdir(d.Path(dir), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// Remove deletes the listed files among rels (others are left alone) and
// drops them from the manifest.
func (d *OutDir) Remove(rels ...string) error {
	changed := false
	var errs []error
	for _, rel := range rels {
		if !d.files[rel] {
			continue
		}
		if err := os.Remove(d.Path(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(d.files, rel)
		changed = true
	}
	if changed {
		errs = append(errs, d.save())
	}
	return errors.Join(errs...)
}

// PruneDirs removes the directories meshext created that are now empty,
// innermost first. Envoy watches the directories of file-based xDS, so only
// one-shot writers (meshext render) prune.
func (d *OutDir) PruneDirs() error {
	dirs := slices.Sorted(maps.Keys(d.dirs))
	changed := false
	for i := len(dirs) - 1; i >= 0; i-- {
		ents, err := os.ReadDir(d.Path(dirs[i]))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if len(ents) > 0 {
			continue
		}
		if err := os.Remove(d.Path(dirs[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		delete(d.dirs, dirs[i])
		changed = true
	}
	if changed {
		return d.save()
	}
	return nil
}

func (d *OutDir) save() error {
	b, err := json.MarshalIndent(manifest{Meshext: manifestVersion, Dirs: slices.Sorted(maps.Keys(d.dirs)), Files: slices.Sorted(maps.Keys(d.files))}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d.Path(ManifestFile), append(b, '\n'), 0o644)
}

// removeTemps deletes the temp files writeFileAtomic leaves when interrupted
// (".<name>.tmp-*"), only where <name> is a listed file or the manifest.
func (d *OutDir) removeTemps() {
	dirs := append([]string{"."}, slices.Sorted(maps.Keys(d.dirs))...)
	for _, dir := range dirs {
		ents, _ := os.ReadDir(d.Path(dir))
		for _, e := range ents {
			base, ok := tempTarget(e.Name())
			if !ok || e.IsDir() {
				continue
			}
			target := filepath.Join(dir, base)
			if d.files[target] || target == ManifestFile {
				os.Remove(d.Path(filepath.Join(dir, e.Name())))
			}
		}
	}
}

// tempTarget is the file a temp name of writeFileAtomic stands for.
func tempTarget(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, ".tmp-")
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}
