package run

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/meshext/meshext/controller/resource"
)

// dirWatcher follows the drop directory: the tree below it, and its parent,
// so that the directory being removed, renamed away, replaced by a rename or
// a symlink swap, or recreated is noticed too.
type dirWatcher struct {
	w      *fsnotify.Watcher
	dir    string // cleaned
	parent string // "" when the parent cannot be watched (polling covers it)
}

// MissingDirPoll is how often a missing drop directory is looked for, as a
// backstop to the parent-directory watch.
const MissingDirPoll = time.Second

// newWatcher watches dir and its subdirectories. It is made before the
// first load, so no change after that load can go unnoticed.
func newWatcher(dir string) (*dirWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	d := &dirWatcher{w: w, dir: filepath.Clean(dir)}
	if err := addTree(w, d.dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	if abs, err := filepath.Abs(d.dir); err == nil && filepath.Dir(abs) != abs {
		if w.Add(filepath.Dir(abs)) == nil {
			d.parent = filepath.Dir(abs)
		}
	}
	return d, nil
}

func (d *dirWatcher) Close() error { return d.w.Close() }

// rewatch drops every watch below the old directory and watches the tree now
// at the path. It fails while the directory is missing.
func (d *dirWatcher) rewatch() error {
	for _, p := range d.w.WatchList() {
		if p != d.parent {
			_ = d.w.Remove(p) // already gone with its directory is fine
		}
	}
	return addTree(d.w, d.dir)
}

// isDir reports whether ev is about the drop directory itself.
func (d *dirWatcher) isDir(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if name == d.dir {
		return true
	}
	abs, err := filepath.Abs(d.dir)
	return err == nil && name == abs
}

// inTree reports whether path is below the drop directory (the parent's
// watch also reports the drop directory's siblings, which are not ours).
func (d *dirWatcher) inTree(path string) bool {
	rel, err := filepath.Rel(d.dir, filepath.Clean(path))
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// watch sends on changed after each burst of relevant events in the watched
// tree has been quiet for debounce, and closes the watcher when ctx ends.
// Editors' temp and hidden files are not relevant; partial writes are
// absorbed by the debounce and, failing that, by the pipeline keeping the
// file's last good version. While the drop directory is missing it is
// looked for every MissingDirPoll; its return is a change like any other.
func watch(ctx context.Context, d *dirWatcher, debounce time.Duration, changed chan<- struct{}, logf func(msg string, args ...any)) error {
	defer d.Close()
	w := d.w
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	poll := time.NewTicker(MissingDirPoll)
	defer poll.Stop()
	missing := false
	lost := func() {
		if !missing {
			logf("drop directory missing; serving the last good config until it is back", "dir", d.dir)
		}
		missing = true
		timer.Reset(debounce) // the reload reports the gap in /status
	}
	found := func() {
		if err := d.rewatch(); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				logf("cannot watch the drop directory", "dir", d.dir, "error", err)
			}
			lost()
			return
		}
		if missing {
			logf("drop directory is back", "dir", d.dir)
		}
		missing = false
		timer.Reset(debounce)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			switch {
			case d.isDir(ev):
				// Removed, renamed away, recreated, or replaced by a rename or
				// a symlink swap: watch whatever is at the path now.
				if ev.Has(fsnotify.Create) {
					found()
				} else if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					if _, err := os.Stat(d.dir); err != nil {
						lost()
					} else {
						found()
					}
				}
			case !d.inTree(ev.Name):
				// A sibling of the drop directory, seen through the parent's watch.
			case ev.Has(fsnotify.Create):
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && !hidden(ev.Name) {
					// A new subdirectory: watch it, and reload for files already in it.
					if err := addTree(w, ev.Name); err != nil {
						logf("cannot watch new directory", "dir", ev.Name, "error", err)
					}
					timer.Reset(debounce)
				} else if relevant(ev) {
					timer.Reset(debounce)
				}
			case relevant(ev):
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			// Overflow and friends: events were lost, so reload to be safe.
			logf("file watch error; reloading", "error", err)
			timer.Reset(debounce)
		case <-poll.C:
			if missing {
				if _, err := os.Stat(d.dir); err == nil {
					found()
				}
			}
		case <-timer.C:
			select {
			case changed <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}
}

func relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if resource.IsResourceFile(ev.Name) {
		return true
	}
	// A mounted Kubernetes ConfigMap or Secret changes by swapping the
	// "..data" symlink; the visible files are symlinks through it and never
	// change themselves.
	if filepath.Base(ev.Name) == "..data" {
		return true
	}
	// A removed or renamed directory takes its files with it.
	return (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) && filepath.Ext(ev.Name) == "" && !hidden(ev.Name)
}

func hidden(path string) bool { return strings.HasPrefix(filepath.Base(path), ".") }

// addTree watches dir and every non-hidden directory below it. A dir that
// is a symlink is followed.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(resource.WalkRoot(dir), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if filepath.Clean(path) != filepath.Clean(dir) && hidden(path) {
			return filepath.SkipDir
		}
		return w.Add(filepath.Clean(path))
	})
}

// watchFile calls reload after the file at path changed (written in place or
// replaced by rename), debounced. It watches the directory, since an atomic
// replace gives the path a new inode.
func watchFile(ctx context.Context, path string, debounce time.Duration, reload func(), logf func(msg string, args ...any)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		// Gone since it was read: not fatal, it is looked for below.
		logf("cannot watch the file's directory; looking for it every second", "file", path, "error", err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// The directory's watch ends when the directory is removed or renamed;
	// until one can be set again, the directory is looked for.
	poll := time.NewTicker(MissingDirPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			if filepath.Clean(ev.Name) == filepath.Clean(path) && ev.Op != fsnotify.Chmod {
				timer.Reset(debounce)
			}
		case <-poll.C:
			if len(w.WatchList()) == 0 && w.Add(dir) == nil {
				timer.Reset(debounce) // the file may have changed while unwatched
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			logf("file watch error", "file", path, "error", err)
			timer.Reset(debounce)
		case <-timer.C:
			reload()
		}
	}
}
