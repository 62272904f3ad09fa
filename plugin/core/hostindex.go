package core

import (
	"encoding/binary"
	"math/bits"
	"strings"
)

// hostIndex is what Lookup searches: the table's hosts without port, each
// with the entry it leads to and the port that entry listens on. It is
// built once by Compile and only read afterwards, so lookups need no lock.
//
// Why not a map[string]*Entry of every key ("name", "name:port", "vip",
// "vip:port"): at 100k services that is 400k keys whose buckets, key bytes
// and entries no longer fit in the last-level cache, and each lookup paid
// two or three DRAM misses. Here the port is parsed off the authority
// once; a name costs an 8-byte slot, an IPv4 literal an 8-byte slot keyed
// by the address (2 MiB each at 100k, mostly in cache). A hit on an
// entry's first name or first IPv4 address then reads one more cache
// line, the entry's first, which holds that name, the flags and the owner
// decision; other hosts also read a record of their own.
type hostIndex struct {
	names nameTable
	v4    v4Table
}

// hostRec is one host of one entry, the unit hostIndex stores.
type hostRec struct {
	host  string // lower case, no trailing dot, no port
	entry uint32 // index into Table.slab
	port  uint16 // the entry's port; meaningful with flagPort
	flags uint8
}

const (
	// flagBare: the host without port leads to the entry.
	flagBare = 1 << iota
	// flagPort: host:port leads to the entry. A name shared by services
	// on different ports has one slot per service, each with flagPort only.
	flagPort
	// flagEntryKey: the record lives in its entry (Entry.key and
	// neighbours), not in the name table's arena.
	flagEntryKey
)

func (x *hostIndex) find(authority string, slab []Entry) (entry uint32, ok bool) {
	host, port, hasPort, ok := splitHostPort(authority)
	if !ok {
		return 0, false
	}
	// A request may end its host with a dot (fully qualified); keys
	// never do, except one that was part of the name ("a.." gives "a.").
	if len(host) > 1 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	// Only a host ending in a digit can be an IPv4 literal; most names
	// end in a letter (their TLD) and skip the call.
	if c := host[len(host)-1]; '0' <= c && c <= '9' {
		if ip, isV4 := parseIPv4(host); isV4 {
			return x.v4.find(ip, hasPort, port, slab)
		}
	}
	return x.names.find(host, hasPort, port, slab)
}

// buildHostIndex sorts recs into the IPv4 and the name table. Hosts that
// are canonical dotted-quad IPv4 strings (whether a VIP or a hostname
// spelled like one) go to the IPv4 table, which Lookup consults exactly
// when the request's host parses the same way.
//
// Each entry's first name (in recs order, i.e. sorted) that fits
// Entry.key is stored there (slab is written), so a lookup of it verifies
// the key in the line it reads the decision from.
func buildHostIndex(recs []hostRec, slab []Entry, seed uint64) hostIndex {
	var names, v4 []hostRec
	for _, r := range recs {
		e := &slab[r.entry]
		if _, ok := parseIPv4(r.host); ok {
			if e.v4Flags == 0 {
				e.v4Flags = r.flags
				r.flags |= flagEntryKey
			}
			v4 = append(v4, r)
			continue
		}
		if e.klen == 0 && len(r.host) <= entryKey {
			e.klen = uint8(copy(e.key[:], r.host))
			e.keyFlags = r.flags
			r.flags |= flagEntryKey
		}
		names = append(names, r)
	}
	return hostIndex{
		names: buildNameTable(names, seed, slotsFor(len(names))),
		v4:    buildV4Table(v4, seed, slotsFor(len(v4))),
	}
}

// slotsFor sizes an open-addressing table for n records: a power of two
// at least twice n, so the load stays at or below one half and most hits
// are found in the first slot.
func slotsFor(n int) int {
	c := 8
	for c < 2*n {
		c <<= 1
	}
	return c
}

