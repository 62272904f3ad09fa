package render

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
)

// Kuma's policies enter rendering here. For each node and service,
// policiesFor asks controller/policy for the effective conf of every kind;
// small configurers, one per aspect and each in its own file, apply it:
//
//   - cluster side (applyClusterPolicies, in policy.ConfKinds order, so a
//     later kind wins a field two kinds set, as in Kuma):
//     MeshLoadBalancingStrategy (policy_loadbalancer.go), MeshTimeout
//     (policy_timeout.go), MeshHealthCheck (policy_healthcheck.go),
//     MeshCircuitBreaker (policy_circuitbreaker.go). They are functions of
//     (conf, *clusterv3.Cluster) and do not care which Envoy the cluster
//     is on (a sidecar's, or an egress's).
//   - listener side: MeshTCPRoute (policy_tcproute.go), MeshTimeout and
//     MeshRetry on tcp_proxy, MeshAccessLog (policy_accesslog.go).
//   - HTTP: MeshHTTPRoute's route table (policy_httproute.go), and per
//     route MeshTimeout, MeshRetry (policy_retry.go) and hash policies.
//
// Through a ZoneEgress (mesh mTLS) the kinds split between the two Envoys
// (see hop in egress.go): policy.For gives the workload all but the
// cluster-side kinds, and the egress those, MeshTimeout and MeshAccessLog;
// policyCluster then shapes the egress's upstream cluster.
//
// A World built by hand (no Resolver) renders as if no policy applied.

// policyState is a Render's policy memo. mu guards effective, clusters,
// reach and notes, which services rendering on several goroutines share
// (renderer.each); otel and fifo are only touched by the filters built in
// order (see node).
type policyState struct {
	mu sync.Mutex
	// effective: node id + cluster name -> the service's effective confs.
	effective map[string]*policy.Effective
	// clusters: cluster name + cluster-side confs -> the cluster for them,
	// shared by every node with the same effective cluster settings.
	clusters map[string]*clusterVariant
	// reach: node id + cluster name -> whether the node's source may
	// reach the service (routes to another service check it).
	reach map[string]reachability
	// notes are per-node warnings found while building filters.
	notes map[string][]string
	// otel: node id -> the OpenTelemetry collectors its access logs use.
	otel map[string]*otelClusters
	// fifo: node id -> the access-log relay FIFO its Tcp backends write to.
	fifo map[string]string
}

type clusterVariant struct {
	cluster *clusterv3.Cluster
	digest  lazyDigest
}

type reachability struct {
	allowed bool
	body    string // the 403 body when denied
}

func newPolicyState() *policyState {
	return &policyState{
		effective: map[string]*policy.Effective{}, clusters: map[string]*clusterVariant{},
		reach: map[string]reachability{}, notes: map[string][]string{}, otel: map[string]*otelClusters{},
		fifo: map[string]string{},
	}
}

// policiesFor is every kind's effective conf for traffic from node n to s
// (nil when no policy applies or the World has no Resolver): at an egress
// and on the way to one, only the kinds that apply there (policy.For).
func (r *renderer) policiesFor(n *Node, s *model.Service) *policy.Effective {
	if r.world.Policies == nil || s.Resource == nil {
		return nil
	}
	key := n.ID + "\x00" + s.ClusterName()
	r.pol.mu.Lock()
	eff, ok := r.pol.effective[key]
	r.pol.mu.Unlock()
	if ok {
		return eff
	}
	eff = r.world.Policies.For(policy.Proxy{ID: n.ID, Dataplane: n.Dataplane, ZoneEgress: n.ZoneEgress, ViaEgress: r.hopOf(n, s).viaEgress}, s.Resource)
	r.pol.mu.Lock()
	defer r.pol.mu.Unlock()
	if old, ok := r.pol.effective[key]; ok {
		return old
	}
	r.pol.effective[key] = eff
	return eff
}

// confOf is the effective conf of kind k, typed (nil when none applies).
func confOf[T any](eff *policy.Effective, k resource.Kind) *T {
	if eff == nil || eff.Confs[k] == nil {
		return nil
	}
	v, _ := eff.Confs[k].Value.(*T)
	return v
}

