package validate

import (
	"fmt"
	"net/netip"

	"github.com/meshext/meshext/controller/resource"
)

// DefaultOutboundAddress is where a Dataplane outbound listens when it gives no address.
const DefaultOutboundAddress = "127.0.0.1"

const messagePortRange = "port must be in the range from 1 to 65535"

// dataplane checks what meshext uses of a Dataplane: its address, inbound
// listeners (which need a kuma.io/service tag), MeshExternalService outbounds
// (one listener per address and port) and the transparent-proxy and admin ports.
func dataplane(v *violations, r *resource.Dataplane) {
	n := &r.Networking
	dpAddr, dpAddrOK := netip.Addr{}, false
	switch {
	case n.Address == "":
		v.add("networking.address", messageNotEmpty)
	default:
		a, err := netip.ParseAddr(n.Address)
		if err != nil || a.Zone() != "" {
			v.add("networking.address", "must be a valid IP address")
		} else {
			dpAddr, dpAddrOK = a.Unmap(), true
		}
	}
	if n.AdvertisedAddress != "" && !isIP(n.AdvertisedAddress) {
		v.add("networking.advertisedAddress", "must be a valid IP address")
	}

	// listeners maps address:port to the field that claimed it first.
	listeners := map[netip.AddrPort]string{}
	for i, in := range n.Inbound {
		at := fmt.Sprintf("networking.inbound[%d]", i)
		if !validPort(in.Port) {
			v.add(at+".port", messagePortRange)
		}
		if in.ServicePort != 0 && !validPort(in.ServicePort) {
			v.add(at+".servicePort", "servicePort must be in the range from 1 to 65535")
		}
		if in.ServiceAddress != "" && !isIP(in.ServiceAddress) {
			v.add(at+".serviceAddress", "must be a valid IP address")
		}
		addr, addrOK := dpAddr, dpAddrOK
		if in.Address != "" {
			a, err := netip.ParseAddr(in.Address)
			if err != nil || a.Zone() != "" {
				v.add(at+".address", "must be a valid IP address")
				addrOK = false
			} else {
				addr, addrOK = a.Unmap(), true
			}
		}
		if svc, ok := in.Tags[resource.LabelService]; !ok {
			v.add(at+`.tags["kuma.io/service"]`, "tag has to exist")
		} else if svc == "" {
			v.add(at+`.tags["kuma.io/service"]`, "tag value must be non-empty")
		}
		if addrOK && validPort(in.Port) {
			key := netip.AddrPortFrom(addr, uint16(in.Port))
			if first, dup := listeners[key]; dup {
				v.add(at+".port", "port %d on %s is already used by %s", in.Port, addr, first)
			} else {
				listeners[key] = at
			}
		}
	}

	defaultOutbound := netip.MustParseAddr(DefaultOutboundAddress)
	for i, out := range n.Outbound {
		at := fmt.Sprintf("networking.outbound[%d]", i)
		portOK := validPort(out.Port)
		if !portOK {
			v.add(at+".port", messagePortRange)
		}
		addr, addrOK := defaultOutbound, true
		if out.Address != "" {
			a, err := netip.ParseAddr(out.Address)
			if err != nil || a.Zone() != "" {
				v.add(at+".address", "must be a valid IP address")
				addrOK = false
			} else {
				addr = a.Unmap()
			}
		}
		switch ref := out.BackendRef; {
		case ref == nil:
			v.add(at+".backendRef", "must be defined (meshext routes outbounds to MeshExternalServices only)")
		default:
			switch ref.Kind {
			case resource.RefMeshExternalService:
				if ref.Name == "" {
					v.add(at+".backendRef.name", "must be set with kind %s", ref.Kind)
				}
			case "":
				v.add(at+".backendRef.kind", "must be defined")
			default:
				v.add(at+".backendRef.kind", "value is not supported")
			}
			if ref.Port != 0 && !validPort(ref.Port) {
				v.add(at+".backendRef.port", messagePortRange)
			}
		}
		if portOK && addrOK {
			key := netip.AddrPortFrom(addr, uint16(out.Port))
			if first, dup := listeners[key]; dup {
				v.add(at+".port", "port %d on %s is already used by %s", out.Port, addr, first)
			} else {
				listeners[key] = at
			}
		}
	}

	if tp := n.TransparentProxying; tp != nil {
		if tp.RedirectPortOutbound != 0 && !validPort(tp.RedirectPortOutbound) {
			v.add("networking.transparentProxying.redirectPortOutbound", messagePortRange)
		}
		if tp.RedirectPortInbound != 0 && !validPort(tp.RedirectPortInbound) {
			v.add("networking.transparentProxying.redirectPortInbound", messagePortRange)
		}
	}
	if n.Admin != nil && !validPort(n.Admin.Port) {
		v.add("networking.admin.port", messagePortRange)
	}
}

// secret: the parser decodes the data; an empty value is useless as a CA or key.
func secret(v *violations, r *resource.Secret) {
	if len(r.Data) == 0 && !r.Malformed {
		field := "data"
		if r.Source.Style == resource.StyleKubernetes {
			field = "data.value"
		}
		v.add(field, messageNotEmpty)
	}
}
