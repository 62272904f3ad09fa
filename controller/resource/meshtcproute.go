package resource

// MeshTCPRoute splits TCP connections to the destinations its to[] entries
// select across weighted backendRefs (Kuma's MeshTCPRoute, kuma.io/v1alpha1).
type MeshTCPRoute struct {
	Meta `yaml:"-"`
	Spec MeshTCPRouteSpec `yaml:"spec"`
}

type MeshTCPRouteSpec struct {
	TargetRef *PolicyTargetRef `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshTCPRouteTo `yaml:"to,omitempty" json:"to,omitempty"`
}

type MeshTCPRouteTo struct {
	TargetRef PolicyTargetRef `yaml:"targetRef" json:"targetRef"`
	// Rules has at most one item (Kuma's schema); no rules sends everything
	// to the targetRef itself.
	Rules []TCPRouteRule `yaml:"rules" json:"rules"`
}

type TCPRouteRule struct {
	Default TCPRouteConf `yaml:"default" json:"default"`
}

type TCPRouteConf struct {
	BackendRefs *[]PolicyBackendRef `yaml:"backendRefs,omitempty" json:"backendRefs,omitempty"`
}

func (r *MeshTCPRoute) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshTCPRoute) SpecValue() any                 { return r.Spec }

// ToEntries gives each to[] item's conf as Kuma's GetDefault does: its
// first rule, or, without rules, all traffic to the targetRef (weight 1).
func (r *MeshTCPRoute) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		to := &r.Spec.To[i]
		conf := &TCPRouteConf{}
		if len(to.Rules) > 0 {
			conf = &to.Rules[0].Default
		} else {
			one := uint32(1)
			t := to.TargetRef
			conf.BackendRefs = &[]PolicyBackendRef{{Kind: t.Kind, Name: t.Name, Namespace: t.Namespace, Labels: t.Labels,
				Tags: t.Tags, Mesh: t.Mesh, ProxyTypes: t.ProxyTypes, SectionName: t.SectionName, Weight: &one}}
		}
		out[i] = ToEntry{TargetRef: to.TargetRef, Conf: conf}
	}
	return out
}
