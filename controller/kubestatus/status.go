package kubestatus

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshext/meshext/controller/model"
)

// Status is a MeshExternalService's status in Kuma's shape
// (MeshExternalServiceStatus): the VIP, the generated addresses, and one
// entry per HostnameGenerator that selects the service.
type Status struct {
	VIP                *VIP                      `json:"vip"`
	Addresses          []Address                 `json:"addresses"`
	HostnameGenerators []HostnameGeneratorStatus `json:"hostnameGenerators"`
}

type VIP struct {
	IP string `json:"ip"`
}

type Address struct {
	Hostname             string `json:"hostname"`
	Origin               string `json:"origin"`
	HostnameGeneratorRef Ref    `json:"hostnameGeneratorRef"`
}

// Ref names a HostnameGenerator by Kuma's core name: on Kubernetes,
// "<name>.<namespace>".
type Ref struct {
	CoreName string `json:"coreName"`
}

type HostnameGeneratorStatus struct {
	HostnameGeneratorRef Ref         `json:"hostnameGeneratorRef"`
	Conditions           []Condition `json:"conditions"`
}

type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// OriginHostnameGenerator is Kuma's origin of a generated address.
const OriginHostnameGenerator = "HostnameGenerator"

// statusOf is the status of s with vip (invalid: none). Generators are in
// the system namespace (validation holds them there), so their core name is
// "<name>.<namespace>"; entries are sorted by it, as Kuma sorts them.
func statusOf(s *model.Service, vip netip.Addr, namespace string) Status {
	var st Status
	if vip.IsValid() {
		st.VIP = &VIP{IP: vip.String()}
	}
	core := func(generator string) Ref { return Ref{CoreName: generator + "." + namespace} }
	for _, a := range s.Addresses {
		st.Addresses = append(st.Addresses, Address{Hostname: a.Hostname, Origin: OriginHostnameGenerator, HostnameGeneratorRef: core(a.Generator)})
	}
	byGen := map[string]int{}
	for _, c := range s.Conditions {
		if c.Type != model.ConditionGenerated || c.Generator == "" {
			continue
		}
		i, ok := byGen[c.Generator]
		if !ok {
			i = len(st.HostnameGenerators)
			byGen[c.Generator] = i
			st.HostnameGenerators = append(st.HostnameGenerators, HostnameGeneratorStatus{HostnameGeneratorRef: core(c.Generator)})
		}
		g := &st.HostnameGenerators[i]
		g.Conditions = append(g.Conditions, Condition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
	}
	slices.SortStableFunc(st.HostnameGenerators, func(a, b HostnameGeneratorStatus) int {
		return strings.Compare(a.HostnameGeneratorRef.CoreName, b.HostnameGeneratorRef.CoreName)
	})
	slices.SortStableFunc(st.Addresses, func(a, b Address) int {
		return strings.Compare(a.HostnameGeneratorRef.CoreName, b.HostnameGeneratorRef.CoreName)
	})
	return st
}

// sameStatus reports whether the status an object holds (its unstructured
// status, nil when none) is st, comparing their JSON forms.
func sameStatus(have any, st Status) bool {
	want, err := json.Marshal(st)
	if err != nil {
		return false
	}
	var w any
	if err := json.Unmarshal(want, &w); err != nil {
		return false
	}
	return equalJSON(normalize(have), normalize(w))
}

// normalize drops nulls and empty lists, which the API server may store
// as absent.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			if n := normalize(e); n != nil {
				out[k] = n
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(t) == 0 {
			return nil
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
