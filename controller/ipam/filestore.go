package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/meshext/meshext/controller/inputfile"
)

const (
	stateFile = "ipam.json"
	lockFile  = "ipam.lock"
)

// fileStore keeps the state in <dir>/ipam.json, locked with flock on
// <dir>/ipam.lock.
type fileStore struct {
	dir string
	// loaded identifies the file version last read or written, to skip
	// re-reading an unchanged file.
	loaded os.FileInfo
}

func (f *fileStore) path() string { return filepath.Join(f.dir, stateFile) }

// Lock takes an exclusive flock on the state directory's lock file.
func (f *fileStore) Lock() (func(), error) {
	lf, err := os.OpenFile(filepath.Join(f.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("ipam: lock %s: %w", lf.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		lf.Close()
	}, nil
}

// Load reads the state file; a missing or unchanged file is nil.
func (f *fileStore) Load() (*State, error) {
	fi, err := os.Stat(f.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if f.loaded != nil && os.SameFile(f.loaded, fi) && f.loaded.ModTime().Equal(fi.ModTime()) && f.loaded.Size() == fi.Size() {
		return nil, nil // every save renames a new file into place, so same inode = same content
	}
	// Never blocks on a planted FIFO; 1 GiB holds millions of leases.
	data, err := inputfile.Read(f.path(), 1<<30)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("ipam: state file %s is corrupt (%v); move it away to start afresh, which gives every service a new VIP", f.path(), err)
	}
	if st.Version != Version {
		return nil, fmt.Errorf("ipam: state file %s has version %d, this meshext reads version %d", f.path(), st.Version, Version)
	}
	f.loaded = fi
	return &st, nil
}

// Save writes the state atomically: temp file in the same directory, fsync,
// rename, fsync of the directory. After a failure the next Load re-reads
// the file, since the caller's copy then holds what was not saved.
func (f *fileStore) Save(st *State) (err error) {
	defer func() {
		if err != nil {
			f.loaded = nil
		}
	}()
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	tmp, err := os.CreateTemp(f.dir, "."+stateFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path()); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	if fi, err := os.Stat(f.path()); err == nil {
		f.loaded = fi
	}
	if d, err := os.Open(f.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
