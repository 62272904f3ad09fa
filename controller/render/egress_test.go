package render

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/meshext/meshext/controller/resource"
)

// A MeshRetry on the way to an egress keeps what it says and never loses
// the egress failover: connect-failure and refused-stream in retryOn,
// retries to another egress first (previous_hosts), at least two retries.
func TestWithEgressFailover(t *testing.T) {
	prevHosts := func(p *routev3.RetryPolicy) int {
		n := 0
		for _, hp := range p.RetryHostPredicate {
			if hp.Name == previousHostsPredicateName {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		name        string
		meshRetry   *resource.MeshRetryConf
		protocol    string
		wantOn      string
		wantRetries uint32
	}{
		{"no MeshRetry", nil, resource.ProtocolHTTP, "connect-failure,refused-stream", 2},
		{"numRetries 0 (no retries of its own)", &resource.MeshRetryConf{HTTP: &resource.MeshRetryHTTP{NumRetries: u32(0)}}, resource.ProtocolHTTP, "connect-failure,refused-stream", 2},
		{"Kuma's http default", &resource.MeshRetryConf{HTTP: &resource.MeshRetryHTTP{NumRetries: u32(5)}}, resource.ProtocolHTTP, "gateway-error,connect-failure,refused-stream", 5},
		{"one retry on 5xx and 503, previous hosts asked for",
			&resource.MeshRetryConf{HTTP: &resource.MeshRetryHTTP{NumRetries: u32(1), RetryOn: &[]string{"5xx", "503"},
				HostSelection: &[]resource.MeshRetryPredicate{{Predicate: resource.PredicateOmitPreviousHosts}}}},
			resource.ProtocolHTTP, "5xx,retriable-status-codes,connect-failure,refused-stream", 2},
		{"grpc codes only", &resource.MeshRetryConf{GRPC: &resource.MeshRetryGRPC{RetryOn: &[]string{"Unavailable"}}}, resource.ProtocolGRPC, "unavailable,connect-failure,refused-stream", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p *routev3.RetryPolicy
			if c.meshRetry != nil {
				var err error
				if p, err = retryPolicy(c.meshRetry, c.protocol); err != nil {
					t.Fatal(err)
				}
			}
			got := withEgressFailover(p)
			if got.RetryOn != c.wantOn || got.GetNumRetries().GetValue() != c.wantRetries {
				t.Errorf("retryOn %q numRetries %d, want %q %d", got.RetryOn, got.GetNumRetries().GetValue(), c.wantOn, c.wantRetries)
			}
			if n := prevHosts(got); n != 1 {
				t.Errorf("%d previous_hosts predicates, want 1", n)
			}
			if got.HostSelectionRetryMaxAttempts < egressHostSelectionAttempts {
				t.Errorf("host selection attempts %d", got.HostSelectionRetryMaxAttempts)
			}
			if err := validate(got); err != nil {
				t.Errorf("invalid: %v", err)
			}
		})
	}
	if p := egressRetryPolicy(); p.RetryOn != "connect-failure,refused-stream" || p.GetNumRetries().GetValue() != egressConnectAttempts-1 {
		t.Errorf("egressRetryPolicy %v", p)
	}
}

// tcp_proxy on the way to an egress: MeshRetry's tcp.maxConnectAttempt
// when it is more, else the egress failover's attempts.
func TestEgressConnects(t *testing.T) {
	for _, c := range []struct {
		meshRetry *uint32 // nil: no MeshRetry
		want      uint32
	}{{nil, egressConnectAttempts}, {u32(1), egressConnectAttempts}, {u32(5), 5}} {
		tp := &tcpproxyv3.TcpProxy{}
		if c.meshRetry != nil {
			tcpProxyRetry(&resource.MeshRetryConf{TCP: &resource.MeshRetryTCP{MaxConnectAttempt: c.meshRetry}}, tp)
		}
		egressConnects(tp)
		if got := tp.GetMaxConnectAttempts().GetValue(); got != c.want {
			t.Errorf("MeshRetry %v: max_connect_attempts %d, want %d", c.meshRetry, got, c.want)
		}
	}
}
func u32(n uint32) *uint32 { return &n }
