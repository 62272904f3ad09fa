package xds

import (
	"context"
	"maps"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestValidatorRoundsForgetIdentities: a message that passed is taken on
// identity for the rest of its round and the next (render hands the same
// message again for an unchanged service), never longer, and a bad one is
// caught every time.
func TestValidatorRoundsForgetIdentities(t *testing.T) {
	var v Validator
	l := testListener("l", "c", "out")
	res := &Resources{Listeners: []*listenerv3.Listener{l}}
	v.Round()
	if _, errs := v.Sanitize(nil, res); len(errs) != 0 {
		t.Fatal(errs)
	}
	if _, ok := v.same[l]; !ok {
		t.Fatal("a message that passed is not remembered by identity")
	}
	v.Round()
	if _, errs := v.Sanitize(nil, res); len(errs) != 0 {
		t.Fatal(errs)
	}
	v.Round()
	v.Round()
	if len(v.same)+len(v.last) != 0 {
		t.Fatalf("rounds without the message still hold %d identities", len(v.same)+len(v.last))
	}
	bad := &Resources{Listeners: []*listenerv3.Listener{testListener("l", "c", "")}}
	for i := 0; i < 2; i++ {
		v.Round()
		if out, errs := v.Sanitize(res, bad); len(errs) != 1 || out.Listeners[0] != l {
			t.Fatalf("round %d: bad listener must be caught every time and fall back: %v", i, errs)
		}
	}
}

// TestValidatorTakesPackedConfigsOnIdentity: in a new listener, a packed
// filter config (Any) that passed in this round or the last is not unpacked
// again, while a new one is, and after two rounds without it the Any is
// unpacked again. The Any is corrupted in place to see whether it was
// unpacked (render never changes a message it handed over).
func TestValidatorTakesPackedConfigsOnIdentity(t *testing.T) {
	var v Validator
	l1 := testListener("l", "c", "out")
	shared := l1.FilterChains[0].Filters[0].GetTypedConfig()
	v.Round()
	if _, errs := v.Sanitize(nil, &Resources{Listeners: []*listenerv3.Listener{l1}}); len(errs) != 0 {
		t.Fatal(errs)
	}
	good := shared.Value
	shared.Value = []byte{0xff} // not a TcpProxy any more
	v.Round()
	// A new listener (new identity, new content) around the same Any.
	l2 := &listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.2", 0), FilterChains: l1.FilterChains}
	if _, errs := v.Sanitize(nil, &Resources{Listeners: []*listenerv3.Listener{l2}}); len(errs) != 0 {
		t.Fatalf("the Any that passed last round was unpacked again: %v", errs)
	}
	if err := Validate(l2); err == nil {
		t.Fatal("the corrupted Any passes without a Validator: the test checks nothing")
	}
	// A new Any with a bad config in a new listener is caught.
	bad := testListener("l", "c", "")
	if _, errs := v.Sanitize(nil, &Resources{Listeners: []*listenerv3.Listener{bad}}); len(errs) != 1 {
		t.Fatalf("a new bad Any passed: %v", errs)
	}
	v.Round()
	v.Round()
	l3 := &listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.3", 0), FilterChains: l1.FilterChains}
	if _, errs := v.Sanitize(nil, &Resources{Listeners: []*listenerv3.Listener{l3}}); len(errs) != 1 {
		t.Fatalf("two rounds later the Any is still taken on identity: %v", errs)
	}
	shared.Value = good
}

// TestSnapshotVersionsAreDeltaVersions: the per-resource hashes Update
// computes (once per message, remembered by identity for one Update) are
// the snapshot's delta versions, equal to what go-control-plane would
// compute itself, and a resource's version moves exactly when it changes.
func TestSnapshotVersionsAreDeltaVersions(t *testing.T) {
	a, b := testCluster("a", 1), testCluster("b", 2)
	var memo hashMemo
	snap := func(cs ...*clusterv3.Cluster) *cachev3.Snapshot {
		t.Helper()
		s, err := snapshotWith(&Resources{Clusters: cs, Listeners: []*listenerv3.Listener{testListener("l", "a", "out")}}, memo.hash, nil)
		if err != nil {
			t.Fatal(err)
		}
		memo.turn()
		// What go-control-plane computes when the snapshot has no map.
		fresh := &cachev3.Snapshot{Resources: s.Resources}
		if err := fresh.ConstructVersionMap(); err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(s.VersionMap, fresh.VersionMap, maps.Equal) {
			t.Fatalf("version map %v, go-control-plane's %v", s.VersionMap, fresh.VersionMap)
		}
		return s
	}
	s1 := snap(a, b)
	b2 := testCluster("b", 3)
	s2 := snap(a, b2)
	v1, v2 := s1.GetVersionMap(resourcev3.ClusterType), s2.GetVersionMap(resourcev3.ClusterType)
	if v1["a"] != v2["a"] || v1["b"] == v2["b"] {
		t.Errorf("versions %v then %v: want a's kept and b's moved", v1, v2)
	}
	if s1.GetVersion(resourcev3.ClusterType) == s2.GetVersion(resourcev3.ClusterType) {
		t.Errorf("CDS version unchanged after a cluster changed")
	}
	if s1.GetVersion(resourcev3.ListenerType) != s2.GetVersion(resourcev3.ListenerType) {
		t.Errorf("LDS version moved though no listener changed")
	}
	if _, ok := memo.hashes.last[b]; ok {
		t.Errorf("the hash of a message no longer delivered is still held")
	}
	if _, ok := memo.hashes.last[a]; !ok {
		t.Errorf("the hash of a message delivered again is not remembered")
	}
}

// TestUpdateVersionsFollowContent: Update keeps a type's version for the
// same content in new messages, and moves it for a change.
func TestUpdateVersionsFollowContent(t *testing.T) {
	ctx := context.Background()
	s := NewServer(ctx, nil)
	version := func(cs ...*clusterv3.Cluster) string {
		t.Helper()
		if err := s.Update(ctx, map[string]*Resources{"n": {Clusters: cs}}); err != nil {
			t.Fatal(err)
		}
		snap, err := s.cache.ordered.GetSnapshot("n")
		if err != nil {
			t.Fatal(err)
		}
		return snap.GetVersion(resourcev3.ClusterType)
	}
	a := testCluster("a", 1)
	v1 := version(a)
	if v2 := version(a); v2 != v1 {
		t.Errorf("same message, version %s then %s", v1, v2)
	}
	if v3 := version(testCluster("a", 1)); v3 != v1 {
		t.Errorf("same content in a new message, version %s then %s", v1, v3)
	}
	if v4 := version(testCluster("a", 2)); v4 == v1 {
		t.Errorf("changed content kept version %s", v1)
	}
}

// TestUpdateTakesTheValidatorsHashes: the hashes the Validator computed
// are the ones Update would compute, so a Server using them delivers the
// same versions.
func TestUpdateTakesTheValidatorsHashes(t *testing.T) {
	var v Validator
	v.Round()
	res := &Resources{Clusters: []*clusterv3.Cluster{testCluster("a", 1)}, Listeners: []*listenerv3.Listener{testListener("l", "a", "out")}}
	clean, errs := v.Sanitize(nil, res)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	for _, m := range []proto.Message{clean.Clusters[0], clean.Listeners[0]} {
		got, ok := v.Hash(m)
		want, _ := hashOf(m)
		if !ok || got != want {
			t.Errorf("Validator.Hash %q (%v), want hashOf's %q", got, ok, want)
		}
	}
	if _, ok := v.Hash(testCluster("a", 1)); ok {
		t.Errorf("a message never validated has a hash")
	}
	ctx := context.Background()
	with, without := NewServer(ctx, nil), NewServer(ctx, nil)
	with.UseHashes(v.Hash)
	for _, s := range []*Server{with, without} {
		if err := s.Update(ctx, map[string]*Resources{"n": clean}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := with.cache.ordered.GetSnapshot("n")
	b, _ := without.cache.ordered.GetSnapshot("n")
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if a.GetVersion(typ) != b.GetVersion(typ) {
			t.Errorf("%s version %s with the Validator's hashes, %s without", typ, a.GetVersion(typ), b.GetVersion(typ))
		}
	}
}
