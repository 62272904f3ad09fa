// Package bpf loads and attaches meshext's transparent-redirect eBPF
// programs (redirect.c): a workload cgroup's TCP connections to VIPs go to
// Envoy's transparent listener with SO_ORIGINAL_DST preserved, and its DNS
// goes to the embedded DNS server. Links and maps are pinned under
// <bpffs>/meshext/<name>/ so the redirect outlives the process that attached
// it and another process can change the maps live.
package bpf

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultBPFFS is where the BPF filesystem is normally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// progSide says which cgroup a program is attached to.
type progSide int

const (
	appSide progSide = iota
	proxySide
)

// attachment is one program attached to one cgroup, pinned as link_<pin>.
type attachment struct {
	pin  string
	prog string
	typ  ebpf.AttachType
	side progSide
}

// attachments lists every link; proxy side first, so no connection is
// redirected before the proxy side can hand over its original destination.
var attachments = []attachment{
	{pin: "proxy_sockops", prog: redirectProgMeshextSockopsPassive, typ: ebpf.AttachCGroupSockOps, side: proxySide},
	{pin: "proxy_getsockopt", prog: redirectProgMeshextGetsockopt, typ: ebpf.AttachCGroupGetsockopt, side: proxySide},
	{pin: "app_sockops", prog: redirectProgMeshextSockopsActive, typ: ebpf.AttachCGroupSockOps, side: appSide},
	{pin: "app_sock_release", prog: redirectProgMeshextSockRelease, typ: ebpf.AttachCgroupInetSockRelease, side: appSide},
	{pin: "app_getpeername4", prog: redirectProgMeshextGetpeername4, typ: ebpf.AttachCgroupInet4GetPeername, side: appSide},
	{pin: "app_getpeername6", prog: redirectProgMeshextGetpeername6, typ: ebpf.AttachCgroupInet6GetPeername, side: appSide},
	{pin: "app_recvmsg4", prog: redirectProgMeshextRecvmsg4, typ: ebpf.AttachCGroupUDP4Recvmsg, side: appSide},
	{pin: "app_sendmsg4", prog: redirectProgMeshextSendmsg4, typ: ebpf.AttachCGroupUDP4Sendmsg, side: appSide},
	{pin: "app_connect6", prog: redirectProgMeshextConnect6, typ: ebpf.AttachCGroupInet6Connect, side: appSide},
	{pin: "app_connect4", prog: redirectProgMeshextConnect4, typ: ebpf.AttachCGroupInet4Connect, side: appSide},
}

