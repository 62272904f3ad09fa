package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Cgroup2Mount finds where the cgroup v2 hierarchy is mounted. Hybrid hosts
// (v1 controllers plus v2 at /sys/fs/cgroup/unified) and pure v2 hosts both
// work; the answer comes from /proc/self/mountinfo, checked with statfs.
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if mp, ok := cgroup2MountPoint(sc.Text()); ok && isCgroup2(mp) {
			return mp, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: read mountinfo: %w", err)
	}
	return "", errors.New("no cgroup v2 (cgroup2) filesystem is mounted; mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`")
}

// cgroup2MountPoint parses one mountinfo line ("36 35 0:30 / /sys/fs/cgroup/unified rw ... - cgroup2 cgroup2 rw").
func cgroup2MountPoint(line string) (string, bool) {
	before, after, ok := strings.Cut(line, " - ")
	if !ok {
		return "", false
	}
	post := strings.Fields(after)
	pre := strings.Fields(before)
	if len(post) < 1 || post[0] != "cgroup2" || len(pre) < 5 {
		return "", false
	}
	return unescapeMountinfo(pre[4]), true
}

// unescapeMountinfo undoes the octal escapes (\040 for space) mountinfo uses.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// ResolveCgroup turns a cgroup given on the command line into an absolute
// directory on the cgroup v2 mount: an absolute path inside the mount is
// used as is, anything else is taken relative to the mount ("" or "/" is the
// root cgroup).
func ResolveCgroup(mount, path string) (string, error) {
	var abs string
	switch {
	case path == "" || path == "/":
		abs = mount
	case filepath.IsAbs(path) && (path == mount || strings.HasPrefix(path, mount+"/")):
		abs = filepath.Clean(path)
	default:
		// "/x/y" is taken as /proc/self/cgroup spells it (relative to the
		// mount) unless it names an existing directory elsewhere.
		if filepath.IsAbs(path) {
			if st, err := os.Stat(path); err == nil && st.IsDir() {
				return "", fmt.Errorf("%s is not a cgroup v2 directory (cgroup v2 is mounted at %s)", path, mount)
			}
		}
		abs = filepath.Join(mount, strings.TrimPrefix(path, "/"))
	}
	rel, err := filepath.Rel(mount, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("cgroup %q is outside the cgroup v2 mount %s", path, mount)
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("cgroup %s does not exist (create it with `mkdir %s`)", abs, abs)
		}
		return "", fmt.Errorf("cgroup %s: %w", abs, err)
	}
	if !st.IsDir() || !isCgroup2(abs) {
		return "", fmt.Errorf("%s is not a cgroup v2 directory", abs)
	}
	return abs, nil
}

// CgroupID is the kernel's id of a cgroup v2 directory (its inode number),
// the value bpf_link info reports.
func CgroupID(dir string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	return st.Ino, nil
}

// cgroupPathByID finds the directory of a cgroup id under mount, looking at
// no more than maxDirs directories. "" means not found (e.g. removed).
func cgroupPathByID(mount string, id uint64) string {
	const maxDirs = 20000
	seen := 0
	found := ""
	errStop := errors.New("stop")
	_ = filepath.WalkDir(mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if seen++; seen > maxDirs {
			return errStop
		}
		if got, err := CgroupID(p); err == nil && got == id {
			found = p
			return errStop
		}
		return nil
	})
	return found
}

// CurrentCgroup is the cgroup v2 directory of this process.
func CurrentCgroup(mount string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mount, rest), nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}
