package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func assign(t *testing.T, a *Allocator, keys ...string) map[string]string {
	t.Helper()
	got, err := a.Assign(keys)
	if err != nil {
		t.Fatalf("Assign(%v): %v", keys, err)
	}
	out := map[string]string{}
	for k, l := range got {
		out[k] = l.VIP.String()
	}
	return out
}

func open(t *testing.T, dir, cidr string) *Allocator {
	t.Helper()
	a, err := Open(dir, cidr)
	if err != nil {
		t.Fatalf("Open(%q, %q): %v", dir, cidr, err)
	}
	return a
}

func equal(t *testing.T, got, want map[string]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDefaultCIDRSkipsNetworkAddress(t *testing.T) {
	t.Setenv(EnvCIDR, "")
	a := open(t, "", "")
	if a.CIDR().String() != DefaultCIDR {
		t.Fatalf("CIDR %s, want %s", a.CIDR(), DefaultCIDR)
	}
	// Keys are allocated in sorted order whatever the caller's order.
	equal(t, assign(t, a, "default/c", "default/a", "default/b"),
		map[string]string{"default/a": "242.0.0.1", "default/b": "242.0.0.2", "default/c": "242.0.0.3"})
}

func TestStableAcrossRestartAndUnrelatedChanges(t *testing.T) {
	dir := t.TempDir()
	first := assign(t, open(t, dir, ""), "default/a", "default/b", "default/c")

	// Restart: reopen the state directory; a new key and a changed key order
	// must not move existing VIPs.
	a := open(t, dir, "")
	got := assign(t, a, "default/d", "default/c", "default/a", "default/b")
	for k, v := range first {
		if got[k] != v {
			t.Errorf("%s moved from %s to %s after restart", k, v, got[k])
		}
	}
	if got["default/d"] != "242.0.0.4" {
		t.Errorf("new key got %s, want 242.0.0.4", got["default/d"])
	}
	// A call with a subset (another service removed) leaves the rest alone.
	equal(t, assign(t, open(t, dir, ""), "default/b"), map[string]string{"default/b": first["default/b"]})
	equal(t, assign(t, open(t, dir, ""), "default/a", "default/b"), map[string]string{"default/a": first["default/a"], "default/b": first["default/b"]})
}

func TestDeletedVIPIsNeverReused(t *testing.T) {
	for _, dir := range []string{"", "persisted"} {
		t.Run(dir, func(t *testing.T) {
			if dir != "" {
				dir = t.TempDir()
			}
			a := open(t, dir, "")
			equal(t, assign(t, a, "m/a", "m/b"), map[string]string{"m/a": "242.0.0.1", "m/b": "242.0.0.2"})
			// m/a is deleted; m/c must not get its VIP.
			equal(t, assign(t, a, "m/b", "m/c"), map[string]string{"m/b": "242.0.0.2", "m/c": "242.0.0.3"})
			if dir != "" {
				a = open(t, dir, "") // and not after a restart either
			}
			equal(t, assign(t, a, "m/d"), map[string]string{"m/d": "242.0.0.4"})
			// A service that comes back gets its old VIP (clients may have cached it).
			equal(t, assign(t, a, "m/a"), map[string]string{"m/a": "242.0.0.1"})
		})
	}
}

func TestCIDROverride(t *testing.T) {
	cases := []struct {
		name, env, flag, wantCIDR, wantFirst string
	}{
		{"default", "", "", "242.0.0.0/8", "242.0.0.1"},
		{"env", "10.200.0.0/16", "", "10.200.0.0/16", "10.200.0.1"},
		{"flag beats env", "10.200.0.0/16", "192.168.7.0/24", "192.168.7.0/24", "192.168.7.1"},
		{"flag alone", "", "100.64.0.0/10", "100.64.0.0/10", "100.64.0.1"},
		{"ipv6", "", "fd00:fd02::/64", "fd00:fd02::/64", "fd00:fd02::1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvCIDR, c.env)
			a := open(t, "", c.flag)
			if a.CIDR().String() != c.wantCIDR {
				t.Fatalf("CIDR %s, want %s", a.CIDR(), c.wantCIDR)
			}
			equal(t, assign(t, a, "m/a"), map[string]string{"m/a": c.wantFirst})
		})
	}
}