// routeConfOf is kind k's conf for the routes of MeshHTTPRoute key (its
// RouteConfs when some to[] item targets that route, else the service's).
func routeConfOf[T any](eff *policy.Effective, key *policy.RouteKey, k resource.Kind) *T {
	if eff != nil && key != nil {
		if c := eff.RouteConfs[*key][k]; c != nil {
			v, _ := c.Value.(*T)
			return v
		}
	}
	return confOf[T](eff, k)
}

// applyClusterPolicies applies the cluster-side kinds of eff to c, in
// Kuma's plugin order. It is the one hook for any Envoy that holds the
// upstream cluster of a MeshExternalService of this protocol.
func applyClusterPolicies(eff *policy.Effective, protocol string, c *clusterv3.Cluster) error {
	return applyClusterPoliciesWith(eff, protocol, c, nil)
}

// applyClusterPoliciesWith is applyClusterPolicies with configureClusterTimeouts' packs.
func applyClusterPoliciesWith(eff *policy.Effective, protocol string, c *clusterv3.Cluster, packs *keyed[timeoutKey, *anypb.Any]) error {
	if eff == nil {
		return nil
	}
	for _, k := range policy.ConfKinds {
		conf := eff.Confs[k]
		if conf == nil {
			continue
		}
		var err error
		switch v := conf.Value.(type) {
		case *resource.MeshLoadBalancingStrategyConf:
			err = configureLoadBalancer(v, c)
		case *resource.MeshTimeoutConf:
			err = configureClusterTimeouts(v, protocol, c, packs)
		case *resource.MeshHealthCheckConf:
			err = configureHealthCheck(v, protocol, c)
		case *resource.MeshCircuitBreakerConf:
			err = configureCircuitBreaker(v, c)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// clusterSettings are the parts of eff that shape a cluster: two nodes
// with equal settings share one cluster message.
func clusterSettings(eff *policy.Effective) ([]byte, error) {
	if eff == nil {
		return nil, nil
	}
	var v struct {
		LB      *resource.LoadBalancer           `json:"lb,omitempty"`
		HC      *resource.MeshHealthCheckConf    `json:"hc,omitempty"`
		CB      *resource.MeshCircuitBreakerConf `json:"cb,omitempty"`
		Timeout *resource.MeshTimeoutConf        `json:"timeout,omitempty"`
		HTTP    *resource.MeshTimeoutHTTP        `json:"http,omitempty"`
	}
	if lb := confOf[resource.MeshLoadBalancingStrategyConf](eff, resource.KindMeshLoadBalancingStrategy); lb != nil {
		v.LB = lb.LoadBalancer
	}
	v.HC = confOf[resource.MeshHealthCheckConf](eff, resource.KindMeshHealthCheck)
	v.CB = confOf[resource.MeshCircuitBreakerConf](eff, resource.KindMeshCircuitBreaker)
	if t := confOf[resource.MeshTimeoutConf](eff, resource.KindMeshTimeout); t != nil {
		// Only the cluster's timeouts: request and stream-idle timeouts are the routes'.
		v.Timeout = &resource.MeshTimeoutConf{ConnectionTimeout: t.ConnectionTimeout, IdleTimeout: t.IdleTimeout}
		if t.HTTP != nil {
			v.HTTP = &resource.MeshTimeoutHTTP{MaxStreamDuration: t.HTTP.MaxStreamDuration, MaxConnectionDuration: t.HTTP.MaxConnectionDuration}
		}
	}
	return json.Marshal(v)
}

// clusterSettingsOf is clusterSettings(eff), encoded once per set of
// confs: the policy Resolver hands the same *Conf to every service the
// same policies select, so at 10k services the encoding is not 10k times.
func (r *renderer) clusterSettingsOf(eff *policy.Effective) ([]byte, error) {
	if eff == nil {
		return nil, nil
	}
	var key settingsKey
	for i, k := range settingsKinds {
		key[i] = eff.Confs[k]
	}
	s, err := r.settings.get(key, func() (string, error) {
		b, err := clusterSettings(eff)
		return string(b), err
	})
	return []byte(s), err
}

// settingsKinds are the kinds clusterSettings reads; settingsKey their confs.
var settingsKinds = [...]resource.Kind{resource.KindMeshLoadBalancingStrategy, resource.KindMeshHealthCheck, resource.KindMeshCircuitBreaker, resource.KindMeshTimeout}

type settingsKey [len(settingsKinds)]*policy.Conf

// policyCluster is rs's cluster as node n's policies shape it: rs's own
// cluster when none applies, else a copy with the configurers applied,
// built once per distinct cluster setting.
func (r *renderer) policyCluster(n *Node, rs *rendered) (*clusterv3.Cluster, lazyDigest, error) {
	fk := filterKey{node: n.ID, cluster: rs.cluster.Name}
	if e := r.memo.shapedCluster(fk, rs.cluster); e != nil {
		return e.cluster, e.digest, nil
	}
	eff := r.policiesFor(n, rs.svc)
	settings, err := r.clusterSettingsOf(eff)
	if err != nil {
		return nil, nil, err
	}
	if settings == nil {
		r.memo.keepShaped(fk, &memoShaped{base: rs.cluster, cluster: rs.cluster, digest: rs.digest})
		return rs.cluster, rs.digest, nil
	}
	key := rs.cluster.Name + "\x00" + string(settings)
	vkey := variantKey{base: rs.cluster, settings: string(settings)}
	if v := r.variant(key, vkey); v != nil {
		r.memo.keepShaped(fk, &memoShaped{base: rs.cluster, cluster: v.cluster, digest: v.digest, vkey: vkey})
		return v.cluster, v.digest, nil
	}
	c := policyClone(rs.cluster)
	if err := applyClusterPoliciesWith(eff, rs.svc.Protocol, c, &r.timeoutOptions); err != nil {
		return nil, nil, err
	}
	if err := validate(c); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	v := r.keepVariant(key, vkey, &clusterVariant{cluster: c, digest: digestLater(c, rs.secrets)})
	r.memo.keepShaped(fk, &memoShaped{base: rs.cluster, cluster: v.cluster, digest: v.digest, vkey: vkey})
	return v.cluster, v.digest, nil
}

// variant is the cluster variant key already has in this Render, or that
// the memo kept as vkey.
func (r *renderer) variant(key string, vkey variantKey) *clusterVariant {
	r.pol.mu.Lock()
	defer r.pol.mu.Unlock()
	if v, ok := r.pol.clusters[key]; ok {
		return v
	}
	v := r.memo.variant(vkey)
	if v != nil {
		r.pol.clusters[key] = v
	}
	return v
}

// keepVariant records v as key's variant, unless another goroutine came
// first: then that one is key's, so every node shares one message.
func (r *renderer) keepVariant(key string, vkey variantKey, v *clusterVariant) *clusterVariant {
	r.pol.mu.Lock()
	defer r.pol.mu.Unlock()
	if old, ok := r.pol.clusters[key]; ok {
		return old
	}
	r.pol.clusters[key] = v
	r.memo.keepVariant(vkey, v)
	return v
}

// reaches reports whether node n's source may call s (the decision its own
// listener would take), for routes that lead from another service to s:
// a route never reaches a service its source could not call directly. Via
// the egresses the workload decides nothing: the route's request or
// connection goes to s's egress chain (s's SNI), which authorizes the
// caller's identity for s as for a direct call.
func (r *renderer) reaches(n *Node, s *model.Service) reachability {
	if r.hopOf(n, s).viaEgress {
		return reachability{allowed: true}
	}
	key := n.ID + "\x00" + s.ClusterName()
	r.pol.mu.Lock()
	v, ok := r.pol.reach[key]
	r.pol.mu.Unlock()
	if ok {
		return v
	}
	src := SourceIdentity(n.Dataplane, s.Mesh)
	cfg := AuthzConfig(r.world, nodeMeta(n), src, []*model.Service{s})
	cfg.DefaultService = s.Name
	v = reachability{}
	if t, err := core.Compile(&cfg); err != nil {
		v.body = fmt.Sprintf("meshext: access to MeshExternalService %q cannot be decided: %v\n", s.Name, err)
	} else if e := t.Default(); e.Decide().Allowed() {
		v.allowed = true
	} else {
		res := egress.Result{Entry: e, Decision: e.Decide(), Source: src.Service}
		v.body = res.DenyBody()
	}
	r.pol.mu.Lock()
	r.pol.reach[key] = v
	r.pol.mu.Unlock()
	return v
}

// note records a warning for node n.
func (r *renderer) note(n *Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.pol.mu.Lock()
	defer r.pol.mu.Unlock()
	if !slices.Contains(r.pol.notes[n.ID], msg) {
		r.pol.notes[n.ID] = append(r.pol.notes[n.ID], msg)
	}
}
