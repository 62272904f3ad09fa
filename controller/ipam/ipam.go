// Package ipam hands out MeshExternalService VIPs from one CIDR (Kuma's
// 242.0.0.0/8 by default) and remembers them in a state directory, so a
// service keeps its VIP across restarts and unrelated changes.
//
// Rules:
//   - A key ("<mesh>/<name>") keeps its VIP while it is passed to Assign and
//     for a grace period after the first Assign without it (SetReleaseAfter;
//     0, the default, keeps it for ever, as Kuma does): clients may still hold
//     its DNS answer, and a service that comes back (a rename undone) gets its
//     old VIP again. After the grace period the key is forgotten and its VIP
//     returns to the pool.
//   - Addresses are handed out from a monotonic cursor that wraps at the end
//     of the CIDR, so a released VIP is handed out again only after every
//     other address has been handed out once (or is held): a stale DNS
//     answer in some client rarely reaches a new service.
//   - The network address (242.0.0.0) and, for IPv4 prefixes up to /30, the
//     broadcast address are never handed out. Kuma's first VIP is 242.0.0.0;
//     an all-zeros host address is rejected or treated as "this network" by some
//     stacks and tools, so meshext starts at .1 deliberately.
//   - When the CIDR changes, a key whose VIP lies outside the new CIDR gets a
//     new one (reported in Lease.Moved); keys inside it keep theirs.
//   - Each key also gets a serial and a first-seen time on its first
//     allocation: the "age" used to resolve hostname collisions for resources
//     without a creation time.
//
// The state lives in a Store: a state directory (Open), where writes are
// atomic (temp file in the same directory, fsync, rename, fsync of the
// directory) and serialised between processes with flock, so `meshext
// inspect --state-dir` next to a running `meshext run` is safe; or any other
// Store (OpenStore), such as the Kubernetes API server of `meshext run
// --source kubernetes`. One allocator, whatever keeps its state.
package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
)

const (
	// DefaultCIDR is Kuma's MeshExternalService VIP range.
	DefaultCIDR = "242.0.0.0/8"
	// EnvCIDR overrides DefaultCIDR (Kuma's variable name).
	EnvCIDR = "KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR"

	// DefaultReleaseAfter is `meshext run`'s grace period for the VIP of a
	// removed service: a rename undone, or a file fixed, the next working day
	// gets the old VIP back, and it is thousands of times the 30 s TTL of our
	// DNS answers. A CIDR then absorbs as many removals per day as it has
	// free addresses.
	DefaultReleaseAfter = 24 * time.Hour

	// Version is the state format (ipam.json) this package reads and writes.
	Version = 1
)

// ResolveCIDR picks the CIDR: flagValue when non-empty, else $KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR,
// else 242.0.0.0/8. A malformed value is an error naming it and its origin.
func ResolveCIDR(flagValue string) (netip.Prefix, error) {
	value, origin := flagValue, "flag"
	if value == "" {
		if v, ok := os.LookupEnv(EnvCIDR); ok && v != "" {
			value, origin = v, EnvCIDR
		}
	}
	if value == "" {
		value, origin = DefaultCIDR, "default"
	}
	p, err := netip.ParsePrefix(value)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("MeshExternalServiceCIDR is invalid: %q (from %s): %v", value, origin, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("MeshExternalServiceCIDR is invalid: %q (from %s): host bits are set; did you mean %s?", value, origin, p.Masked())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("MeshExternalServiceCIDR is invalid: %q (from %s): IPv4-mapped IPv6 prefixes are not supported", value, origin)
	}
	return p, nil
}

// Lease is one key's allocation.
type Lease struct {
	VIP netip.Addr
	// Serial is the key's first-seen order (1, 2, ...), stable for ever.
	Serial uint64
	// FirstSeen is when the key was first allocated (zero without a state directory,
	// where "first seen" would only mean "this process started").
	FirstSeen time.Time
	// Moved is the previous VIP when this call had to move the key because its VIP
	// lies outside the current CIDR; invalid otherwise.
	Moved netip.Addr
}

// Entry is one key's record in the state.
type Entry struct {
	VIP       netip.Addr `json:"vip"`
	Serial    uint64     `json:"serial"`
	FirstSeen time.Time  `json:"firstSeen,omitzero"`
	// Previous lists VIPs the key held before CIDR changes; they stay
	// reserved as long as the key.
	Previous []netip.Addr `json:"previous,omitempty"`
	// AbsentSince is when an Assign first went without the key (zero while
	// it is present). Optional: files written before releases existed lack
	// it, and meshext versions without releases ignore it.
	AbsentSince time.Time `json:"absentSince,omitzero"`
}

// State is everything an allocator keeps (the ipam.json format).
type State struct {
	Version int              `json:"version"`
	CIDR    netip.Prefix     `json:"cidr"`
	Next    netip.Addr       `json:"next"` // cursor: next candidate address
	Serial  uint64           `json:"serial"`
	Entries map[string]Entry `json:"entries"`
}

