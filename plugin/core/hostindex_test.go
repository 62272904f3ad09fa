package core

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// The lookup structure's speed rests on these sizes: eight name or IPv4
// slots share a cache line, and an entry's owner decision and key
// never straddle two lines.
func TestLayout(t *testing.T) {
	if s := unsafe.Sizeof(nameSlot{}); s != 8 {
		t.Errorf("nameSlot is %d bytes, want 8", s)
	}
	if s := unsafe.Sizeof(v4Slot{}); s != 8 {
		t.Errorf("v4Slot is %d bytes, want 8", s)
	}
	if unsafe.Sizeof(uintptr(0)) == 8 {
		if s := unsafe.Sizeof(Entry{}); s%64 != 0 {
			t.Errorf("Entry is %d bytes, want a multiple of 64 (adjust entryPad)", s)
		}
	}
	if unsafe.Sizeof(uintptr(0)) == 8 {
		if end := unsafe.Offsetof(Entry{}.key) + entryKey; end != 64 {
			t.Errorf("Entry's owner decision and key end at byte %d, want 64 (one cache line)", end)
		}
	}
	// Arrays over 32 KiB are page aligned; smaller ones (with pointers)
	// sit after an 8-byte allocation header, and are all in cache anyway.
	for _, n := range []int{1000, 5000} {
		var services []Service
		for i := 0; i < n; i++ {
			services = append(services, svc(fmt.Sprintf("s%d", i), 80, "", fmt.Sprintf("s%d.ext", i)))
		}
		tab := mustCompile(t, &Config{Source: web, Services: services})
		if p := uintptr(unsafe.Pointer(&tab.slab[0])); p%64 != 0 {
			t.Errorf("%d entries at %#x, not 64-byte aligned", n, p)
		}
	}
	for _, n := range []int{0, 1, 3, 100, 5000} {
		nt := buildNameTable(nil, 1, slotsFor(n))
		if p := uintptr(unsafe.Pointer(&nt.slots[0])); p%8 != 0 {
			t.Errorf("slotsFor(%d): name slots at %#x, not 8-byte aligned", n, p)
		}
	}
}

func TestLower8(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := byte(c)
		if 'A' <= c && c <= 'Z' {
			want += 'a' - 'A'
		}
		for pos := 0; pos < 8; pos++ {
			// Neighbours that are capitals, '@' and '[' (just outside A-Z)
			// and non-ASCII must not disturb the byte under test.
			for _, fill := range []byte{'Z', '@', '[', 0xff, 0} {
				var in [8]byte
				for i := range in {
					in[i] = fill
				}
				in[pos] = byte(c)
				w := lower8(load64(string(in[:])))
				if got := byte(w >> (8 * pos)); got != want {
					t.Fatalf("lower8 byte %#x at %d (fill %#x) = %#x, want %#x", c, pos, fill, got, want)
				}
			}
		}
	}
}

func TestHashLowerIgnoresCase(t *testing.T) {
	for _, s := range []string{"a", "abcdefg", "abcdefgh", "Svc-1.Extsvc.Mesh.Local", strings.Repeat("Ab9-.", 50)} {
		if hashLower(s, 7) != hashLower(strings.ToLower(s), 7) || hashLower(s, 7) != hashLower(strings.ToUpper(s), 7) {
			t.Errorf("hashLower(%q) depends on case", s)
		}
		if hashLower(s, 7) == hashLower(s, 8) {
			t.Errorf("hashLower(%q) ignores the seed", s)
		}
		if len(s) > 1 && hashLower(s, 7) == hashLower(s[:len(s)-1], 7) {
			t.Errorf("hashLower(%q) ignores the last byte", s)
		}
	}
}

func TestParsePortAndIPv4(t *testing.T) {
	ports := map[string]int{"1": 1, "80": 80, "65535": 65535, "": -1, "0": -1, "080": -1, "65536": -1, "123456": -1, "8a": -1, "-1": -1, "+1": -1}
	for s, want := range ports {
		p, ok := parsePort(s)
		if (want < 0) == ok || ok && int(p) != want {
			t.Errorf("parsePort(%q) = %d, %v, want %d", s, p, ok, want)
		}
	}
	ips := map[string]uint32{"0.0.0.0": 0, "242.0.0.1": 0xf2000001, "255.255.255.255": 0xffffffff, "10.1.2.3": 0x0a010203}
	for s, want := range ips {
		if ip, ok := parseIPv4(s); !ok || ip != want {
			t.Errorf("parseIPv4(%q) = %#x, %v, want %#x", s, ip, ok, want)
		}
	}
	for _, s := range []string{"", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "256.1.1.1", "1.2.3.", ".1.2.3", "1..2.3", "1.2.3.4a", "a.b.c.d", "1111.2.3.4", "1.2.3.1000"} {
		if ip, ok := parseIPv4(s); ok {
			t.Errorf("parseIPv4(%q) = %#x, want not an IPv4", s, ip)
		}
	}
}