// splitHostPort takes "host[:port]" apart the way the table's keys are
// made: a bracketed IPv6 host keeps its brackets, an unbracketed value
// with more than one colon is a bare IPv6 host. ok is false when nothing
// can match: empty host, too long, a port that is not 1-65535 written
// without leading zeros, or junk after "]".
func splitHostPort(a string) (host string, port uint16, hasPort, ok bool) {
	if len(a) == 0 || len(a) > maxAuthority {
		return "", 0, false, false
	}
	host = a
	p := ""
	if a[0] == '[' {
		if j := strings.IndexByte(a, ']'); j > 0 && j < len(a)-1 {
			host = a[:j+1]
			if a[j+1] != ':' {
				return "", 0, false, false
			}
			p, hasPort = a[j+2:], true
		}
	} else {
		// A port has at most 5 digits, so look for its colon at the end
		// first; a value with a colon further in is a bare IPv6 address
		// or has no valid port, and either way is looked up whole.
		i := -1
		for j := len(a) - 1; j >= 0 && j >= len(a)-6; j-- {
			if a[j] == ':' {
				i = j
				break
			}
		}
		if i >= 0 && strings.IndexByte(a[:i], ':') < 0 {
			host, p, hasPort = a[:i], a[i+1:], true
		}
	}
	if hasPort {
		if port, ok = parsePort(p); !ok {
			return "", 0, false, false
		}
	}
	return host, port, hasPort, host != ""
}

// parsePort reads a decimal port 1-65535 without sign or leading zeros,
// the only spelling the table's "host:port" keys have.
func parsePort(s string) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	v := uint32(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint32(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// parseIPv4 reads a dotted-quad IPv4 address in canonical form (decimal,
// no leading zeros: what netip.Addr.String prints), the spelling of the
// table's IPv4 keys. Anything else is treated as a name.
func parseIPv4(s string) (uint32, bool) {
	if len(s) < 7 || len(s) > 15 || s[0] < '0' || s[0] > '9' || s[len(s)-1] < '0' || s[len(s)-1] > '9' {
		return 0, false
	}
	var ip, v uint32
	dots, digits := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			if digits > 0 && v == 0 {
				return 0, false // leading zero
			}
			v = v*10 + uint32(c-'0')
			digits++
			if v > 255 {
				return 0, false
			}
		case c == '.':
			if digits == 0 || dots == 3 {
				return 0, false
			}
			ip, v, digits = ip<<8|v, 0, 0
			dots++
		default:
			return 0, false
		}
	}
	if dots != 3 || digits == 0 {
		return 0, false
	}
	return ip<<8 | v, true
}

// Hashing and comparing work on 8-byte words lower-cased in registers,
// so a mixed-case request host needs neither a copy nor a second probe.

const (
	hashK0 = 0x9e3779b97f4a7c15 // 2^64 / golden ratio
	hashK1 = 0xd6e8feb86659fd93
	hashK2 = 0xa0761d6478bd642f
)

// mix folds the 128-bit product of a and b to 64 bits; every input bit
// reaches the middle of the product, which is what the fold keeps.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hashLower hashes the ASCII-lower-cased bytes of s under seed, 16 bytes
// per multiplication.
func hashLower(s string, seed uint64) uint64 {
	h := seed ^ uint64(len(s))*hashK0
	sk := seed ^ hashK2
	i := 0
	for ; len(s)-i > 16; i += 16 {
		h = mix(lower8(load64(s[i:]))^h^hashK1, lower8(load64(s[i+8:]))^sk)
	}
	// 0 to 16 bytes are left.
	var a, b uint64
	switch rem := len(s) - i; {
	case rem > 8:
		a, b = lower8(load64(s[i:])), lower8(tail64(s, i+8))
	case rem > 0:
		a = lower8(tail64(s, i))
	}
	return mix(mix(a^h^hashK1, b^sk), hashK0^seed)
}

