package xds

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
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
//     once so the renames survive a crash (CommitBatches: once per batch).
//
// A crash before the renames leaves only temp files, which OpenOutDir
// removes; a crash during them leaves every target old or new. Not safe for
// concurrent use.
type Batch struct {
	d        *OutDir
	pending  []pendingFile
	prepared map[string]bool // parent directories made sure of (see OutDir.prepare)
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
	if dir := path.Dir(rel); !b.prepared[dir] {
		if err := b.d.prepare(rel); err != nil {
			return err
		}
		if b.prepared == nil {
			b.prepared = map[string]bool{}
		}
		b.prepared[dir] = true
	} else if !b.d.files[rel] {
		return fmt.Errorf("%s: not claimed", b.d.Path(rel))
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
	return CommitBatches(func(_ int, rel string) {
		if renamed != nil {
			renamed(rel)
		}
	}, b)
}

// CommitBatches commits several batches with one durable sync for all:
// every temp is made durable first, then the batches are renamed one after
// the other, each in its order. renamed (when set) sees each file once it
// is in place, with the index of its batch. On an error no later file is
// renamed, and every temp not renamed is removed.
func CommitBatches(renamed func(batch int, rel string), batches ...*Batch) error {
	defer func() {
		for _, b := range batches {
			b.Abort() // the temps of files not renamed
		}
	}()
	seen := map[string]bool{}
	var dirs []string
	for _, b := range batches {
		for _, p := range b.pending {
			if dir := filepath.Dir(p.tmp); !seen[dir] {
				seen[dir] = true
				dirs = append(dirs, dir)
			}
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	if err := syncFileSystems(dirs); err != nil {
		return err
	}
	for bi, b := range batches {
		if len(b.pending) == 0 {
			continue
		}
		touched := map[string]bool{}
		for i, p := range b.pending {
			// rename(2), not os.Rename, which first stats the target.
			if err := unix.Rename(p.tmp, b.d.Path(p.rel)); err != nil {
				b.pending = b.pending[i:]
				return &os.LinkError{Op: "rename", Old: p.tmp, New: b.d.Path(p.rel), Err: err}
			}
			touched[filepath.Dir(p.tmp)] = true
			if renamed != nil {
				renamed(bi, p.rel)
			}
		}
		b.pending = nil
		// The renames of a batch are durable before the next batch's begin,
		// so a crash never keeps a later step without an earlier one (and
		// Envoy's watches see the steps apart, as with one file at a time).
		var errs []error
		for _, dir := range dirs {
			if touched[dir] {
				errs = append(errs, syncDir(dir))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
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
func writeTemp(target string, mode os.FileMode, write func(io.Writer) error) (string, error) {
	// Raw system calls: an *os.File costs a handful more per file (non-blocking
	// set-up, a poller registration), which at 10k files is most of the time
	// outside the kernel's own inode creation.
	dir, base := filepath.Split(target)
	var tmp string
	fd := -1
	for try := 0; ; try++ {
		tmp = filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
		var err error
		fd, err = unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == nil {
			break
		}
		if err != unix.EEXIST || try >= 100 {
			return "", &os.PathError{Op: "open", Path: tmp, Err: err}
		}
	}
	f := rawFile{fd}
	fail := func(err error) (string, error) {
		unix.Close(fd)
		os.Remove(tmp)
		return "", err
	}
	// The mode is set before any byte is written (open's mode is masked by the umask).
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fail(&os.PathError{Op: "chmod", Path: tmp, Err: err})
	}
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(f)
	err := write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	if err != nil {
		return fail(err)
	}
	if err := unix.Close(fd); err != nil {
		os.Remove(tmp)
		return "", &os.PathError{Op: "close", Path: tmp, Err: err}
	}
	return tmp, nil
}

// rawFile writes to a file descriptor.
type rawFile struct{ fd int }

func (f rawFile) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(f.fd, p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}
