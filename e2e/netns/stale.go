package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/meshext/meshext/bpf"
	"github.com/meshext/meshext/bpf/bpftest"
)

// staleName matches the namespaces (and /etc/netns entries) this package
// makes; the number is the pid of the test process that made them.
var staleName = regexp.MustCompile(`^` + regexp.QuoteMeta(namePrefix) + `([0-9]+)-`)

// RemoveStale deletes what test runs that were killed left behind: network
// namespaces and /etc/netns entries named by this package, and bpftest
// cgroups (bpftest.RemoveStaleCgroups), whose test process is gone.
// Anything of a live process, another engineer's run included, stays. It
// returns what it removed. New calls it once per test binary.
func RemoveStale() ([]string, error) {
	var removed []string
	var errs []error
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, errors.New("ip (Debian package iproute2) not found")
	}
	names := map[string]bool{}
	for _, dir := range []string{"/run/netns", "/etc/netns"} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, e := range entries {
			m := staleName.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			if pid, err := strconv.Atoi(m[1]); err == nil && !bpftest.Alive(pid) {
				names[e.Name()] = true
			}
		}
	}
	for name := range names {
		if err := removeNS(ip, name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		removed = append(removed, "netns "+name)
	}
	if mount, err := bpf.Cgroup2Mount(); err == nil {
		cgs, err := bpftest.RemoveStaleCgroups(mount)
		errs = append(errs, err)
		for _, c := range cgs {
			removed = append(removed, "cgroup "+filepath.Base(c))
		}
	}
	return removed, errors.Join(errs...)
}
