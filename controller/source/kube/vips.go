package kube

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/resource"
)

// Key is a MeshExternalService object's VIP key, "<mesh>/<name>" as
// hostname.Key makes it from the parsed resource.
func Key(u *unstructured.Unstructured) string {
	m := resource.Meta{Name: u.GetName(), Mesh: u.GetLabels()[resource.LabelMesh]}
	if m.Mesh == "" {
		m.Mesh = resource.DefaultMesh
	}
	return hostname.Key(&m)
}

// StatusVIP is the VIP in an object's status.vip.ip (invalid when there is none).
func StatusVIP(u *unstructured.Unstructured) netip.Addr {
	s, _, _ := unstructured.NestedString(u.Object, "status", "vip", "ip")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// StatusVIPs are the VIPs the system namespace's MeshExternalServices hold
// in their status, by Key: what every replica renders, and what a new
// leader starts allocating from. Only the system namespace holds
// MeshExternalServices (one elsewhere is refused by validation). Should two
// objects claim one key or one VIP (a status written by hand), the older
// keeps it (creation time, then name) and the other has none until the
// leader gives it one.
func StatusVIPs(objs []*unstructured.Unstructured) map[string]netip.Addr {
	var withVIP []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetNamespace() == SystemNamespace && StatusVIP(u).IsValid() {
			withVIP = append(withVIP, u)
		}
	}
	slices.SortFunc(withVIP, func(a, b *unstructured.Unstructured) int {
		return cmp.Or(a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time), strings.Compare(a.GetName(), b.GetName()))
	})
	out := map[string]netip.Addr{}
	taken := map[netip.Addr]bool{}
	for _, u := range withVIP {
		k, vip := Key(u), StatusVIP(u)
		if _, dup := out[k]; dup || taken[vip] {
			continue
		}
		out[k], taken[vip] = vip, true
	}
	return out
}

// VIPView is the VIPs of the last Read, as an ipam.Assigner for the model:
// every replica, the leader too, renders a service only with the VIP the
// API server holds for it, so all replicas serve the same VIPs and a VIP
// Envoy has seen is always stored.
func (s *Source) VIPView(cidr netip.Prefix) ipam.Assigner { return &vipView{src: s, cidr: cidr} }

type vipView struct {
	src  *Source
	cidr netip.Prefix
}

func (v *vipView) CIDR() netip.Prefix { return v.cidr }

// PendingError says which services have no VIP in their status yet.
type PendingError struct{ Keys []string }

func (e *PendingError) Error() string {
	return fmt.Sprintf("no VIP yet: the leader replica writes it to status.vip.ip (waiting for %d service(s))", len(e.Keys))
}

func (v *vipView) Assign(keys []string) (map[string]ipam.Lease, error) {
	v.src.mu.Lock()
	defer v.src.mu.Unlock()
	out := make(map[string]ipam.Lease, len(keys))
	var pending []string
	for _, k := range keys {
		if vip, ok := v.src.vips[k]; ok && v.cidr.Contains(vip) {
			out[k] = ipam.Lease{VIP: vip}
		} else {
			pending = append(pending, k)
		}
	}
	if len(pending) > 0 {
		return out, &PendingError{Keys: pending}
	}
	return out, nil
}
