// Package kubestatus is the leader replica's work when meshext runs on
// Kubernetes: of all `meshext run --source kubernetes` replicas, the one
// holding a coordination.k8s.io Lease allocates MeshExternalService VIPs
// (controller/ipam, with the API server as its store) and writes Kuma's
// status back (status.vip.ip, status.addresses[], status.hostnameGenerators[]),
// only when it changes. Every replica, the leader too, renders with the VIPs
// status holds (kube.VIPView), so Envoys get the same config from any
// replica and a leader change never changes a VIP.
package kubestatus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/source/kube"
)

// Defaults (client-go's usual leader-election timing).
const (
	DefaultLeaseName     = "meshext-leader"
	DefaultConfigMapName = "meshext-ipam"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// DefaultResync retries failed writes and lets release graces end
	// while nothing else changes.
	DefaultResync = 30 * time.Second
)

// Config tunes the leader.
type Config struct {
	REST   *rest.Config
	Source *kube.Source
	// CIDR of VIPs ("" = ipam.ResolveCIDR's default) and how long a deleted
	// service's VIP stays reserved (0 = for ever), as for files.
	CIDR         string
	ReleaseAfter time.Duration
	// Identity names this replica in the Lease ("" = host name and a random suffix).
	Identity string
	// LeaseName and ConfigMapName are the Lease and the VIP ConfigMap in the system namespace.
	LeaseName, ConfigMapName string
	// Leader-election timing ("0" = the defaults).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Resync                                    time.Duration
	Logger                                    *slog.Logger
}

// Leader elects and, while leading, allocates and writes status.
type Leader struct {
	cfg  Config
	log  *slog.Logger
	core kubernetes.Interface
	dyn  dynamic.Interface

	poke    chan struct{}
	leading atomic.Bool

	mu     sync.Mutex
	latest *model.World
	// written is the status last patched per object (by UID: a deleted
	// and re-created object is another), and when: the cache may not show
	// it yet.
	written map[types.UID]writtenStatus
}

type writtenStatus struct {
	json string
	at   time.Time
}

// New checks cfg; nothing runs until Run.
func New(cfg Config) (*Leader, error) {
	if cfg.Source == nil || cfg.REST == nil {
		return nil, errors.New("kubestatus: Source and REST are required")
	}
	if _, err := ipam.ResolveCIDR(cfg.CIDR); err != nil {
		return nil, err
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.Identity = host + "_" + hex.EncodeToString(b)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.LeaseDuration, DefaultLeaseDuration)
	def(&cfg.RenewDeadline, DefaultRenewDeadline)
	def(&cfg.RetryPeriod, DefaultRetryPeriod)
	def(&cfg.Resync, DefaultResync)
	if cfg.ReleaseAfter > 0 {
		// A deleted service's VIP is released at the first allocation after
		// its grace: look that often, not only on changes.
		cfg.Resync = min(cfg.Resync, max(cfg.ReleaseAfter, time.Second))
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = DefaultLeaseName
	}
	if cfg.ConfigMapName == "" {
		cfg.ConfigMapName = DefaultConfigMapName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	core, err := kubernetes.NewForConfig(cfg.REST)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg.REST)
	if err != nil {
		return nil, err
	}
	return &Leader{cfg: cfg, log: cfg.Logger, core: core, dyn: dyn, poke: make(chan struct{}, 1),
		written: map[types.UID]writtenStatus{}}, nil
}

// Identity is this replica's name in the Lease.
func (l *Leader) Identity() string { return l.cfg.Identity }

// Leading reports whether this replica holds the Lease now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Compiled takes the latest model (run.Config.Compiled); it never blocks.
func (l *Leader) Compiled(w *model.World) {
	l.mu.Lock()
	l.latest = w
	l.mu.Unlock()
	select {
	case l.poke <- struct{}{}:
	default:
	}
}

// Run takes part in the election until ctx ends: it leads whenever it
// holds the Lease, and stands again after losing it. On the way out it
// releases the Lease, so another replica takes over at once.
func (l *Leader) Run(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: l.cfg.LeaseName, Namespace: kube.SystemNamespace},
		Client:     l.core.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.cfg.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   l.cfg.LeaseDuration,
			RenewDeadline:   l.cfg.RenewDeadline,
			RetryPeriod:     l.cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            "meshext",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: l.lead,
				OnStoppedLeading: func() { l.log.Info("leader election: not leading", "identity", l.cfg.Identity) },
				OnNewLeader: func(id string) {
					l.log.Info("leader election: leader is "+id, "identity", l.cfg.Identity, "leader", id)
				},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
	}
	return nil
}