// A table filled to 15 of 16 slots has long probe chains that wrap
// around the end; every key must still be found, and misses must stop.
func TestNameTableNearlyFull(t *testing.T) {
	var recs []hostRec
	for i := 0; i < 15; i++ {
		recs = append(recs, hostRec{host: fmt.Sprintf("h%d.ext", i), entry: uint32(i), port: 80, flags: flagBare | flagPort})
	}
	for seed := uint64(0); seed < 20; seed++ {
		nt := buildNameTable(recs, seed, 16)
		for _, r := range recs {
			for _, q := range []struct {
				host    string
				hasPort bool
				port    uint16
			}{{r.host, false, 0}, {r.host, true, 80}, {strings.ToUpper(r.host), true, 80}} {
				if e, ok := nt.find(q.host, q.hasPort, q.port, nil); !ok || e != r.entry {
					t.Fatalf("seed %d: find(%q, %v, %d) = %d, %v, want %d", seed, q.host, q.hasPort, q.port, e, ok, r.entry)
				}
			}
			if e, ok := nt.find(r.host, true, 81, nil); ok {
				t.Fatalf("seed %d: wrong port found entry %d", seed, e)
			}
		}
		for _, miss := range []string{"h15.ext", "h1.ex", "h1.extt", "x"} {
			if e, ok := nt.find(miss, false, 0, nil); ok {
				t.Fatalf("seed %d: find(%q) = %d, want miss", seed, miss, e)
			}
		}
	}
}

// Two different names with the same fingerprint and the same home slot
// must be told apart by the key bytes.
func TestNameTableFingerprintCollision(t *testing.T) {
	const seed, mask = 42, 7
	seen := map[uint64]string{}
	var a, b string
	for i := 0; i < 4_000_000 && a == ""; i++ {
		h := fmt.Sprintf("n%07d.ext", i) // same length, so only the bytes differ
		x := hashLower(h, seed)
		k := x>>32<<3 | x&mask
		if o, ok := seen[k]; ok {
			a, b = o, h
		}
		seen[k] = h
	}
	if a == "" {
		t.Fatal("no fingerprint collision found within the search bound")
	}
	// The same through hostIndex, where both keys sit in their entries.
	slab := make([]Entry, 2)
	x := buildHostIndex([]hostRec{{host: a, entry: 0, flags: flagBare}}, slab, seed)
	if e, ok := x.find(b, slab); ok {
		t.Errorf("%q found entry %d of %q, which has the same fingerprint and slot", b, e, a)
	}
	slab = make([]Entry, 2)
	x = buildHostIndex([]hostRec{{host: a, entry: 0, flags: flagBare}, {host: b, entry: 1, flags: flagBare}}, slab, seed)
	if slab[0].klen == 0 || slab[1].klen == 0 {
		t.Fatal("keys not stored in the entries")
	}
	for i, h := range []string{a, b} {
		if e, ok := x.find(h, slab); !ok || e != uint32(i) {
			t.Errorf("find(%q) = %d, %v, want %d", h, e, ok, i)
		}
	}
	for _, order := range [][2]string{{a, b}, {b, a}} {
		nt := buildNameTable([]hostRec{{host: order[0], entry: 1, flags: flagBare}, {host: order[1], entry: 2, flags: flagBare}}, seed, mask+1)
		if e, ok := nt.find(order[1], false, 0, nil); !ok || e != 2 {
			t.Errorf("%q shares fingerprint and slot with %q: got %d, %v, want 2", order[1], order[0], e, ok)
		}
		if e, ok := nt.find(order[0], false, 0, nil); !ok || e != 1 {
			t.Errorf("%q: got %d, %v, want 1", order[0], e, ok)
		}
	}
}