// Store keeps an allocator's state between calls, processes and restarts.
type Store interface {
	// Lock serialises a Load, the allocation and its Save against other
	// users of the store; unlock ends it.
	Lock() (unlock func(), err error)
	// Load returns the stored state, or nil when the allocator's copy is
	// current (nothing stored yet, or nothing changed since the last Load
	// or Save).
	Load() (*State, error)
	// Save stores st.
	Save(st *State) error
}

// Assigner is what gives services their VIPs: an Allocator, or a view of
// VIPs that another process allocates (a follower replica reads them from
// the API server).
type Assigner interface {
	Assign(keys []string) (map[string]Lease, error)
	CIDR() netip.Prefix
}

// Allocator assigns VIPs. It is safe for concurrent use.
type Allocator struct {
	mu     sync.Mutex
	store  Store // nil = in memory
	prefix netip.Prefix
	st     State
	now    func() time.Time
	// releaseAfter is the grace period of absent keys; 0 = never release.
	releaseAfter time.Duration
	// firstSeen: the store outlives this process, so a first-seen time means something.
	firstSeen bool
}

// Open returns an allocator for cidr (see ResolveCIDR for "") persisted in
// stateDir, which is created when missing (mode 0700). With stateDir "" the
// state lives in memory: VIPs are then first-fit in the order keys are first
// assigned.
func Open(stateDir, cidr string) (*Allocator, error) {
	if stateDir == "" {
		return OpenStore(nil, cidr)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: state directory: %w", err)
	}
	return OpenStore(&fileStore{dir: stateDir}, cidr)
}

