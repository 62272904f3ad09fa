package bpf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf/link"
)

// LinkStatus describes one pinned link.
type LinkStatus struct {
	Pin      string // e.g. "app_connect4"
	LinkID   link.ID
	CgroupID uint64 // 0 once the cgroup has been removed
	Cgroup   string // directory of CgroupID, "" if not found
}

// AttachStatus describes one named attachment as found in the pins.
type AttachStatus struct {
	Name          string
	Dir           string
	Links         []LinkStatus
	Missing       []string // expected links that are not pinned
	AppCgroupID   uint64
	ProxyCgroupID uint64
	AppCgroup     string
	ProxyCgroup   string
	Config        Config
	Stats         Stats
	Problems      []string

	cgroupPaths map[uint64]string // for CgroupProxies, filled by Status
}

// Complete reports whether every program is attached to a live cgroup.
func (s AttachStatus) Complete() bool {
	return len(s.Missing) == 0 && len(s.Problems) == 0 && len(s.Links) == len(attachments)
}

// Status inspects the pins of one attachment. A missing attachment is an
// error wrapping fs.ErrNotExist.
func Status(bpffs, name string) (AttachStatus, error) {
	return status(bpffs, name, true)
}

// status reads the pins; resolvePaths also maps cgroup ids to directories
// (a walk of the cgroup tree, which Attach does not need).
func status(bpffs, name string, resolvePaths bool) (AttachStatus, error) {
	if err := checkName(name); err != nil {
		return AttachStatus{}, err
	}
	dir := PinDir(bpffs, name)
	st := AttachStatus{Name: name, Dir: dir}
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, fmt.Errorf("no redirect named %q is attached: %w", name, err)
		}
		return st, err
	}
	mount := ""
	if resolvePaths {
		mount, _ = Cgroup2Mount()
	}
	for _, a := range attachments {
		p := filepath.Join(dir, "link_"+a.pin)
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			st.Missing = append(st.Missing, a.pin)
			continue
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			st.Problems = append(st.Problems, fmt.Sprintf("%s: %v", a.pin, err))
			continue
		}
		ls := LinkStatus{Pin: a.pin, LinkID: info.ID}
		if cg := info.Cgroup(); cg != nil {
			ls.CgroupID = cg.CgroupId
		}
		if ls.CgroupID == 0 {
			st.Problems = append(st.Problems, a.pin+": its cgroup was removed")
		}
		want := &st.AppCgroupID
		if a.side == proxySide {
			want = &st.ProxyCgroupID
		}
		switch {
		case *want == 0:
			*want = ls.CgroupID
		case *want != ls.CgroupID:
			st.Problems = append(st.Problems, a.pin+": attached to a different cgroup than its siblings")
		}
		st.Links = append(st.Links, ls)
	}
	if mount != "" {
		st.AppCgroup = cgroupPathByID(mount, st.AppCgroupID)
		st.ProxyCgroup = cgroupPathByID(mount, st.ProxyCgroupID)
		// A removed cgroup keeps its id in the links until the kernel
		// releases it, so look for the directory too.
		if st.AppCgroupID != 0 && st.AppCgroup == "" {
			st.Problems = append(st.Problems, fmt.Sprintf("app cgroup (id %d) no longer exists", st.AppCgroupID))
		}
		if st.ProxyCgroupID != 0 && st.ProxyCgroup == "" {
			st.Problems = append(st.Problems, fmt.Sprintf("proxy cgroup (id %d) no longer exists", st.ProxyCgroupID))
		}
		for i := range st.Links {
			if st.Links[i].CgroupID == st.AppCgroupID {
				st.Links[i].Cgroup = st.AppCgroup
			} else if st.Links[i].CgroupID == st.ProxyCgroupID {
				st.Links[i].Cgroup = st.ProxyCgroup
			}
		}
	}
	if r, err := Open(bpffs, name); err != nil {
		st.Problems = append(st.Problems, err.Error())
	} else {
		if c, err := r.Config(); err == nil {
			st.Config = c
			if mount != "" && len(c.CgroupProxies) > 0 {
				st.cgroupPaths = map[uint64]string{}
				for id := range c.CgroupProxies {
					st.cgroupPaths[id] = cgroupPathByID(mount, id)
				}
			}
		} else {
			st.Problems = append(st.Problems, err.Error())
		}
		if s, err := r.Stats(); err == nil {
			st.Stats = s
		} else {
			st.Problems = append(st.Problems, err.Error())
		}
		r.Close()
	}
	return st, nil
}

// List names the attachments pinned under bpffs.
func List(bpffs string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Dir(PinDir(bpffs, "x")))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && validName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// String renders a status for people.
func (s AttachStatus) String() string {
	var b strings.Builder
	state := "attached"
	if !s.Complete() {
		state = "BROKEN (run detach, then attach again)"
	}
	fmt.Fprintf(&b, "%s: %s\n", s.Name, state)
	fmt.Fprintf(&b, "  pins:         %s\n", s.Dir)
	fmt.Fprintf(&b, "  app cgroup:   %s (id %d)\n", orUnknown(s.AppCgroup), s.AppCgroupID)
	fmt.Fprintf(&b, "  proxy cgroup: %s (id %d)\n", orUnknown(s.ProxyCgroup), s.ProxyCgroupID)
	for _, v := range s.Config.VIPs {
		fmt.Fprintf(&b, "  vip:          %s -> %s\n", v.CIDR, v.Proxy)
	}
	ids := make([]uint64, 0, len(s.Config.CgroupProxies))
	for id := range s.Config.CgroupProxies {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		fmt.Fprintf(&b, "  cgroup proxy: %s (id %d) -> %s\n", orUnknown(s.cgroupPaths[id]), id, s.Config.CgroupProxies[id])
	}
	if s.Config.DNS.IsValid() {
		fmt.Fprintf(&b, "  dns:          udp/53 -> %s\n", s.Config.DNS)
	} else {
		fmt.Fprintf(&b, "  dns:          not redirected\n")
	}
	if s.Config.BypassUID != nil {
		fmt.Fprintf(&b, "  bypass uid:   %d\n", *s.Config.BypassUID)
	}
	if s.Config.BypassMark != nil {
		fmt.Fprintf(&b, "  bypass mark:  %#x\n", *s.Config.BypassMark)
	}
	fmt.Fprintf(&b, "  links:        %d of %d\n", len(s.Links), len(attachments))
	for _, m := range s.Missing {
		fmt.Fprintf(&b, "  missing:      %s\n", m)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "  problem:      %s\n", p)
	}
	fmt.Fprintf(&b, "  counters:     %s\n", s.Stats)
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(not found)"
	}
	return s
}