// equal must look at every byte of the key and none of the next one,
// ignoring case.
func TestSlotKeyCompare(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 39, 40, 41, 47, 48, 49, 64, 200, 255} {
		key := make([]byte, n)
		for i := range key {
			key[i] = "abcdefghijklmnopqrstuvwxyz0123456789-."[i%38]
		}
		// Another key follows in the arena: the compare's last word
		// reads into it and must mask it off.
		next := strings.Repeat(string(key[n-1:]), 8)
		nt := buildNameTable([]hostRec{{host: string(key), entry: 5, flags: flagBare}, {host: next, flags: flagBare}}, 3, 8)
		equal := func(h string) bool {
			e, ok := nt.arenaMatch(0, h, false, 0) // the first record
			return ok && e == 5
		}
		if !equal(string(key)) || !equal(strings.ToUpper(string(key))) {
			t.Fatalf("%d-byte key does not equal itself", n)
		}
		var padded [entryKey]byte
		copy(padded[:], key)
		short := n <= entryKey
		if short && (!equalPadded(&padded, string(key)) || !equalPadded(&padded, strings.ToUpper(string(key)))) {
			t.Fatalf("%d-byte entry key does not equal itself", n)
		}
		for p := 0; p < n; p++ {
			other := append([]byte(nil), key...)
			other[p] = '_'
			if equal(string(other)) {
				t.Fatalf("%d-byte key equals a copy differing at byte %d", n, p)
			}
			if short && equalPadded(&padded, string(other)) {
				t.Fatalf("%d-byte entry key equals a copy differing at byte %d", n, p)
			}
		}
	}
}

// Keys of lengths around word boundaries and up to the DNS limit, in
// upper and lower case; pairs differ only in their last byte.
func TestLongKeys(t *testing.T) {
	var services []Service
	var names []string
	for _, n := range []int{7, 8, 9, 39, 40, 41, 47, 48, 49, 56, 57, 100, 253} {
		for _, last := range []string{"a", "b"} {
			name := strings.Repeat("x", n-1) + last
			names = append(names, name)
			services = append(services, svc(fmt.Sprintf("s%d%s", n, last), 443, "", name))
		}
	}
	tab := mustCompile(t, &Config{Source: web, Services: services})
	for i, name := range names {
		want := services[i].Name
		for _, a := range []string{name, strings.ToUpper(name), name + ":443", strings.ToUpper(name) + ".:443", name + "."} {
			if e := tab.Lookup(a); e == nil || e.Service.Name != want {
				t.Errorf("Lookup(%d-byte %q...) = %v, want %s", len(a), a[:5], e, want)
			}
		}
		for _, a := range []string{name + "c", name[:len(name)-1], name + ":444"} {
			if e := tab.Lookup(a); e != nil {
				t.Errorf("Lookup(%d-byte near miss) = %s, want nil", len(a), e.Service.Name)
			}
		}
	}
}

func TestPortHandling(t *testing.T) {
	tab := mustCompile(t, &Config{Source: web, Services: []Service{
		svc("p80", 80, "242.0.0.1", "api.ext", "only80.ext"),
		svc("p443", 443, "242.0.0.2", "api.ext"),
		svc("p8443", 8443, "", "api.ext"),
		svc("portless", 0, "242.0.0.3", "free.ext"),
	}})
	cases := map[string]string{
		"api.ext:80": "p80", "api.ext:443": "p443", "API.EXT.:8443": "p8443",
		"api.ext": "", "api.ext:81": "", "api.ext:080": "", "api.ext:": "", "api.ext:0": "", "api.ext:65536": "", "api.ext:80x": "",
		"only80.ext": "p80", "only80.ext:80": "p80", "only80.ext:443": "",
		"free.ext": "portless", "free.ext:80": "", "242.0.0.3": "portless", "242.0.0.3:80": "",
		"242.0.0.1": "p80", "242.0.0.1:80": "p80", "242.0.0.1:443": "", "242.0.0.2:443": "p443",
	}
	checkLookups(t, tab, cases)
}