// Maps pinned by name in the pin directory, shared with later processes.
var pinnedMaps = []string{
	redirectMapVipCidrs, redirectMapCgroupProxy, redirectMapConfigMap, redirectMapCookieOrig,
	redirectMapTupleOrig, redirectMapSkOrig, redirectMapStats,
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Spec says what to attach and where.
type Spec struct {
	// Name identifies the attachment (the Dataplane name); pins go to
	// <BPFFS>/meshext/<Name>/.
	Name string
	// AppCgroup is the workload cgroup: absolute, or relative to the
	// cgroup v2 mount.
	AppCgroup string
	// ProxyCgroup is where Envoy creates its listener; "" is the cgroup v2
	// root, which answers SO_ORIGINAL_DST for a proxy anywhere on the node.
	ProxyCgroup string
	// Config is written into the maps before any program is attached.
	Config Config
	// BPFFS is the BPF filesystem; "" is /sys/fs/bpf (mounted if needed).
	BPFFS string
}

// PinDir is the directory holding the pins of an attachment.
func PinDir(bpffs, name string) string {
	if bpffs == "" {
		bpffs = DefaultBPFFS
	}
	return filepath.Join(bpffs, "meshext", name)
}

func checkName(name string) error {
	if !validName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("invalid name %q: use 1-63 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// Redirect is an open handle on an attachment's pinned maps; use it to change
// the configuration live. Close releases the handle, not the attachment.
type Redirect struct {
	Name string
	Dir  string

	vips        *ebpf.Map
	cgroupProxy *ebpf.Map
	config      *ebpf.Map
	stats       *ebpf.Map
}

// Attach loads the programs, writes spec.Config and attaches them with
// pinned bpf_links. It is idempotent: when a complete attachment with the
// same cgroups is already pinned, it only updates the configuration and
// reports attached=false. A partial or different attachment of the same name
// is replaced.
func Attach(spec Spec) (r *Redirect, attached bool, err error) {
	if err := checkName(spec.Name); err != nil {
		return nil, false, err
	}
	if err := spec.Config.Validate(); err != nil {
		return nil, false, err
	}
	mount, err := Preflight()
	if err != nil {
		return nil, false, err
	}
	appDir, err := ResolveCgroup(mount, spec.AppCgroup)
	if err != nil {
		return nil, false, fmt.Errorf("app cgroup: %w", err)
	}
	proxyDir, err := ResolveCgroup(mount, spec.ProxyCgroup)
	if err != nil {
		return nil, false, fmt.Errorf("proxy cgroup: %w", err)
	}
	if appDir == proxyDir {
		return nil, false, fmt.Errorf("app and proxy cgroup are both %s: Envoy must run outside the workload cgroup", appDir)
	}
	// Programs are inherited by descendant cgroups: a proxy below the app
	// cgroup would have its own upstream connections redirected to itself.
	if strings.HasPrefix(proxyDir, appDir+"/") && spec.Config.BypassUID == nil && spec.Config.BypassMark == nil {
		return nil, false, fmt.Errorf("proxy cgroup %s is inside the app cgroup %s: Envoy's own connections would be redirected (move it out, or set a bypass uid or mark)", proxyDir, appDir)
	}
	appID, err := CgroupID(appDir)
	if err != nil {
		return nil, false, err
	}
	proxyID, err := CgroupID(proxyDir)
	if err != nil {
		return nil, false, err
	}
	if err := ensureBPFFS(spec.BPFFS); err != nil {
		return nil, false, err
	}
	unlock, err := lockPins(spec.BPFFS)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	dir := PinDir(spec.BPFFS, spec.Name)

	if st, err := status(spec.BPFFS, spec.Name, false); err == nil && st.Complete() &&
		st.AppCgroupID == appID && st.ProxyCgroupID == proxyID {
		r, err := Open(spec.BPFFS, spec.Name)
		if err != nil {
			return nil, false, err
		}
		if err := r.SetConfig(spec.Config); err != nil {
			r.Close()
			return nil, false, err
		}
		return r, false, nil
	}
	// Whatever is pinned under this name is incomplete or points elsewhere.
	if err := detach(spec.BPFFS, spec.Name); err != nil {
		return nil, false, fmt.Errorf("replace previous attachment: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create pin directory: %w", err)
	}
	if err := load(spec, dir, appDir, proxyDir); err != nil {
		_ = detach(spec.BPFFS, spec.Name)
		return nil, false, err
	}
	r, err = Open(spec.BPFFS, spec.Name)
	if err != nil {
		_ = detach(spec.BPFFS, spec.Name)
		return nil, false, err
	}
	return r, true, nil
}

// load creates the maps (pinned), writes the configuration, then attaches
// and pins every link. The process's own fds close on return; the pins keep
// everything alive.
func load(spec Spec, dir, appDir, proxyDir string) error {
	cs, err := loadRedirect()
	if err != nil {
		return fmt.Errorf("parse embedded BPF object: %w", err)
	}
	for _, m := range pinnedMaps {
		cs.Maps[m].Pinning = ebpf.PinByName
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}})
	if err != nil {
		return explainLoadError(err)
	}
	defer coll.Close()

	r := &Redirect{vips: coll.Maps[redirectMapVipCidrs], cgroupProxy: coll.Maps[redirectMapCgroupProxy], config: coll.Maps[redirectMapConfigMap]}
	if err := r.SetConfig(spec.Config); err != nil {
		return err
	}
	for _, a := range attachments {
		cg := appDir
		if a.side == proxySide {
			cg = proxyDir
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: a.typ, Program: coll.Programs[a.prog]})
		if err != nil {
			return explainLoadError(fmt.Errorf("attach %s to %s: %w", a.prog, cg, err))
		}
		err = l.Pin(filepath.Join(dir, "link_"+a.pin))
		l.Close()
		if err != nil {
			return fmt.Errorf("pin link %s: %w (the kernel needs bpf_link support for cgroups, Linux >= 5.7)", a.pin, err)
		}
	}
	return nil
}

