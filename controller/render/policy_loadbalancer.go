package render

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/resource"
)

// MeshLoadBalancingStrategy, cluster side: the algorithm and its settings,
// as Kuma's loadBalancerConfigurer (v2.14). localityAwareness is refused by
// validation (a MeshExternalService's endpoints have no zones).
func configureLoadBalancer(conf *resource.MeshLoadBalancingStrategyConf, c *clusterv3.Cluster) error {
	lb := conf.LoadBalancer
	if lb == nil {
		return nil
	}
	switch lb.Type {
	case resource.LBRoundRobin:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case resource.LBRandom:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case resource.LBLeastRequest:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		if lr := lb.LeastRequest; lr != nil {
			cfg := &clusterv3.Cluster_LeastRequestLbConfig{}
			if lr.ChoiceCount != nil {
				cfg.ChoiceCount = wrapperspb.UInt32(*lr.ChoiceCount)
			}
			if lr.ActiveRequestBias != nil {
				f, err := lr.ActiveRequestBias.Float()
				if err != nil {
					return fmt.Errorf("leastRequest.activeRequestBias: %w", err)
				}
				cfg.ActiveRequestBias = &corev3.RuntimeDouble{DefaultValue: f}
			}
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: cfg}
		}
	case resource.LBRingHash:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		if rh := lb.RingHash; rh != nil {
			cfg := &clusterv3.Cluster_RingHashLbConfig{}
			if rh.MinRingSize != nil {
				cfg.MinimumRingSize = wrapperspb.UInt64(uint64(*rh.MinRingSize))
			}
			if rh.MaxRingSize != nil {
				cfg.MaximumRingSize = wrapperspb.UInt64(uint64(*rh.MaxRingSize))
			}
			if rh.HashFunction != nil && *rh.HashFunction == resource.HashFunctionMurmurHash2 {
				cfg.HashFunction = clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2
			}
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: cfg}
		}
	case resource.LBMaglev:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		if m := lb.Maglev; m != nil {
			cfg := &clusterv3.Cluster_MaglevLbConfig{}
			if m.TableSize != nil {
				cfg.TableSize = wrapperspb.UInt64(uint64(*m.TableSize))
			}
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: cfg}
		}
	}
	return nil
}

// hashPolicies is MeshLoadBalancingStrategy's route side: the hash
// policies of RingHash and Maglev (Kuma's getHashPolicies: the top-level
// hashPolicies, else the load balancer's own).
func hashPolicies(conf *resource.MeshLoadBalancingStrategyConf) []*routev3.RouteAction_HashPolicy {
	if conf == nil {
		return nil
	}
	list := conf.HashPolicies
	if list == nil && conf.LoadBalancer != nil {
		switch lb := conf.LoadBalancer; lb.Type {
		case resource.LBRingHash:
			if lb.RingHash != nil {
				list = lb.RingHash.HashPolicies
			}
		case resource.LBMaglev:
			if lb.Maglev != nil {
				list = lb.Maglev.HashPolicies
			}
		}
	}
	if list == nil {
		return nil
	}
	out := make([]*routev3.RouteAction_HashPolicy, 0, len(*list))
	for _, hp := range *list {
		p := &routev3.RouteAction_HashPolicy{}
		if hp.Terminal != nil {
			p.Terminal = *hp.Terminal
		}
		switch hp.Type {
		case resource.HashHeader:
			if hp.Header == nil {
				continue
			}
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: hp.Header.Name}}
		case resource.HashCookie:
			if hp.Cookie == nil {
				continue
			}
			ck := &routev3.RouteAction_HashPolicy_Cookie{Name: hp.Cookie.Name}
			if hp.Cookie.TTL != nil {
				ck.Ttl = durationpb.New(hp.Cookie.TTL.Duration)
			}
			if hp.Cookie.Path != nil {
				ck.Path = *hp.Cookie.Path
			}
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_Cookie_{Cookie: ck}
		case resource.HashConnection:
			sourceIP := false
			if hp.Connection != nil && hp.Connection.SourceIP != nil {
				sourceIP = *hp.Connection.SourceIP
			}
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{
				ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: sourceIP},
			}
		case resource.HashSourceIP:
			// Kuma's schema lists SourceIP; its renderer sets nothing for it.
			// meshext hashes the source address, which is what the name says.
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{
				ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
			}
		case resource.HashQueryParameter:
			if hp.QueryParameter == nil {
				continue
			}
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: hp.QueryParameter.Name}}
		case resource.HashFilterState:
			if hp.FilterState == nil {
				continue
			}
			p.PolicySpecifier = &routev3.RouteAction_HashPolicy_FilterState_{FilterState: &routev3.RouteAction_HashPolicy_FilterState{Key: hp.FilterState.Key}}
		default:
			continue
		}
		out = append(out, p)
	}
	return out
}