// lower8 lower-cases the ASCII capitals among the 8 bytes of w; other
// bytes, including non-ASCII ones, are unchanged.
func lower8(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low7 := w &^ highs
	geA := low7 + ones*(0x80-'A')   // high bit set where byte >= 'A'
	gtZ := low7 + ones*(0x80-'Z'-1) // high bit set where byte > 'Z'
	upper := geA &^ gtZ &^ w & highs
	return w | upper>>2 // 0x80>>2 = 0x20, the case bit
}

// load64 reads s[0:8] little-endian; the compiler makes it one load.
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// tail64 returns s[i:] (1 to 8 bytes) as a little-endian word padded with
// zeros, without reading past the end of s.
func tail64(s string, i int) uint64 {
	n := len(s) - i
	if len(s) >= 8 {
		return load64(s[len(s)-8:]) >> (8 * (8 - n))
	}
	var w uint64
	for j := len(s) - 1; j >= i; j-- {
		w = w<<8 | uint64(s[j])
	}
	return w
}

// nameSlot is one name in 8 bytes, so the slot array of a 100k-name
// table is 2 MiB and mostly stays in cache; only a fingerprint match
// reads further. ref says where the rest of the record is: an entry
// index (the entry's first line holds key, port and flags) or, with
// refArena set, the offset of a record in nameTable.arena.
type nameSlot struct {
	fp  uint32 // high half of the key's hash, low bit forced to 1; 0: empty slot
	ref uint32
}

const refArena = 1 << 31

// Arena records are an 8-byte header (entry uint32, port uint16, flags
// uint8, key length uint8, little endian) and the lower-case key.
const arenaHeader = 8

// nameTable is an open-addressing (linear probing) table of nameSlot.
// Hostnames and IPv6 literals live here. It holds no Go pointers, so the
// garbage collector never scans it.
type nameTable struct {
	slots []nameSlot
	mask  uint64
	seed  uint64
	// arena holds the records whose key is not in their entry, back to
	// back, then 8 zero bytes so a word read at any key's end is in bounds.
	arena []byte
}

// buildNameTable indexes recs. Those flagged flagEntryKey must already
// have their key, port and flags in their slab entry.
func buildNameTable(recs []hostRec, seed uint64, nslots int) nameTable {
	t := nameTable{slots: make([]nameSlot, nslots), mask: uint64(nslots - 1), seed: seed}
	size := 8
	for _, r := range recs {
		if r.flags&flagEntryKey == 0 {
			size += arenaHeader + len(r.host)
		}
	}
	t.arena = make([]byte, 0, size)
	for _, r := range recs {
		h := hashLower(r.host, seed)
		i := h & t.mask
		for t.slots[i].fp != 0 {
			i = (i + 1) & t.mask
		}
		ref := r.entry
		if r.flags&flagEntryKey == 0 {
			ref = refArena | uint32(len(t.arena))
			t.arena = binary.LittleEndian.AppendUint32(t.arena, r.entry)
			t.arena = binary.LittleEndian.AppendUint16(t.arena, r.port)
			t.arena = append(t.arena, r.flags, uint8(len(r.host)))
			t.arena = append(t.arena, r.host...)
		}
		t.slots[i] = nameSlot{fp: uint32(h>>32) | 1, ref: ref}
	}
	t.arena = append(t.arena, make([]byte, 8)...)
	return t
}

func (t *nameTable) find(host string, hasPort bool, port uint16, slab []Entry) (uint32, bool) {
	h := hashLower(host, t.seed)
	fp := uint32(h>>32) | 1
	// Ends at an empty slot: the table is never more than half full.
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s.fp == 0 {
			return 0, false
		}
		if s.fp != fp {
			continue
		}
		if s.ref&refArena == 0 {
			e := &slab[s.ref]
			if int(e.klen) == len(host) && accepts(e.keyFlags, e.port, hasPort, port) && equalPadded(&e.key, host) {
				return s.ref, true
			}
		} else if e, ok := t.arenaMatch(s.ref&^refArena, host, hasPort, port); ok {
			return e, true
		}
	}
}

