package resource

// MeshTimeout sets connection, idle and HTTP timeouts on the traffic its
// to[] entries select (Kuma's MeshTimeout, kuma.io/v1alpha1).
type MeshTimeout struct {
	Meta `yaml:"-"`
	Spec MeshTimeoutSpec `yaml:"spec"`
}

type MeshTimeoutSpec struct {
	TargetRef *PolicyTargetRef `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshTimeoutTo  `yaml:"to,omitempty" json:"to,omitempty"`
	// From and Rules configure inbound traffic, which meshext does not
	// proxy; they are read only to be refused with a clear message.
	From  any `yaml:"from,omitempty" json:"from,omitempty"`
	Rules any `yaml:"rules,omitempty" json:"rules,omitempty"`
}

type MeshTimeoutTo struct {
	TargetRef PolicyTargetRef `yaml:"targetRef" json:"targetRef"`
	Default   MeshTimeoutConf `yaml:"default,omitempty" json:"default"`
}

type MeshTimeoutConf struct {
	ConnectionTimeout *Duration        `yaml:"connectionTimeout,omitempty" json:"connectionTimeout,omitempty"`
	IdleTimeout       *Duration        `yaml:"idleTimeout,omitempty" json:"idleTimeout,omitempty"`
	HTTP              *MeshTimeoutHTTP `yaml:"http,omitempty" json:"http,omitempty"`
}

type MeshTimeoutHTTP struct {
	RequestTimeout        *Duration `yaml:"requestTimeout,omitempty" json:"requestTimeout,omitempty"`
	StreamIdleTimeout     *Duration `yaml:"streamIdleTimeout,omitempty" json:"streamIdleTimeout,omitempty"`
	MaxStreamDuration     *Duration `yaml:"maxStreamDuration,omitempty" json:"maxStreamDuration,omitempty"`
	MaxConnectionDuration *Duration `yaml:"maxConnectionDuration,omitempty" json:"maxConnectionDuration,omitempty"`
	RequestHeadersTimeout *Duration `yaml:"requestHeadersTimeout,omitempty" json:"requestHeadersTimeout,omitempty"`
}

func (r *MeshTimeout) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshTimeout) SpecValue() any                 { return r.Spec }

func (r *MeshTimeout) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Default}
	}
	return out
}
