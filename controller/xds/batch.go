package xds

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Batch replaces many claimed files of an OutDir with one durable sync for
// all of them instead of one per file (10k SDS files took seconds of fsync
// alone). Each file still goes through a temp file in its own directory and
// a rename, so a reader sees the old or the new content, never a torn file:
//
//  1. Add writes the content to ".<name>.tmp-*" (mode set first) and closes it;
//  2. Commit makes every temp durable with one syncfs per file system, then
//     renames them in the order they were added, then fsyncs each directory
//     once so the renames survive a crash.
//
// A crash before the renames leaves only temp files, which OpenOutDir
// removes; a crash during them leaves every target old or new. Not safe for
// concurrent use.
type Batch struct {
	d       *OutDir
	pending []pendingFile
}

type pendingFile struct {
	rel, tmp string
}

// NewBatch starts an empty batch.
func (d *OutDir) NewBatch() *Batch { return &Batch{d: d} }

// Len is the number of files added and not yet committed.
func (b *Batch) Len() int { return len(b.pending) }

// Add writes data for rel (which must have been claimed) into a temp file;
// rel is replaced only by Commit. A parent meshext created and someone
// removed since is created again.
func (b *Batch) Add(rel string, data []byte, mode os.FileMode) error {
	return b.AddFunc(rel, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// AddFunc is Add with the content written by write (buffered), so a large
// file need not be held in memory.
func (b *Batch) AddFunc(rel string, mode os.FileMode, write func(io.Writer) error) error {
	if err := b.d.prepare(rel); err != nil {
		return err
	}
	tmp, err := writeTemp(b.d.Path(rel), mode, write)
	if err != nil {
		return err
	}
	b.pending = append(b.pending, pendingFile{rel: rel, tmp: tmp})
	return nil
}

// Abort removes the temp files of a batch that will not be committed.
func (b *Batch) Abort() {
	for _, p := range b.pending {
		os.Remove(p.tmp)
	}
	b.pending = nil
}

// Commit syncs and renames every added file in order; renamed (when set)
// sees each rel once it is in place. On an error the files not renamed
// keep their old content and their temps are removed.
func (b *Batch) Commit(renamed func(rel string)) error {
	if len(b.pending) == 0 {
		return nil
	}
	defer b.Abort() // the temps of files not renamed
	dirs := map[string]bool{}
	var order []string
	for _, p := range b.pending {
		dir := filepath.Dir(p.tmp)
		if !dirs[dir] {
			dirs[dir] = true
			order = append(order, dir)
		}
	}
	if err := syncFileSystems(order); err != nil {
		return err
	}
	for i, p := range b.pending {
		if err := os.Rename(p.tmp, b.d.Path(p.rel)); err != nil {
			b.pending = b.pending[i:]
			return err
		}
		if renamed != nil {
			renamed(p.rel)
		}
	}
	b.pending = nil
	var errs []error
	for _, dir := range order {
		errs = append(errs, syncDir(dir))
	}
	return errors.Join(errs...)
}

// syncFileSystems makes the data of every file under dirs durable: one
// syncfs per file system they are on (a directory can be a mount point).
func syncFileSystems(dirs []string) error {
	seen := map[uint64]bool{}
	for _, dir := range dirs {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return err
		}
		if seen[st.Dev] {
			continue
		}
		seen[st.Dev] = true
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		// syncfs reports writeback errors of the file system since Linux 5.8.
		err = unix.Syncfs(fd)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("syncfs %s: %w", dir, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writerPool holds the buffers of writeTemp: a batch writes thousands of
// small files.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// writeTemp writes data into a new temp file beside path (a rename across
// file systems is a copy), mode set before any byte is written, and returns
// its name. The name starts with '.', which file watchers here ignore, and
// tempTarget maps it back to path's base name.
func writeTemp(path string, mode os.FileMode, write func(io.Writer) error) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(f)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}
