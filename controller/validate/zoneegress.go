package validate

import (
	"net/netip"

	"github.com/meshext/meshext/controller/resource"
)

// zoneEgress checks a ZoneEgress with Kuma's rules (zone_egress_validator.go):
// the port, the address, and an admin port that differs from the port on
// loopback. meshext also needs the address (workloads dial it and the
// egress Envoy listens on it, so it must be an IP literal), and applies the
// admin check with kuma-dp's default admin port 9901 when none is given.
func zoneEgress(v *violations, r *resource.ZoneEgress) {
	n := &r.Networking
	if !validPort(n.Port) {
		v.add("networking.port", "port must be in the range [1, 65535]")
	}
	addr, addrOK := netip.Addr{}, false
	switch {
	case n.Address == "":
		v.add("networking.address", "address can't be empty")
	case n.Address == "0.0.0.0" || n.Address == "::":
		v.add("networking.address", "must not be 0.0.0.0 or ::")
	case !isIP(n.Address) && !isDNSName(n.Address):
		v.add("networking.address", "address has to be valid IP address or domain name")
	default:
		a, err := netip.ParseAddr(n.Address)
		if err != nil || a.Zone() != "" {
			v.add("networking.address", "must be an IP address: meshext's egress Envoy listens on it")
		} else {
			addr, addrOK = a.Unmap(), true
		}
	}
	admin := int64(resource.DefaultZoneEgressAdminPort)
	if n.Admin != nil {
		admin = n.Admin.Port
		if !validPort(admin) {
			v.add("networking.admin.port", "port must be in the range [1, 65535]")
		}
	}
	// Envoy's admin listens on 127.0.0.1 (meshext bootstrap).
	if addrOK && admin == n.Port && (addr == netip.MustParseAddr("127.0.0.1") || addr.IsUnspecified()) {
		v.add("networking.admin.port", "must differ from port")
	}
}
