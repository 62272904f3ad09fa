package dns

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/meshext/meshext/controller/inputfile"
)

// MaxHostsFileBytes bounds the hosts file (a big /etc/hosts is some 100 kB).
const MaxHostsFileBytes = 4 << 20

// ParseHostsFile reads static overrides in /etc/hosts format: an address
// followed by one or more names per line, '#' starts a comment. A name may
// appear on several lines; its addresses accumulate in file order. Only a
// regular file (or a symlink to one) of at most MaxHostsFileBytes is read,
// without blocking: a FIFO would block the reader, /dev/zero would never end.
func ParseHostsFile(path string) (map[string][]netip.Addr, error) {
	data, err := inputfile.Read(path, MaxHostsFileBytes)
	if err != nil {
		return nil, fmt.Errorf("dns hosts file: %w", err)
	}
	hosts, err := ParseHosts(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("dns hosts file %s: %w", path, err)
	}
	return hosts, nil
}

// ParseHosts parses /etc/hosts-format text; see ParseHostsFile.
func ParseHosts(r io.Reader) (map[string][]netip.Addr, error) {
	hosts := map[string][]netip.Addr{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %q is not an IP address", line, fields[0])
		}
		if len(fields) == 1 {
			return nil, fmt.Errorf("line %d: address %s has no host names", line, addr)
		}
		addr = addr.WithZone("") // a scoped link-local zone means nothing in a DNS answer
		for _, name := range fields[1:] {
			n, err := normalizeName(name)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			if !containsAddr(hosts[n], addr) {
				hosts[n] = append(hosts[n], addr)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return hosts, nil
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// normalizeName makes the lookup key: lower case, no trailing dot.
func normalizeName(name string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if n == "" {
		return "", fmt.Errorf("empty host name")
	}
	if !validName(n) {
		return "", fmt.Errorf("%q is not a valid DNS name", name)
	}
	return n, nil
}

// validName accepts lower-case host names: at most 253 characters, labels of
// 1-63 letters, digits, '-' or '_' (the latter for service-style names).
func validName(n string) bool {
	if len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