func TestBadCIDR(t *testing.T) {
	cases := []struct {
		name, env, flag, want string
	}{
		{"garbage flag", "", "not-a-cidr", `MeshExternalServiceCIDR is invalid: "not-a-cidr" (from flag)`},
		{"prefix too long", "", "242.0.0.0/33", `MeshExternalServiceCIDR is invalid: "242.0.0.0/33" (from flag)`},
		{"host bits set", "", "242.1.2.3/8", `host bits are set; did you mean 242.0.0.0/8?`},
		{"bare address", "", "242.0.0.1", `MeshExternalServiceCIDR is invalid: "242.0.0.1"`},
		{"bad env", "242.0.0.0/8x", "", `MeshExternalServiceCIDR is invalid: "242.0.0.0/8x" (from KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvCIDR, c.env)
			_, err := Open(t.TempDir(), c.flag)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestExhaustion(t *testing.T) {
	cases := []struct {
		cidr   string
		usable []string
	}{
		{"10.0.0.0/30", []string{"10.0.0.1", "10.0.0.2"}}, // network and broadcast skipped
		{"10.0.0.4/31", []string{"10.0.0.4", "10.0.0.5"}}, // point-to-point: both usable
		{"10.0.0.9/32", []string{"10.0.0.9"}},
		{"fd00::/126", []string{"fd00::1", "fd00::2", "fd00::3"}}, // no broadcast in IPv6
	}
	for _, c := range cases {
		t.Run(c.cidr, func(t *testing.T) {
			a := open(t, t.TempDir(), c.cidr)
			var keys []string
			for i := range c.usable {
				keys = append(keys, fmt.Sprintf("m/s%d", i))
			}
			got := assign(t, a, keys...)
			for i, k := range keys {
				if got[k] != c.usable[i] {
					t.Errorf("%s got %s, want %s", k, got[k], c.usable[i])
				}
			}
			// Deleting every service frees nothing: the next key still finds the pool full.
			leases, err := a.Assign([]string{"m/late"})
			var ex *ExhaustedError
			if !errors.As(err, &ex) {
				t.Fatalf("want ExhaustedError, got %v", err)
			}
			if len(leases) != 0 || !strings.Contains(err.Error(), "MeshExternalServiceCIDR "+c.cidr+" is exhausted") || !strings.Contains(err.Error(), "m/late") {
				t.Fatalf("leases %v, error %q", leases, err)
			}
			// Keys that already hold a VIP are still served alongside the failure.
			leases, err = a.Assign([]string{keys[0], "m/late"})
			if err == nil || leases[keys[0]].VIP.String() != c.usable[0] {
				t.Fatalf("partial result %v, err %v", leases, err)
			}
		})
	}
}

func TestCIDRChangeMovesOnlyOutsideVIPs(t *testing.T) {
	dir := t.TempDir()
	assign(t, open(t, dir, "10.0.0.0/24"), "m/a", "m/b") // a=.1 b=.2

	// Shrink to a CIDR holding only b's VIP.
	a := open(t, dir, "10.0.0.2/31")
	leases, err := a.Assign([]string{"m/a", "m/b"})
	if err != nil {
		t.Fatal(err)
	}
	if l := leases["m/b"]; l.VIP.String() != "10.0.0.2" || l.Moved.IsValid() {
		t.Errorf("m/b: %+v, want it kept at 10.0.0.2", l)
	}
	if l := leases["m/a"]; l.VIP.String() != "10.0.0.3" || l.Moved.String() != "10.0.0.1" {
		t.Errorf("m/a: %+v, want moved from 10.0.0.1 to 10.0.0.3", l)
	}
	// Moving reports once; afterwards the lease is stable.
	leases, _ = a.Assign([]string{"m/a"})
	if l := leases["m/a"]; l.VIP.String() != "10.0.0.3" || l.Moved.IsValid() {
		t.Errorf("m/a after move: %+v", l)
	}
	// Back to the old CIDR: a's first VIP stays reserved, so a third key skips it.
	b := open(t, dir, "10.0.0.0/24")
	got := assign(t, b, "m/c")
	if got["m/c"] != "10.0.0.4" {
		t.Errorf("m/c got %s, want 10.0.0.4 (10.0.0.1-3 are or were held)", got["m/c"])
	}
}

func TestSerialAndFirstSeen(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, "")
	l1, _ := a.Assign([]string{"m/b", "m/a"})
	l2, _ := open(t, dir, "").Assign([]string{"m/c", "m/a"})
	if l1["m/a"].Serial != 1 || l1["m/b"].Serial != 2 || l2["m/c"].Serial != 3 || l2["m/a"].Serial != 1 {
		t.Fatalf("serials a=%d b=%d c=%d a'=%d", l1["m/a"].Serial, l1["m/b"].Serial, l2["m/c"].Serial, l2["m/a"].Serial)
	}
	if l1["m/a"].FirstSeen.IsZero() || !l2["m/a"].FirstSeen.Equal(l1["m/a"].FirstSeen) {
		t.Fatalf("first-seen not persisted: %v vs %v", l1["m/a"].FirstSeen, l2["m/a"].FirstSeen)
	}
	mem, _ := open(t, "", "").Assign([]string{"m/a"})
	if !mem["m/a"].FirstSeen.IsZero() {
		t.Fatalf("in-memory first-seen should be unknown, got %v", mem["m/a"].FirstSeen)
	}
}

func TestStateFileIsAtomicAndReadable(t *testing.T) {
	dir := t.TempDir()
	assign(t, open(t, dir, ""), "m/a")
	st, err := os.Stat(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("state file mode %v, want 0644", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
	var s State
	data, _ := os.ReadFile(filepath.Join(dir, stateFile))
	if err := json.Unmarshal(data, &s); err != nil || s.Entries["m/a"].VIP != netip.MustParseAddr("242.0.0.1") {
		t.Fatalf("state %s: %v", data, err)
	}

	// A corrupt file is a clear error, not a silent fresh start.
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, ""); err == nil || !strings.Contains(err.Error(), "is corrupt") {
		t.Fatalf("corrupt state: %v", err)
	}
}

// Several allocators on one state directory (as two processes would be) and
// several goroutines on one allocator never hand out one VIP twice.
func TestConcurrentAssignNeverDuplicates(t *testing.T) {
	dir := t.TempDir()
	allocs := []*Allocator{open(t, dir, ""), open(t, dir, "")}
	const workers, perWorker = 8, 20
	var mu sync.Mutex
	seen := map[string]string{} // vip -> key
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			a := allocs[w%len(allocs)]
			for i := 0; i < perWorker; i++ {
				// Keys overlap between workers: the same key must get the same VIP.
				key := fmt.Sprintf("m/s%d", (w*perWorker+i)%(workers*perWorker/2))
				got, err := a.Assign([]string{key})
				if err != nil {
					errs <- err
					return
				}
				vip := got[key].VIP.String()
				mu.Lock()
				if other, ok := seen[vip]; ok && other != key {
					errs <- fmt.Errorf("VIP %s given to %s and %s", vip, other, key)
				}
				seen[vip] = key
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != workers*perWorker/2 {
		t.Errorf("%d distinct VIPs, want %d", len(seen), workers*perWorker/2)
	}
}

func BenchmarkAssignKnown(b *testing.B) {
	a, _ := Open(b.TempDir(), "")
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("m/s%04d", i)
	}
	if _, err := a.Assign(keys); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Assign(keys); err != nil {
			b.Fatal(err)
		}
	}
}

// clock is a settable time source for release tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time                   { return c.t }
func (c *clock) advance(d time.Duration)          { c.t = c.t.Add(d) }
func withClock(a *Allocator, c *clock) *Allocator { a.now = c.now; return a }

// Issue 12 item 8: renaming one service a few times in a small CIDR must not
// exhaust it once the old names' grace periods have passed.
func TestRenamesDoNotExhaustSmallCIDR(t *testing.T) {
	for _, tc := range []struct {
		cidr, dir string
		usable    int
	}{
		{"10.0.0.0/29", "", 6},
		{"10.0.0.0/29", "persisted", 6},
		{"fd00:fd02::/125", "persisted", 7}, // IPv6: no broadcast address
	} {
		t.Run(tc.cidr+"/"+tc.dir, func(t *testing.T) {
			dir := tc.dir
			if dir != "" {
				dir = t.TempDir()
			}
			c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			a := withClock(open(t, dir, tc.cidr), c)
			a.SetReleaseAfter(24 * time.Hour)
			vips := map[string]bool{}
			for i := 0; i < 20; i++ {
				name := fmt.Sprintf("m/renamed-%d", i)
				got := assign(t, a, "m/a", "m/b", name)
				vips[got[name]] = true
				c.advance(25 * time.Hour)
				if dir != "" && i%5 == 4 {
					a = withClock(open(t, dir, tc.cidr), c) // restarts keep the clocks
					a.SetReleaseAfter(24 * time.Hour)
				}
			}
			if len(vips) != tc.usable-2 {
				t.Fatalf("the renamed service used %d VIPs, want all %d not held by m/a and m/b, each in turn: %v", len(vips), tc.usable-2, vips)
			}
		})
	}
}

func TestRenameBackWithinGraceGetsOldVIP(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	a := withClock(open(t, dir, "10.0.0.0/29"), c)
	a.SetReleaseAfter(24 * time.Hour)
	equal(t, assign(t, a, "m/api"), map[string]string{"m/api": "10.0.0.1"})
	c.advance(time.Hour)
	equal(t, assign(t, a, "m/api-v2"), map[string]string{"m/api-v2": "10.0.0.2"}) // renamed
	c.advance(23 * time.Hour)                                                     // a restart in between
	a = withClock(open(t, dir, "10.0.0.0/29"), c)
	a.SetReleaseAfter(24 * time.Hour)
	c.advance(59 * time.Minute) // 23h59m after the rename
	equal(t, assign(t, a, "m/api"), map[string]string{"m/api": "10.0.0.1"})
	// And the name it had meanwhile is now the absent one, with its own grace.
	c.advance(23 * time.Hour)
	equal(t, assign(t, a, "m/api", "m/api-v2"), map[string]string{"m/api": "10.0.0.1", "m/api-v2": "10.0.0.2"})
}

// After the grace period a VIP returns to the pool, but it is handed out
// again only once every never-used address has been.
func TestReleasedVIPIsReusedLast(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := withClock(open(t, t.TempDir(), "10.0.0.0/29"), c) // .1-.6
	a.SetReleaseAfter(24 * time.Hour)
	equal(t, assign(t, a, "m/a", "m/b"), map[string]string{"m/a": "10.0.0.1", "m/b": "10.0.0.2"})
	assign(t, a, "m/b") // m/a removed
	c.advance(24*time.Hour + time.Second)
	assign(t, a, "m/b") // m/a released now
	c.advance(time.Hour)
	got := assign(t, a, "m/b", "m/c", "m/d", "m/e", "m/f")
	equal(t, got, map[string]string{"m/b": "10.0.0.2", "m/c": "10.0.0.3", "m/d": "10.0.0.4", "m/e": "10.0.0.5", "m/f": "10.0.0.6"})
	// Only now, with every other address used once, does .1 come back.
	equal(t, assign(t, a, "m/b", "m/c", "m/d", "m/e", "m/f", "m/g"), map[string]string{
		"m/b": "10.0.0.2", "m/c": "10.0.0.3", "m/d": "10.0.0.4", "m/e": "10.0.0.5", "m/f": "10.0.0.6", "m/g": "10.0.0.1"})
	// m/a coming back after its release is a new service: it waits for a free VIP.
	_, err := a.Assign([]string{"m/a", "m/b", "m/c", "m/d", "m/e", "m/f", "m/g"})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || !strings.Contains(err.Error(), "m/a") {
		t.Fatalf("want m/a unserved, got %v", err)
	}
}

// The ledger keeps whole seconds, but the grace is never shorter than
// configured: a service removed at 00:00:00.5 keeps its VIP until 00:00:06.5
// at least (rounded up to 00:00:07) with a 6 s grace, not until 00:00:06.
func TestGraceIsNeverShortenedBySecondTruncation(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 500*int(time.Millisecond), time.UTC)}
	a := withClock(open(t, "", "10.0.0.0/29"), c)
	a.SetReleaseAfter(6 * time.Second)
	assign(t, a, "m/a", "m/b")
	assign(t, a, "m/b") // m/a removed at .5
	for _, step := range []time.Duration{5 * time.Second, 500 * time.Millisecond, 400 * time.Millisecond} {
		c.advance(step) // 5.5 s, 6.0 s, 6.4 s: 6.0 s is already due by truncated clocks
		assign(t, a, "m/b")
		if _, held := a.st.Entries["m/a"]; !held {
			t.Fatalf("m/a released %v after its removal, before its 6s grace", c.t.Sub(time.Date(2026, 1, 1, 0, 0, 0, 500*int(time.Millisecond), time.UTC)))
		}
	}
	c.advance(600 * time.Millisecond) // 7.0 s
	assign(t, a, "m/b")
	if e, held := a.st.Entries["m/a"]; held {
		t.Fatalf("m/a still held 6.5s after its removal: %+v", e)
	}
}

// Within the grace period a removed service's VIP stays held, also under
// pressure: a stale DNS answer must not reach another service. The error
// says when the next VIP frees up.
func TestExhaustionWithinGraceNamesTheNextRelease(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := withClock(open(t, "", "10.0.0.0/30"), c) // .1 .2
	a.SetReleaseAfter(24 * time.Hour)
	assign(t, a, "m/a", "m/b")
	c.advance(time.Hour)
	_, err := a.Assign([]string{"m/c"})
	if err == nil || !strings.Contains(err.Error(), "2 of them by removed services within their 24h0m0s release grace; the next is released at 2026-01-02T01:00:00Z") {
		t.Fatalf("error %v", err)
	}
	a.SetReleaseAfter(0)
	_, err = a.Assign([]string{"m/c"})
	if err == nil || !strings.Contains(err.Error(), "VIPs of removed services are never reused") {
		t.Fatalf("error %v", err)
	}
}

// A state file written before leases could be released (entries without
// absentSince) is read as is: every key keeps its VIP and is considered
// present until an Assign without it.
func TestReadsStateFileWithoutAbsence(t *testing.T) {
	dir := t.TempDir()
	old := `{
  "version": 1,
  "cidr": "10.0.0.0/29",
  "next": "10.0.0.3",
  "serial": 2,
  "entries": {
    "m/a": {"vip": "10.0.0.1", "serial": 1, "firstSeen": "2025-06-01T00:00:00Z"},
    "m/b": {"vip": "10.0.0.2", "serial": 2, "firstSeen": "2025-06-01T00:00:00Z", "previous": ["10.1.0.9"]}
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := withClock(open(t, dir, "10.0.0.0/29"), c)
	a.SetReleaseAfter(24 * time.Hour)
	equal(t, assign(t, a, "m/a"), map[string]string{"m/a": "10.0.0.1"})
	c.advance(25 * time.Hour) // m/b's grace runs from the first Assign without it
	equal(t, assign(t, a, "m/a", "m/b"), map[string]string{"m/a": "10.0.0.1", "m/b": "10.0.0.2"})
	var s State
	data, _ := os.ReadFile(filepath.Join(dir, stateFile))
	if err := json.Unmarshal(data, &s); err != nil || s.Version != 1 || s.Entries["m/b"].Serial != 2 || len(s.Entries["m/b"].Previous) != 1 {
		t.Fatalf("state after upgrade %s: %v", data, err)
	}
}

// recordingStore is a Store whose state a test sets and reads.
type recordingStore struct {
	next  *State // what the next Load returns
	saved []State
	locks int
}

func (s *recordingStore) Lock() (func(), error) { s.locks++; return func() {}, nil }
func (s *recordingStore) Load() (*State, error) {
	st := s.next
	s.next = nil
	return st, nil
}
func (s *recordingStore) Save(st *State) error {
	c := *st
	c.Entries = map[string]Entry{}
	for k, e := range st.Entries {
		c.Entries[k] = e
	}
	s.saved = append(s.saved, c)
	return nil
}

func TestOpenStoreKeepsStateWhereTheStoreSays(t *testing.T) {
	st := &recordingStore{next: &State{Version: Version, CIDR: netip.MustParsePrefix("242.0.0.0/8"), Next: netip.MustParseAddr("242.0.0.9"),
		Serial: 3, Entries: map[string]Entry{"m/held": {VIP: netip.MustParseAddr("242.0.0.5"), Serial: 3}}}}
	a, err := OpenStore(st, "")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, assign(t, a, "m/held", "m/new"), map[string]string{"m/held": "242.0.0.5", "m/new": "242.0.0.9"})
	if len(st.saved) != 1 || st.saved[0].Entries["m/new"].Serial != 4 || st.saved[0].Next != netip.MustParseAddr("242.0.0.10") {
		t.Fatalf("saved %+v", st.saved)
	}
	// Nothing new: no save. A newer stored state is adopted before allocating.
	assign(t, a, "m/held", "m/new")
	if len(st.saved) != 1 {
		t.Fatalf("saved again without a change: %+v", st.saved)
	}
	st.next = &State{Version: Version, Entries: map[string]Entry{"m/other": {VIP: netip.MustParseAddr("242.0.0.9"), Serial: 1}}}
	got := assign(t, a, "m/other", "m/x")
	if got["m/other"] != "242.0.0.9" || got["m/x"] == "242.0.0.9" {
		t.Fatalf("after a reload: %v", got)
	}
	if st.locks != 4 {
		t.Fatalf("locks %d, want one per open and assign", st.locks)
	}
	st.next = &State{Version: 2}
	if _, err := a.Assign([]string{"m/x"}); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("a state of another version: %v", err)
	}
}
