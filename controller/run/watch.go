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

// newWatcher watches dir and its subdirectories. It is made before the
// first load, so no change after that load can go unnoticed.
func newWatcher(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := addTree(w, dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return w, nil
}

// watch sends on changed after each burst of relevant events in the watched
// tree has been quiet for debounce, and closes w when ctx ends. Editors'
// temp and hidden files are not relevant; partial writes are absorbed by the
// debounce and, failing that, by the pipeline keeping the file's last good
// version.
func watch(ctx context.Context, w *fsnotify.Watcher, debounce time.Duration, changed chan<- struct{}, logf func(msg string, args ...any)) error {
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && !hidden(ev.Name) {
					// A new subdirectory: watch it, and reload for files already in it.
					if err := addTree(w, ev.Name); err != nil {
						logf("cannot watch new directory", "dir", ev.Name, "error", err)
					}
					timer.Reset(debounce)
					continue
				}
			}
			if relevant(ev) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			// Overflow and friends: events were lost, so reload to be safe.
			logf("file watch error; reloading", "error", err)
			timer.Reset(debounce)
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

// addTree watches dir and every non-hidden directory below it.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && hidden(path) {
			return filepath.SkipDir
		}
		return w.Add(path)
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
	if err := w.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
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