// explainLoadError adds what the user can do to the kernel's terse errors.
func explainLoadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("%w (the kernel's verifier rejected a program: kernel too old or a program bug)", err)
	case errors.Is(err, btf.ErrNotSupported):
		return fmt.Errorf("%w (the kernel cannot load BTF, which the socket-storage map needs)", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (%v; inside a container, seccomp or a read-only cgroup filesystem also cause this)", err, ErrPrivilege)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%w (cgroup or BPF filesystem is read-only)", err)
	}
	return err
}

// Open opens the pinned maps of an existing attachment.
func Open(bpffs, name string) (*Redirect, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir := PinDir(bpffs, name)
	r := &Redirect{Name: name, Dir: dir}
	var err error
	open := func(m string) *ebpf.Map {
		if err != nil {
			return nil
		}
		var mp *ebpf.Map
		mp, err = ebpf.LoadPinnedMap(filepath.Join(dir, m), nil)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("no redirect named %q is attached (%s missing)", name, filepath.Join(dir, m))
			} else {
				err = fmt.Errorf("open pinned map %s: %w", m, err)
			}
		}
		return mp
	}
	r.vips = open(redirectMapVipCidrs)
	r.cgroupProxy = open(redirectMapCgroupProxy)
	r.config = open(redirectMapConfigMap)
	r.stats = open(redirectMapStats)
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the map handles; the attachment stays.
func (r *Redirect) Close() error {
	for _, m := range []*ebpf.Map{r.vips, r.cgroupProxy, r.config, r.stats} {
		if m != nil {
			m.Close()
		}
	}
	return nil
}

// SetConfig replaces the whole runtime configuration.
func (r *Redirect) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	rc := encodeConfig(c)
	if err := r.config.Put(uint32(0), &rc); err != nil {
		return fmt.Errorf("write config map: %w", err)
	}
	if err := r.setCgroupProxies(c.CgroupProxies); err != nil {
		return err
	}
	return r.SetVIPs(c.VIPs)
}

// SetCgroupProxy gives one workload cgroup (a directory on the cgroup v2
// mount) its own proxy listener; the zero AddrPort removes it again.
func (r *Redirect) SetCgroupProxy(cgroupDir string, proxy netip.AddrPort) error {
	id, err := CgroupID(cgroupDir)
	if err != nil {
		return err
	}
	if !proxy.IsValid() {
		if err := r.cgroupProxy.Delete(&id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete proxy of cgroup %s: %w", cgroupDir, err)
		}
		return nil
	}
	if err := (Config{CgroupProxies: map[uint64]netip.AddrPort{id: proxy}}).Validate(); err != nil {
		return err
	}
	v := proxyTarget(proxy)
	if err := r.cgroupProxy.Put(&id, &v); err != nil {
		return fmt.Errorf("write proxy of cgroup %s: %w", cgroupDir, err)
	}
	return nil
}

// setCgroupProxies makes the per-cgroup map hold exactly m.
func (r *Redirect) setCgroupProxies(m map[uint64]netip.AddrPort) error {
	for id, p := range m {
		v := proxyTarget(p)
		if err := r.cgroupProxy.Put(&id, &v); err != nil {
			return fmt.Errorf("write proxy of cgroup %d: %w", id, err)
		}
	}
	var stale []uint64
	var id uint64
	var v redirectProxyTarget
	it := r.cgroupProxy.Iterate()
	for it.Next(&id, &v) {
		if _, ok := m[id]; !ok {
			stale = append(stale, id)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read per-cgroup proxies: %w", err)
	}
	for _, id := range stale {
		if err := r.cgroupProxy.Delete(&id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete proxy of cgroup %d: %w", id, err)
		}
	}
	return nil
}

// SetVIPs makes the VIP map hold exactly routes: new ones are added first,
// stale ones removed after, so a changed route never has a gap.
func (r *Redirect) SetVIPs(routes []VIPRoute) error {
	if err := (Config{VIPs: routes}).Validate(); err != nil {
		return err
	}
	want := map[redirectVipKey]bool{}
	for _, rt := range routes {
		k := vipKey(rt.CIDR)
		v := proxyTarget(rt.Proxy)
		if err := r.vips.Put(&k, &v); err != nil {
			return fmt.Errorf("write VIP %s: %w", rt, err)
		}
		want[k] = true
	}
	var stale []redirectVipKey
	var k redirectVipKey
	var v redirectProxyTarget
	it := r.vips.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read VIP map: %w", err)
	}
	for _, k := range stale {
		if err := r.vips.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete stale VIP: %w", err)
		}
	}
	return nil
}