// lead allocates and writes status until ctx ends (leadership lost).
func (l *Leader) lead(ctx context.Context) {
	l.leading.Store(true)
	defer l.leading.Store(false)
	l.log.Info("leader election: leading; allocating VIPs and writing status", "identity", l.cfg.Identity)
	tick := time.NewTicker(l.cfg.Resync)
	defer tick.Stop()
	var alloc *ipam.Allocator
	for {
		if alloc == nil {
			a, err := ipam.OpenStore(&store{core: l.core, dyn: l.dyn, name: l.cfg.ConfigMapName}, l.cfg.CIDR)
			if err != nil {
				l.log.Error("cannot read the VIPs from the API server; retrying", "error", err)
			} else {
				a.SetReleaseAfter(l.cfg.ReleaseAfter)
				alloc = a
			}
		}
		if alloc != nil {
			l.mu.Lock()
			w := l.latest
			l.mu.Unlock()
			if w != nil {
				l.reconcile(ctx, alloc, w)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.poke:
		case <-tick.C:
		}
	}
}

// reconcile gives every valid service of the system namespace a VIP and
// writes each status that differs from what the object holds.
func (l *Leader) reconcile(ctx context.Context, alloc *ipam.Allocator, w *model.World) {
	objs := map[types.NamespacedName]*unstructured.Unstructured{}
	live := map[types.UID]bool{}
	var keys []string
	for _, u := range l.cfg.Source.MeshExternalServices() {
		objs[types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}] = u
		live[u.GetUID()] = true
		// A service that exists keeps its VIP, even while it is invalid.
		if u.GetNamespace() == kube.SystemNamespace && kube.StatusVIP(u).IsValid() {
			keys = append(keys, kube.Key(u))
		}
	}
	var services []*model.Service
	for _, s := range w.Services {
		if s.Resource != nil && s.Resource.Namespace == kube.SystemNamespace {
			services = append(services, s)
			keys = append(keys, hostname.Key(&s.Resource.Meta))
		}
	}
	leases, err := alloc.Assign(keys)
	if err != nil {
		l.log.Error("VIP allocation", "error", err)
		if leases == nil {
			return
		}
	}
	wrote := 0
	for _, s := range services {
		nn := types.NamespacedName{Namespace: s.Resource.Namespace, Name: s.Resource.Name}
		u := objs[nn]
		if u == nil {
			continue // deleted since this model was built
		}
		st := statusOf(s, leases[hostname.Key(&s.Resource.Meta)].VIP, kube.SystemNamespace)
		if sameStatus(u.Object["status"], st) {
			continue
		}
		body, err := json.Marshal(map[string]any{"status": st})
		if err != nil {
			continue
		}
		l.mu.Lock()
		prev, ok := l.written[u.GetUID()]
		l.mu.Unlock()
		if ok && prev.json == string(body) && time.Since(prev.at) < l.cfg.Resync {
			continue // written; the cache has not caught up yet
		}
		if err := l.patchStatus(ctx, nn, body); err != nil {
			if !apierrors.IsNotFound(err) {
				l.log.Error("cannot write status", "object", kube.Ref(s.Resource.Kind, nn.Namespace, nn.Name), "error", err)
			}
			continue
		}
		wrote++
		l.mu.Lock()
		l.written[u.GetUID()] = writtenStatus{json: string(body), at: time.Now()}
		l.mu.Unlock()
	}
	l.mu.Lock()
	for uid := range l.written {
		if !live[uid] {
			delete(l.written, uid)
		}
	}
	l.mu.Unlock()
	if wrote > 0 {
		l.log.Info("status written", "services", wrote)
	}
}

func (l *Leader) patchStatus(ctx context.Context, nn types.NamespacedName, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	_, err := l.dyn.Resource(meshExternalServices.GVR()).Namespace(nn.Namespace).
		Patch(ctx, nn.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "meshext"}, "status")
	if err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	return nil
}
