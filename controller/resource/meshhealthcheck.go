package resource

// MeshHealthCheck actively probes the endpoints of the destinations its
// to[] entries select over TCP, HTTP or gRPC (Kuma's MeshHealthCheck,
// kuma.io/v1alpha1).
type MeshHealthCheck struct {
	Meta `yaml:"-"`
	Spec MeshHealthCheckSpec `yaml:"spec"`
}

type MeshHealthCheckSpec struct {
	TargetRef *PolicyTargetRef    `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshHealthCheckTo `yaml:"to,omitempty" json:"to,omitempty"`
}

type MeshHealthCheckTo struct {
	TargetRef PolicyTargetRef     `yaml:"targetRef" json:"targetRef"`
	Default   MeshHealthCheckConf `yaml:"default,omitempty" json:"default"`
}

type MeshHealthCheckConf struct {
	Interval                     *Duration        `yaml:"interval,omitempty" json:"interval,omitempty"`
	Timeout                      *Duration        `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	UnhealthyThreshold           *int32           `yaml:"unhealthyThreshold,omitempty" json:"unhealthyThreshold,omitempty"`
	HealthyThreshold             *int32           `yaml:"healthyThreshold,omitempty" json:"healthyThreshold,omitempty"`
	InitialJitter                *Duration        `yaml:"initialJitter,omitempty" json:"initialJitter,omitempty"`
	IntervalJitter               *Duration        `yaml:"intervalJitter,omitempty" json:"intervalJitter,omitempty"`
	IntervalJitterPercent        *int32           `yaml:"intervalJitterPercent,omitempty" json:"intervalJitterPercent,omitempty"`
	HealthyPanicThreshold        *IntOrString     `yaml:"healthyPanicThreshold,omitempty" json:"healthyPanicThreshold,omitempty"`
	FailTrafficOnPanic           *bool            `yaml:"failTrafficOnPanic,omitempty" json:"failTrafficOnPanic,omitempty"`
	EventLogPath                 *string          `yaml:"eventLogPath,omitempty" json:"eventLogPath,omitempty"`
	AlwaysLogHealthCheckFailures *bool            `yaml:"alwaysLogHealthCheckFailures,omitempty" json:"alwaysLogHealthCheckFailures,omitempty"`
	NoTrafficInterval            *Duration        `yaml:"noTrafficInterval,omitempty" json:"noTrafficInterval,omitempty"`
	TCP                          *TCPHealthCheck  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	HTTP                         *HTTPHealthCheck `yaml:"http,omitempty" json:"http,omitempty"`
	GRPC                         *GRPCHealthCheck `yaml:"grpc,omitempty" json:"grpc,omitempty"`
	ReuseConnection              *bool            `yaml:"reuseConnection,omitempty" json:"reuseConnection,omitempty"`
}

// TCPHealthCheck sends Send (base64) and expects each Receive block (base64), in order.
type TCPHealthCheck struct {
	Disabled *bool     `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	Send     *string   `yaml:"send,omitempty" json:"send,omitempty"`
	Receive  *[]string `yaml:"receive,omitempty" json:"receive,omitempty"`
}

type HTTPHealthCheck struct {
	Disabled            *bool               `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	Path                *string             `yaml:"path,omitempty" json:"path,omitempty"`
	RequestHeadersToAdd *HealthCheckHeaders `yaml:"requestHeadersToAdd,omitempty" json:"requestHeadersToAdd,omitempty"`
	ExpectedStatuses    *[]int32            `yaml:"expectedStatuses,omitempty" json:"expectedStatuses,omitempty"`
}

// HealthCheckHeaders are the headers a health-check request sets or adds.
type HealthCheckHeaders struct {
	Set *[]HeaderKeyValue `yaml:"set,omitempty" json:"set,omitempty"`
	Add *[]HeaderKeyValue `yaml:"add,omitempty" json:"add,omitempty"`
}

type GRPCHealthCheck struct {
	Disabled    *bool   `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	ServiceName *string `yaml:"serviceName,omitempty" json:"serviceName,omitempty"`
	Authority   *string `yaml:"authority,omitempty" json:"authority,omitempty"`
}

func (r *MeshHealthCheck) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshHealthCheck) SpecValue() any                 { return r.Spec }

func (r *MeshHealthCheck) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Default}
	}
	return out
}
