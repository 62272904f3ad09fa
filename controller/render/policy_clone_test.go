package render

import (
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
)

// TestPolicyClonesLeaveTheBase: policyClone shares the base cluster's
// messages with the clone, so every cluster configurer must replace what it
// sets and change in place only the fields policyClone copies. Each policy
// case's effective confs are applied to every service's base cluster, once
// as rendered and once with every field a configurer might edit already set
// (thresholds, outlier detection, common LB config, a health check, HTTP
// protocol options); the base must come out byte for byte as it went in, and
// the clone must be what a deep copy would have given.
func TestPolicyClonesLeaveTheBase(t *testing.T) {
	checked := 0
	for _, input := range policyCases(t) {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			w := buildPolicyCase(t, input)
			r := &renderer{opts: Options{AccessLogFIFODir: policyFIFODir}, world: w, shared: &sharedMemo{}, pol: newPolicyState()}
			nodes := []*Node{{ID: DefaultNodeID}}
			for _, dp := range w.Dataplanes {
				nodes = append(nodes, &Node{ID: NodeID(dp), Dataplane: dp})
			}
			for _, s := range w.Services {
				if s.Broken != "" {
					continue
				}
				rs, err := r.service(s)
				if err != nil {
					t.Fatalf("%s: %v", s.Name, err)
				}
				for _, base := range []*clusterv3.Cluster{rs.cluster, everyEditedField(rs.cluster)} {
					for _, n := range nodes {
						checked += applyToClone(t, r, n, s, base)
					}
				}
			}
		})
	}
	if checked == 0 {
		t.Fatal("no service had a cluster policy: the test checks nothing")
	}
}

// applyToClone applies n's effective confs for s to a policyClone and to a
// deep copy of base; it reports 1 if there was anything to apply.
func applyToClone(t *testing.T, r *renderer, n *Node, s *model.Service, base *clusterv3.Cluster) int {
	t.Helper()
	eff := r.policiesFor(n, s)
	if eff == nil {
		return 0
	}
	before, err := proto.MarshalOptions{Deterministic: true}.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	deep := proto.Clone(base).(*clusterv3.Cluster)
	if err := applyClusterPolicies(eff, s.Protocol, deep); err != nil {
		t.Fatalf("%s on %s: %v", s.Name, n.ID, err)
	}
	c := policyClone(base)
	if err := applyClusterPolicies(eff, s.Protocol, c); err != nil {
		t.Fatalf("%s on %s: %v", s.Name, n.ID, err)
	}
	after, err := proto.MarshalOptions{Deterministic: true}.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("%s on %s: a configurer changed the base cluster through its clone", s.Name, n.ID)
	}
	if !proto.Equal(c, deep) {
		t.Errorf("%s on %s: the clone differs from a deep copy with the same policies", s.Name, n.ID)
	}
	return 1
}

// everyEditedField is base with a value in each field a cluster configurer
// may edit in place.
func everyEditedField(base *clusterv3.Cluster) *clusterv3.Cluster {
	c := proto.Clone(base).(*clusterv3.Cluster)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
		{Priority: corev3.RoutingPriority_DEFAULT, MaxConnections: wrapperspb.UInt32(7)},
		{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(9)},
	}}
	c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), Interval: durationpb.New(7e9)}
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: nil, IgnoreNewHostsUntilFirstHc: true}
	hcs := make([]*corev3.HealthCheck, 1, 4) // room to append in place
	hcs[0] = &corev3.HealthCheck{Timeout: durationpb.New(1e9), Interval: durationpb.New(2e9),
		HealthChecker: &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}}
	c.HealthChecks = hcs
	return c
}

// A clone is its base, field for field (the oneofs and maps too), without
// sharing the protobuf runtime's own state.
func TestPolicyCloneEqualsItsBase(t *testing.T) {
	base := everyEditedField(&clusterv3.Cluster{
		Name:                          "c",
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		LbConfig:                      &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{}},
		ConnectTimeout:                durationpb.New(3),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(7),
	})
	c := policyClone(base)
	if !proto.Equal(c, base) {
		t.Fatalf("clone %v\nbase  %v", c, base)
	}
	if c.ProtoReflect() == base.ProtoReflect() || proto.Size(c) != proto.Size(base) {
		t.Fatal("the clone is not a message of its own")
	}
}
