package bpf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MinKernel is the oldest kernel this design works on: 5.10 brought
// bpf_sock_ops->sk, which the proxy-side sockops needs to move the original
// destination into the accepted socket's storage.
var MinKernel = [2]int{5, 10}

// ErrPrivilege says the caller cannot load and attach cgroup BPF programs.
var ErrPrivilege = errors.New("cgroup BPF needs root, or CAP_BPF+CAP_NET_ADMIN (kernel >= 5.8; CAP_SYS_ADMIN before)")

// CheckPrivileges fails with ErrPrivilege unless the process holds
// CAP_SYS_ADMIN, or CAP_BPF together with CAP_NET_ADMIN. It runs before
// anything touches BPF so the user sees this message rather than a
// misleading MEMLOCK hint from the loader.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(uint(c)%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_NET_ADMIN)) {
		return nil
	}
	return ErrPrivilege
}

// CheckKernel fails when the running kernel is older than MinKernel.
func CheckKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	major, minor, ok := parseKernelRelease(rel)
	if !ok {
		return fmt.Errorf("cannot parse kernel release %q", rel)
	}
	if major < MinKernel[0] || (major == MinKernel[0] && minor < MinKernel[1]) {
		return fmt.Errorf("kernel %s is too old: the transparent redirect needs Linux >= %d.%d", rel, MinKernel[0], MinKernel[1])
	}
	return nil
}

func parseKernelRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err2 := strconv.Atoi(minorStr)
	return major, minor, err1 == nil && err2 == nil
}

// Preflight runs every check Attach needs before touching BPF and returns
// the cgroup v2 mount.
func Preflight() (string, error) {
	if err := CheckPrivileges(); err != nil {
		return "", err
	}
	if err := CheckKernel(); err != nil {
		return "", err
	}
	return Cgroup2Mount()
}
