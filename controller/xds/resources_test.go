package xds

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

func TestValidateLooksInsideAny(t *testing.T) {
	good := testListener("l", "c", "out")
	if err := Validate(good); err != nil {
		t.Fatalf("valid listener rejected: %v", err)
	}
	bad := testListener("l", "c", "") // tcp_proxy.stat_prefix is required
	if err := bad.ValidateAll(); err != nil {
		t.Fatalf("precondition: PGV alone should not see inside Any, got %v", err)
	}
	err := Validate(bad)
	if err == nil || !strings.Contains(err.Error(), "StatPrefix") {
		t.Fatalf("Validate(listener with bad tcp_proxy) = %v, want a StatPrefix error", err)
	}
}

func TestValidateTopLevel(t *testing.T) {
	c := testCluster("", 1)
	if err := Validate(c); err == nil || !strings.Contains(err.Error(), "Name") {
		t.Fatalf("cluster without name: got %v", err)
	}
}

func TestSanitizeKeepsPreviousGoodVersion(t *testing.T) {
	prev := &Resources{
		Clusters:  []*clusterv3.Cluster{testCluster("a", 1), testCluster("b", 2)},
		Listeners: []*listenerv3.Listener{testListener("la", "a", "a")},
	}
	badA := testCluster("a", 3)
	badA.ConnectTimeout.Seconds = -1 // must be > 0
	next := &Resources{
		Clusters:  []*clusterv3.Cluster{badA, testCluster("b", 4), testCluster("new", 5)},
		Listeners: []*listenerv3.Listener{testListener("la", "a", "a"), testListener("lnew", "new", "")},
	}
	got, problems := Sanitize(prev, next)
	if len(problems) != 2 {
		t.Fatalf("want 2 problems, got %v", problems)
	}
	if len(got.Clusters) != 3 || got.Clusters[0] != prev.Clusters[0] {
		t.Fatalf("invalid cluster a should be replaced by its previous version, got %v", got.Clusters)
	}
	if got.Clusters[1].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue() != 4 {
		t.Fatalf("valid change to b must pass through")
	}
	if len(got.Listeners) != 1 || got.Listeners[0].GetName() != "la" {
		t.Fatalf("new invalid listener must be dropped, got %v", got.Listeners)
	}
	for _, p := range problems {
		if !strings.Contains(p.Error(), `"a" is invalid, keeping`) && !strings.Contains(p.Error(), `"lnew" is invalid, dropped`) {
			t.Errorf("unexpected problem %v", p)
		}
	}
}

func TestVersionIsContentHash(t *testing.T) {
	v1, _ := versionOf([]*clusterv3.Cluster{testCluster("a", 1), testCluster("b", 2)})
	v2, _ := versionOf([]*clusterv3.Cluster{testCluster("b", 2), testCluster("a", 1)})
	v3, _ := versionOf([]*clusterv3.Cluster{testCluster("a", 1), testCluster("b", 3)})
	if v1 != v2 {
		t.Errorf("order must not change the version: %s vs %s", v1, v2)
	}
	if v1 == v3 {
		t.Errorf("content change must change the version")
	}
}

func TestValidatorRemembersOnlyPasses(t *testing.T) {
	var v Validator
	good := &Resources{Listeners: []*listenerv3.Listener{testListener("l", "c", "out")}}
	bad := &Resources{Listeners: []*listenerv3.Listener{testListener("l", "c", "")}}
	for i := 0; i < 2; i++ {
		if out, errs := v.Sanitize(nil, good); len(errs) != 0 || len(out.Listeners) != 1 {
			t.Fatalf("round %d: good listener: %v", i, errs)
		}
		if out, errs := v.Sanitize(good, bad); len(errs) != 1 || out.Listeners[0] != good.Listeners[0] {
			t.Fatalf("round %d: bad listener must be caught every time and fall back: %v", i, errs)
		}
	}
	if len(v.passed) != 1 {
		t.Fatalf("remembered %d contents, want only the good one", len(v.passed))
	}
}