// OpenStore returns an allocator for cidr whose state lives in store (nil:
// in memory), loading what the store holds.
func OpenStore(store Store, cidr string) (*Allocator, error) {
	p, err := ResolveCIDR(cidr)
	if err != nil {
		return nil, err
	}
	a := &Allocator{store: store, prefix: p, now: time.Now, firstSeen: store != nil}
	a.st = State{Version: Version, CIDR: p, Entries: map[string]Entry{}}
	if store == nil {
		return a, nil
	}
	unlock, err := store.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

// CIDR is the range VIPs are handed out from.
func (a *Allocator) CIDR() netip.Prefix { return a.prefix }

// SetReleaseAfter sets the grace period after which an absent key's VIP is
// released (0 = never). Only an allocator with a grace period tracks
// absence, so `meshext inspect` or `render` on a subset of the services,
// sharing the state directory, takes no lease away from `meshext run`.
func (a *Allocator) SetReleaseAfter(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseAfter = max(d, 0)
}

// Assign returns a lease for every key, allocating for keys seen for the first
// time (in sorted key order, so the result does not depend on the caller's
// order) and moving keys whose VIP lies outside the CIDR. keys is the whole
// set of current services: keys not passed keep their VIPs for the release
// grace period, counted from the first call without them. On exhaustion the
// keys that could be served are returned along with an error naming the others.
func (a *Allocator) Assign(keys []string) (map[string]Lease, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.store != nil {
		unlock, err := a.store.Lock()
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := a.load(); err != nil { // another process may have allocated since
			return nil, err
		}
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)

	changed := a.trackAbsence(sorted)
	var used map[netip.Addr]bool // built on the first allocation only
	out := make(map[string]Lease, len(sorted))
	var failed []string
	for _, k := range sorted {
		if _, dup := out[k]; dup {
			continue
		}
		e, known := a.st.Entries[k]
		if known && a.prefix.Contains(e.VIP) {
			out[k] = Lease{VIP: e.VIP, Serial: e.Serial, FirstSeen: e.FirstSeen}
			continue
		}
		if used == nil {
			used = a.usedSet()
		}
		vip, ok := a.next(used)
		if !ok {
			failed = append(failed, k)
			continue
		}
		used[vip] = true
		changed = true
		l := Lease{VIP: vip}
		if known {
			l.Moved = e.VIP
			e.Previous = append(e.Previous, e.VIP)
		} else {
			a.st.Serial++
			e.Serial = a.st.Serial
			if a.firstSeen {
				e.FirstSeen = a.now().UTC().Truncate(time.Second)
			}
		}
		e.VIP = vip
		l.Serial, l.FirstSeen = e.Serial, e.FirstSeen
		a.st.Entries[k] = e
		out[k] = l
	}
	if changed && a.store != nil {
		if err := a.store.Save(&a.st); err != nil {
			return nil, err
		}
	}
	if len(failed) > 0 {
		e := &ExhaustedError{CIDR: a.prefix, Reserved: len(used), Keys: failed, ReleaseAfter: a.releaseAfter}
		for _, en := range a.st.Entries {
			if !en.AbsentSince.IsZero() && a.prefix.Contains(en.VIP) {
				e.Absent++
				if r := en.AbsentSince.Add(a.releaseAfter); e.NextRelease.IsZero() || r.Before(e.NextRelease) {
					e.NextRelease = r
				}
			}
		}
		return out, e
	}
	return out, nil
}

// trackAbsence marks keys missing from present (sorted) as absent, clears the
// mark of keys back again, and forgets keys absent for the grace period,
// which releases their VIPs. It reports whether the state changed.
func (a *Allocator) trackAbsence(present []string) bool {
	if a.releaseAfter == 0 {
		return false
	}
	// Whole seconds keep the ledger tidy; rounding the mark up (and the
	// clock down) means truncation can only lengthen the grace, never cut it.
	t := a.now().UTC()
	now := t.Truncate(time.Second)
	mark := now
	if !now.Equal(t) {
		mark = now.Add(time.Second)
	}
	changed := false
	for k, e := range a.st.Entries {
		_, found := slices.BinarySearch(present, k)
		switch {
		case found && e.AbsentSince.IsZero():
			continue
		case found:
			e.AbsentSince = time.Time{}
		case e.AbsentSince.IsZero():
			e.AbsentSince = mark
		case now.Sub(e.AbsentSince) >= a.releaseAfter:
			delete(a.st.Entries, k)
			changed = true
			continue
		default:
			continue
		}
		a.st.Entries[k] = e
		changed = true
	}
	return changed
}

// ExhaustedError says which keys got no VIP.
type ExhaustedError struct {
	CIDR     netip.Prefix
	Reserved int
	Keys     []string
	// Absent of the Reserved addresses belong to removed services within
	// their ReleaseAfter grace; the first of them is released at NextRelease.
	Absent       int
	ReleaseAfter time.Duration
	NextRelease  time.Time
}

func (e *ExhaustedError) Error() string {
	held := "VIPs of removed services are never reused"
	if e.ReleaseAfter > 0 {
		held = fmt.Sprintf("%d of them by removed services within their %s release grace", e.Absent, e.ReleaseAfter)
		if e.Absent > 0 {
			held += "; the next is released at " + e.NextRelease.Format(time.RFC3339)
		}
	}
	return fmt.Sprintf("MeshExternalServiceCIDR %s is exhausted: all %d usable addresses are held by current or removed services (%s); cannot assign a VIP to %v; use a larger CIDR", e.CIDR, e.Reserved, held, e.Keys)
}

// usedSet is every address reserved in the current CIDR: current and previous
// VIPs of every key ever seen.
func (a *Allocator) usedSet() map[netip.Addr]bool {
	used := map[netip.Addr]bool{}
	for _, e := range a.st.Entries {
		for _, v := range append([]netip.Addr{e.VIP}, e.Previous...) {
			if a.prefix.Contains(v) {
				used[v] = true
			}
		}
	}
	return used
}

// next finds a free address from the cursor to the end of the CIDR, then
// from the start up to the cursor, and advances the cursor past it.
func (a *Allocator) next(used map[netip.Addr]bool) (netip.Addr, bool) {
	first, last := a.firstUsable(), a.lastUsable()
	if !first.IsValid() {
		return netip.Addr{}, false
	}
	start := a.st.Next
	if !a.prefix.Contains(start) || start.Less(first) || last.Less(start) {
		start = first
	}
	// The scan is bounded by the number of reserved addresses: every step
	// past the first either finds a free address or skips a reserved one.
	for pass := 0; pass < 2; pass++ {
		from, to := start, last
		if pass == 1 {
			from, to = first, start
		}
		for ip := from; ; ip = ip.Next() {
			if !used[ip] {
				a.st.Next = ip.Next()
				return ip, true
			}
			if ip == to {
				break
			}
		}
	}
	return netip.Addr{}, false
}

func (a *Allocator) firstUsable() netip.Addr {
	ip := a.prefix.Addr()
	if hostBits(a.prefix) >= 2 {
		ip = ip.Next() // skip the network address
	}
	return ip
}

func (a *Allocator) lastUsable() netip.Addr {
	last := lastAddr(a.prefix)
	if a.prefix.Addr().Is4() && hostBits(a.prefix) >= 2 {
		last = last.Prev() // skip the IPv4 broadcast address
	}
	return last
}

func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	n := new(big.Int).SetBytes(b)
	hostMask := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(hostBits(p))), big.NewInt(1))
	n.Or(n, hostMask)
	out := n.FillBytes(make([]byte, len(b)))
	addr, _ := netip.AddrFromSlice(out)
	return addr
}

// load adopts the store's state when it has a newer one. The cursor is
// kept only when the CIDR is unchanged.
func (a *Allocator) load() error {
	st, err := a.store.Load()
	if err != nil || st == nil {
		return err
	}
	if st.Version != Version {
		return fmt.Errorf("ipam: stored state has version %d, this meshext reads version %d", st.Version, Version)
	}
	if st.Entries == nil {
		st.Entries = map[string]Entry{}
	}
	if st.CIDR != a.prefix {
		st.Next = netip.Addr{}
		st.CIDR = a.prefix
	}
	a.st = *st
	return nil
}
