package resource

// MeshAccessLog writes access logs of the traffic its to[] entries select
// to files, TCP sinks or OpenTelemetry collectors (Kuma's MeshAccessLog,
// kuma.io/v1alpha1). Without one, Kuma logs nothing.
type MeshAccessLog struct {
	Meta `yaml:"-"`
	Spec MeshAccessLogSpec `yaml:"spec"`
}

type MeshAccessLogSpec struct {
	TargetRef *PolicyTargetRef  `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshAccessLogTo `yaml:"to,omitempty" json:"to,omitempty"`
	From      any               `yaml:"from,omitempty" json:"from,omitempty"`   // inbound: refused
	Rules     any               `yaml:"rules,omitempty" json:"rules,omitempty"` // inbound: refused
}

type MeshAccessLogTo struct {
	TargetRef PolicyTargetRef   `yaml:"targetRef" json:"targetRef"`
	Default   MeshAccessLogConf `yaml:"default" json:"default"`
}

type MeshAccessLogConf struct {
	Backends *[]AccessLogBackend `yaml:"backends,omitempty" json:"backends,omitempty"`
}

// Access log backend and format types.
const (
	BackendTCP           = "Tcp"
	BackendFile          = "File"
	BackendOpenTelemetry = "OpenTelemetry"

	FormatPlain = "Plain"
	FormatJSON  = "Json"
)

type AccessLogBackend struct {
	Type          string                `yaml:"type" json:"type"`
	TCP           *AccessLogTCPBackend  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	File          *AccessLogFileBackend `yaml:"file,omitempty" json:"file,omitempty"`
	OpenTelemetry *AccessLogOtelBackend `yaml:"openTelemetry,omitempty" json:"openTelemetry,omitempty"`
}

type AccessLogTCPBackend struct {
	Format  *AccessLogFormat `yaml:"format,omitempty" json:"format,omitempty"`
	Address string           `yaml:"address" json:"address"`
}

type AccessLogFileBackend struct {
	Format *AccessLogFormat `yaml:"format,omitempty" json:"format,omitempty"`
	Path   string           `yaml:"path" json:"path"`
}

type AccessLogOtelBackend struct {
	Attributes *[]AccessLogOtelAttribute `yaml:"attributes,omitempty" json:"attributes,omitempty"`
	// Body is a string or an OTLP AnyValue, kept as written.
	Body     any    `yaml:"body,omitempty" json:"body,omitempty"`
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// BackendRef names a MeshOpenTelemetryBackend, a kind meshext does not
	// read; it is refused with a clear message.
	BackendRef any `yaml:"backendRef,omitempty" json:"backendRef,omitempty"`
}

type AccessLogOtelAttribute struct {
	Key   string `yaml:"key" json:"key"`
	Value string `yaml:"value" json:"value"`
}

type AccessLogFormat struct {
	Type            string              `yaml:"type" json:"type"`
	Plain           *string             `yaml:"plain,omitempty" json:"plain,omitempty"`
	JSON            *[]AccessLogJSONKey `yaml:"json,omitempty" json:"json,omitempty"`
	OmitEmptyValues bool                `yaml:"omitEmptyValues,omitempty" json:"omitEmptyValues,omitempty"`
}

type AccessLogJSONKey struct {
	Key   string `yaml:"key" json:"key"`
	Value string `yaml:"value" json:"value"`
}

func (r *MeshAccessLog) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshAccessLog) SpecValue() any                 { return r.Spec }

func (r *MeshAccessLog) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Default}
	}
	return out
}