// SetDNS points the DNS redirect at target; the zero value turns it off.
func (r *Redirect) SetDNS(target netip.AddrPort) error {
	c, err := r.Config()
	if err != nil {
		return err
	}
	c.DNS = target
	if err := c.Validate(); err != nil {
		return err
	}
	rc := encodeConfig(c)
	return r.config.Put(uint32(0), &rc)
}

// Config reads the configuration back from the maps.
func (r *Redirect) Config() (Config, error) {
	var rc redirectConfig
	if err := r.config.Lookup(uint32(0), &rc); err != nil {
		return Config{}, fmt.Errorf("read config map: %w", err)
	}
	var vips []VIPRoute
	var k redirectVipKey
	var v redirectProxyTarget
	it := r.vips.Iterate()
	for it.Next(&k, &v) {
		vips = append(vips, vipFromEntry(k, v))
	}
	if err := it.Err(); err != nil {
		return Config{}, fmt.Errorf("read VIP map: %w", err)
	}
	sortVIPs(vips)
	c := decodeConfig(rc, vips)
	var id uint64
	var t redirectProxyTarget
	cit := r.cgroupProxy.Iterate()
	for cit.Next(&id, &t) {
		if c.CgroupProxies == nil {
			c.CgroupProxies = map[uint64]netip.AddrPort{}
		}
		c.CgroupProxies[id] = targetAddrPort(t)
	}
	if err := cit.Err(); err != nil {
		return Config{}, fmt.Errorf("read per-cgroup proxies: %w", err)
	}
	return c, nil
}

// Stats reads the counters, summed over CPUs.
func (r *Redirect) Stats() (Stats, error) {
	if r.stats == nil {
		return Stats{}, errors.New("stats map not open")
	}
	n := int(r.stats.MaxEntries())
	sums := make([]uint64, n)
	per := make([]uint64, runtime.NumCPU())
	for i := 0; i < n; i++ {
		if err := r.stats.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	return statsFromSlots(sums)
}

// Detach removes an attachment: every link is detached from its cgroup (even
// if another process still holds it open) and every pin is removed. Detaching
// something that is not attached is not an error.
func Detach(bpffs, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := os.Stat(PinDir(bpffs, name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := lockPins(bpffs)
	if err != nil {
		return err
	}
	defer unlock()
	return detach(bpffs, name)
}

// lockPins serializes Attach and Detach across processes with a flock on
// <bpffs>/meshext, waiting at most 10 s.
func lockPins(bpffs string) (unlock func(), err error) {
	root := filepath.Dir(PinDir(bpffs, "x"))
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", root, err)
	}
	f, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (another meshext redirect attach/detach running?): %w", root, err)
		}
	}
}

func detach(bpffs, name string) error {
	dir := PinDir(bpffs, name)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if l, err := link.LoadPinnedLink(p, nil); err == nil {
			if err := l.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) {
				errs = append(errs, fmt.Errorf("detach %s: %w", e.Name(), err))
			}
			l.Close()
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin %s: %w", p, err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// ensureBPFFS mounts the BPF filesystem at path when nothing is mounted
// there yet (as bpftool does), so pins survive this process.
func ensureBPFFS(path string) error {
	if path == "" {
		path = DefaultBPFFS
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("BPF filesystem at %s: %w", path, err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount the BPF filesystem at %s: %w", path, err)
	}
	return nil
}
