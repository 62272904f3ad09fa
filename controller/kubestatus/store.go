package kubestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/source/kube"
)

// ConfigMapKey is the key of the allocator's state in its ConfigMap.
const ConfigMapKey = "ipam.json"

// apiTimeout bounds each request to the API server.
const apiTimeout = 30 * time.Second

// store is the VIP allocator's state kept by the API server, for the
// leader alone (the Lease is its lock):
//   - the VIP of every live MeshExternalService is its status.vip.ip;
//   - what status cannot hold (the cursor, the serial, the VIPs of deleted
//     services within their release grace) is one ConfigMap in the system
//     namespace, in ipam.json's format.
//
// Load reads both once, with a fresh LIST rather than the informer cache,
// which may not hold the previous leader's last writes yet; from then on
// the allocator's copy is the truth and Save writes the ConfigMap.
type store struct {
	core    kubernetes.Interface
	dyn     dynamic.Interface
	name    string // of the ConfigMap
	loaded  bool
	version string // the ConfigMap's resourceVersion ("" = none yet)
}

func (s *store) Lock() (func(), error) { return func() {}, nil }

func (s *store) Load() (*ipam.State, error) {
	if s.loaded {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	st := &ipam.State{Version: ipam.Version, Entries: map[string]ipam.Entry{}}
	cm, err := s.core.CoreV1().ConfigMaps(kube.SystemNamespace).Get(ctx, s.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s.version = ""
	case err != nil:
		return nil, fmt.Errorf("ipam: read ConfigMap %s/%s: %w", kube.SystemNamespace, s.name, err)
	default:
		if data := cm.Data[ConfigMapKey]; data != "" {
			if err := json.Unmarshal([]byte(data), st); err != nil {
				return nil, fmt.Errorf("ipam: ConfigMap %s/%s key %s is corrupt (%v); delete it to start from the VIPs in status alone",
					kube.SystemNamespace, s.name, ConfigMapKey, err)
			}
		}
		s.version = cm.ResourceVersion
	}
	if st.Entries == nil {
		st.Entries = map[string]ipam.Entry{}
	}
	list, err := s.dyn.Resource(meshExternalServices.GVR()).Namespace(kube.SystemNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("ipam: list MeshExternalServices: %w", err)
	}
	objs := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		objs[i] = &list.Items[i]
	}
	seed(st, kube.StatusVIPs(objs))
	s.loaded = true
	return st, nil
}

// seed puts the live services' VIPs into st: a VIP in status is the
// service's, whatever the ConfigMap remembers.
func seed(st *ipam.State, live map[string]netip.Addr) {
	held := map[netip.Addr]bool{}
	for _, v := range live {
		held[v] = true
	}
	for k, e := range st.Entries {
		if _, ok := live[k]; !ok && held[e.VIP] {
			delete(st.Entries, k) // another service holds it now
		}
	}
	for _, k := range slices.Sorted(maps.Keys(live)) {
		e := st.Entries[k]
		if e.Serial == 0 {
			st.Serial++
			e.Serial = st.Serial
		}
		if e.VIP != live[k] && e.VIP.IsValid() {
			e.Previous = append(e.Previous, e.VIP)
		}
		e.VIP, e.AbsentSince = live[k], time.Time{}
		st.Entries[k] = e
	}
}

// Save writes what status does not hold: the cursor, the serial and the
// entries of deleted services still within their grace.
func (s *store) Save(st *ipam.State) error {
	kept := ipam.State{Version: st.Version, CIDR: st.CIDR, Next: st.Next, Serial: st.Serial, Entries: map[string]ipam.Entry{}}
	for k, e := range st.Entries {
		if !e.AbsentSince.IsZero() {
			kept.Entries[k] = e
		}
	}
	data, err := json.Marshal(kept)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: kube.SystemNamespace, ResourceVersion: s.version,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "meshext"}},
		Data: map[string]string{ConfigMapKey: string(data)},
	}
	cms := s.core.CoreV1().ConfigMaps(kube.SystemNamespace)
	var out *corev1.ConfigMap
	if s.version == "" {
		out, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		out, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		// Someone else wrote it (a leader that did not know it was
		// deposed): read everything again before the next allocation.
		s.loaded = false
		return fmt.Errorf("ipam: write ConfigMap %s/%s: %w", kube.SystemNamespace, s.name, err)
	}
	s.version = out.ResourceVersion
	return nil
}

var meshExternalServices, _ = kube.KindInfoOf(resource.KindMeshExternalService)