func accepts(flags uint8, keyPort uint16, hasPort bool, port uint16) bool {
	if hasPort {
		return flags&flagPort != 0 && keyPort == port
	}
	return flags&flagBare != 0
}

// equalPadded compares the lower-cased host (at most entryKey bytes) with
// a zero-padded key of the same length.
func equalPadded(k *[entryKey]byte, host string) bool {
	i := 0
	for ; i+8 <= len(host); i += 8 {
		if lower8(load64(host[i:])) != binary.LittleEndian.Uint64(k[i:]) {
			return false
		}
	}
	return i == len(host) || lower8(tail64(host, i)) == binary.LittleEndian.Uint64(k[i:])
}

// arenaMatch checks the arena record at off against the request.
func (t *nameTable) arenaMatch(off uint32, host string, hasPort bool, port uint16) (uint32, bool) {
	hdr := binary.LittleEndian.Uint64(t.arena[off:])
	entry, keyPort, flags, klen := uint32(hdr), uint16(hdr>>32), uint8(hdr>>48), int(hdr>>56)
	if klen != len(host) || !accepts(flags, keyPort, hasPort, port) {
		return 0, false
	}
	k := t.arena[int(off)+arenaHeader : int(off)+arenaHeader+len(host)+8]
	i := 0
	for ; i+8 <= len(host); i += 8 {
		if lower8(load64(host[i:])) != binary.LittleEndian.Uint64(k[i:]) {
			return 0, false
		}
	}
	if i < len(host) {
		keep := uint64(1)<<(8*(len(host)-i)) - 1 // the bytes that are still this key's
		if lower8(tail64(host, i)) != binary.LittleEndian.Uint64(k[i:])&keep {
			return 0, false
		}
	}
	return entry, true
}

// v4Slot is one IPv4 address in 8 bytes (eight to a cache line). ref is
// 0 for an empty slot, entry index + 1 when the entry's first line holds
// the flags (Entry.v4Flags), or refArena | index into v4Table.recs.
type v4Slot struct {
	addr uint32
	ref  uint32
}

// v4Rec is an IPv4 host that is not its entry's first.
type v4Rec struct {
	entry uint32
	port  uint16
	flags uint8
}

// v4Table is an open-addressing (linear probing) table keyed by address.
type v4Table struct {
	slots []v4Slot
	mask  uint64
	seed  uint64
	recs  []v4Rec
}

func hashV4(ip uint32, seed uint64) uint64 { return mix(uint64(ip)^seed, hashK1) }

// buildV4Table indexes recs. Those flagged flagEntryKey must already have
// their flags and port in their slab entry.
func buildV4Table(recs []hostRec, seed uint64, nslots int) v4Table {
	t := v4Table{slots: make([]v4Slot, nslots), mask: uint64(nslots - 1), seed: seed}
	for _, r := range recs {
		ip, _ := parseIPv4(r.host)
		i := hashV4(ip, seed) & t.mask
		for t.slots[i].ref != 0 {
			i = (i + 1) & t.mask
		}
		ref := r.entry + 1
		if r.flags&flagEntryKey == 0 {
			ref = refArena | uint32(len(t.recs))
			t.recs = append(t.recs, v4Rec{entry: r.entry, port: r.port, flags: r.flags})
		}
		t.slots[i] = v4Slot{addr: ip, ref: ref}
	}
	return t
}

func (t *v4Table) find(ip uint32, hasPort bool, port uint16, slab []Entry) (uint32, bool) {
	// Ends at an empty slot: the table is never more than half full.
	for i := hashV4(ip, t.seed) & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s.ref == 0 {
			return 0, false
		}
		if s.addr != ip {
			continue
		}
		if s.ref&refArena == 0 {
			if e := &slab[s.ref-1]; accepts(e.v4Flags, e.port, hasPort, port) {
				return s.ref - 1, true
			}
		} else if r := &t.recs[s.ref&^refArena]; accepts(r.flags, r.port, hasPort, port) {
			return r.entry, true
		}
	}
}
