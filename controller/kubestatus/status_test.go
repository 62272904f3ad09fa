package kubestatus

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/model"
)

func TestStatusInKumasShape(t *testing.T) {
	s := &model.Service{
		Addresses: []model.Address{{Hostname: "b.example", Generator: "zz"}, {Hostname: "a.example", Generator: "aa"}},
		Conditions: []model.Condition{
			{Type: model.ConditionVIPAllocated, Status: model.StatusTrue, Reason: "Allocated"},
			{Type: model.ConditionGenerated, Status: model.StatusTrue, Reason: "Generated", Generator: "zz"},
			{Type: model.ConditionGenerated, Status: model.StatusFalse, Reason: "Collision", Message: "taken", Generator: "mm"},
			{Type: model.ConditionGenerated, Status: model.StatusTrue, Reason: "Generated", Generator: "aa"},
		},
	}
	st := statusOf(s, netip.MustParseAddr("242.0.0.7"), "kuma-system")
	got, err := json.Marshal(st)
	require.NoError(t, err)
	assert.JSONEq(t, `{
	  "vip": {"ip": "242.0.0.7"},
	  "addresses": [
	    {"hostname": "a.example", "origin": "HostnameGenerator", "hostnameGeneratorRef": {"coreName": "aa.kuma-system"}},
	    {"hostname": "b.example", "origin": "HostnameGenerator", "hostnameGeneratorRef": {"coreName": "zz.kuma-system"}}],
	  "hostnameGenerators": [
	    {"hostnameGeneratorRef": {"coreName": "aa.kuma-system"}, "conditions": [{"type": "Generated", "status": "True", "reason": "Generated", "message": ""}]},
	    {"hostnameGeneratorRef": {"coreName": "mm.kuma-system"}, "conditions": [{"type": "Generated", "status": "False", "reason": "Collision", "message": "taken"}]},
	    {"hostnameGeneratorRef": {"coreName": "zz.kuma-system"}, "conditions": [{"type": "Generated", "status": "True", "reason": "Generated", "message": ""}]}]
	}`, string(got))

	// What the API server stores back compares equal: nothing is rewritten.
	var stored any
	require.NoError(t, json.Unmarshal(got, &stored))
	assert.True(t, sameStatus(stored, st))
	assert.False(t, sameStatus(stored, statusOf(s, netip.MustParseAddr("242.0.0.8"), "kuma-system")), "another VIP")

	// No VIP, no hostnames: nulls in the patch (they remove the fields), and
	// an object without status is the same.
	empty := statusOf(&model.Service{}, netip.Addr{}, "kuma-system")
	got, err = json.Marshal(map[string]any{"status": empty})
	require.NoError(t, err)
	assert.JSONEq(t, `{"status": {"vip": null, "addresses": null, "hostnameGenerators": null}}`, string(got))
	assert.True(t, sameStatus(nil, empty))
	assert.False(t, sameStatus(stored, empty))
}

func TestSeedTakesTheVIPsInStatus(t *testing.T) {
	absent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &ipam.State{Version: ipam.Version, Serial: 4, Entries: map[string]ipam.Entry{
		// Deleted within its grace: kept.
		"default/gone": {VIP: netip.MustParseAddr("242.0.0.2"), Serial: 2, AbsentSince: absent},
		// The ledger thought it gone, but it is back with its VIP.
		"default/back": {VIP: netip.MustParseAddr("242.0.0.3"), Serial: 3, AbsentSince: absent},
		// Its VIP is now another service's (status wins).
		"default/stale": {VIP: netip.MustParseAddr("242.0.0.4"), Serial: 4, AbsentSince: absent},
	}}
	seed(st, map[string]netip.Addr{
		"default/back": netip.MustParseAddr("242.0.0.3"),
		"default/new":  netip.MustParseAddr("242.0.0.4"),
	})
	assert.Equal(t, map[string]ipam.Entry{
		"default/gone": {VIP: netip.MustParseAddr("242.0.0.2"), Serial: 2, AbsentSince: absent},
		"default/back": {VIP: netip.MustParseAddr("242.0.0.3"), Serial: 3},
		"default/new":  {VIP: netip.MustParseAddr("242.0.0.4"), Serial: 5},
	}, st.Entries)

	// The allocator starting from it keeps every VIP and never hands out a held one.
	a, err := ipam.OpenStore(&memStore{st: st}, "242.0.0.0/29")
	require.NoError(t, err)
	leases, err := a.Assign([]string{"default/back", "default/new", "default/other"})
	require.NoError(t, err)
	assert.Equal(t, "242.0.0.3", leases["default/back"].VIP.String())
	assert.Equal(t, "242.0.0.4", leases["default/new"].VIP.String())
	assert.NotContains(t, []string{"242.0.0.2", "242.0.0.3", "242.0.0.4"}, leases["default/other"].VIP.String())
}

// memStore hands out one state once, as the API server store does.
type memStore struct {
	st    *ipam.State
	saved []ipam.State
}

func (m *memStore) Lock() (func(), error) { return func() {}, nil }
func (m *memStore) Load() (*ipam.State, error) {
	st := m.st
	m.st = nil
	return st, nil
}
func (m *memStore) Save(st *ipam.State) error { m.saved = append(m.saved, *st); return nil }