func TestVIPLiterals(t *testing.T) {
	tab := mustCompile(t, &Config{Source: web, Services: []Service{
		svc("four", 80, "242.0.0.1", "four.ext"),
		svc("mapped", 80, "::ffff:242.0.0.9", "mapped.ext"),
		svc("six", 443, "FD00::7", "six.ext"),
		// A hostname spelled like an IPv4 address is found like one.
		svc("dotted", 80, "", "10.1.2.3"),
		// Two IPv4 hosts: the second is not kept in the entry.
		svc("two", 8080, "242.0.0.20", "10.9.9.9"),
		// One IPv4 host on two ports: only host:port resolves.
		svc("v80", 80, "", "10.7.7.7"),
		svc("v443", 443, "", "10.7.7.7"),
	}})
	cases := map[string]string{
		"242.0.0.1": "four", "242.0.0.1:80": "four", "242.0.0.1.:80": "four", "242.0.0.1:81": "",
		"242.0.0.01": "", "242.0.0.1x": "", "242.0.0": "", "242.0.0.2": "",
		"242.0.0.9:80": "mapped", "242.0.0.9": "mapped",
		"fd00::7": "six", "FD00::7": "six", "[fd00::7]": "six", "[fd00::7]:443": "six", "[FD00::7]:443": "six",
		"[fd00::7]:80": "", "[fd00::7]:": "", "[fd00::7]x": "", "[fd00::7": "", "fd00::7:443": "", "[fd00::8]:443": "",
		"10.1.2.3": "dotted", "10.1.2.3:80": "dotted",
		"10.9.9.9": "two", "10.9.9.9:8080": "two", "242.0.0.20": "two", "242.0.0.20:8080": "two", "242.0.0.20:80": "", "10.9.9.9:80": "",
		"10.7.7.7:80": "v80", "10.7.7.7:443": "v443", "10.7.7.7": "", "10.7.7.7:8080": "",
	}
	checkLookups(t, tab, cases)
}

func TestUnknownHostAndEmptyTable(t *testing.T) {
	empty := mustCompile(t, &Config{Source: web})
	for _, a := range []string{"", "a.ext", "a.ext:80", "242.0.0.1", "[::1]:80", strings.Repeat("a", 300)} {
		if e := empty.Lookup(a); e != nil {
			t.Errorf("empty table: Lookup(%q) = %v", a, e)
		}
	}
	if empty.Len() != 0 || empty.HostKeys() != 0 {
		t.Errorf("empty table: Len %d, HostKeys %d", empty.Len(), empty.HostKeys())
	}
	withDefault := mustCompile(t, &Config{Source: web, Services: []Service{svc("a", 80, "242.0.0.1", "a.ext"), svc("d", 80, "", "d.ext")}, DefaultService: "d"})
	for _, a := range []string{"", "b.ext", "a.ext:81", "242.0.0.2", "242.0.0.1:81", "[::1]:80", strings.Repeat("a", 300)} {
		if e := withDefault.Lookup(a); e == nil || e.Service.Name != "d" {
			t.Errorf("Lookup(%q) = %v, want the default d", a, e)
		}
	}
}

// Every key Hosts() lists, in any case and with a trailing dot on the
// host, leads back to its entry; the lookup does not allocate.
func TestEveryHostKeyLeadsToItsEntry(t *testing.T) {
	var services []Service
	for i := 0; i < 3000; i++ {
		port := uint32(i % 3 * 40) // 0, 40, 80
		vip := ""
		switch i % 4 {
		case 1:
			vip = fmt.Sprintf("242.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		case 2:
			vip = fmt.Sprintf("fd00::%x", i)
		}
		services = append(services, svc(fmt.Sprintf("s%d", i), port, vip, fmt.Sprintf("S%d.Ext.", i), fmt.Sprintf("alt-%d.example.com", i)))
	}
	tab := mustCompile(t, &Config{Source: web, Services: services})
	keys := 0
	for _, e := range tab.Entries() {
		for _, k := range e.Hosts() {
			keys++
			variants := []string{k, strings.ToUpper(k)}
			if h, _, _, _ := splitHostPort(k); h[0] != '[' && !strings.Contains(h, ":") {
				variants = append(variants, h+"."+k[len(h):])
			}
			for _, v := range variants {
				if got := tab.Lookup(v); got != e {
					t.Fatalf("Lookup(%q) = %v, want %s", v, got, e.Service.Name)
				}
			}
		}
	}
	if keys != tab.HostKeys() {
		t.Errorf("Hosts() total %d, HostKeys %d", keys, tab.HostKeys())
	}
	for _, a := range []string{"s7.ext:40", "S7.EXT.:40", "242.0.0.1:40", "[fd00::2]:80", "alt-1.example.com", "nope.ext:80"} {
		if n := testing.AllocsPerRun(100, func() { tab.Lookup(a) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", a, n)
		}
	}
}

// checkLookups wants each authority to resolve to the named service ("" = nil).
func checkLookups(t *testing.T, tab *Table, cases map[string]string) {
	t.Helper()
	for a, want := range cases {
		got := ""
		if e := tab.Lookup(a); e != nil {
			got = e.Service.Name
		}
		if got != want {
			t.Errorf("Lookup(%q) = %q, want %q", a, got, want)
		}
	}
}
