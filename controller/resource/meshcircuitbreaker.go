package resource

// MeshCircuitBreaker limits connections and requests to, and ejects failing
// endpoints of, the destinations its to[] entries select (Kuma's
// MeshCircuitBreaker, kuma.io/v1alpha1).
type MeshCircuitBreaker struct {
	Meta `yaml:"-"`
	Spec MeshCircuitBreakerSpec `yaml:"spec"`
}

type MeshCircuitBreakerSpec struct {
	TargetRef *PolicyTargetRef       `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshCircuitBreakerTo `yaml:"to,omitempty" json:"to,omitempty"`
	From      any                    `yaml:"from,omitempty" json:"from,omitempty"`   // inbound: refused
	Rules     any                    `yaml:"rules,omitempty" json:"rules,omitempty"` // inbound: refused
}

type MeshCircuitBreakerTo struct {
	TargetRef PolicyTargetRef        `yaml:"targetRef" json:"targetRef"`
	Default   MeshCircuitBreakerConf `yaml:"default,omitempty" json:"default"`
}

type MeshCircuitBreakerConf struct {
	ConnectionLimits *ConnectionLimits `yaml:"connectionLimits,omitempty" json:"connectionLimits,omitempty"`
	OutlierDetection *OutlierDetection `yaml:"outlierDetection,omitempty" json:"outlierDetection,omitempty"`
}

type ConnectionLimits struct {
	MaxConnections     *uint32 `yaml:"maxConnections,omitempty" json:"maxConnections,omitempty"`
	MaxConnectionPools *uint32 `yaml:"maxConnectionPools,omitempty" json:"maxConnectionPools,omitempty"`
	MaxPendingRequests *uint32 `yaml:"maxPendingRequests,omitempty" json:"maxPendingRequests,omitempty"`
	MaxRetries         *uint32 `yaml:"maxRetries,omitempty" json:"maxRetries,omitempty"`
	MaxRequests        *uint32 `yaml:"maxRequests,omitempty" json:"maxRequests,omitempty"`
}

type OutlierDetection struct {
	Disabled                    *bool        `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	Interval                    *Duration    `yaml:"interval,omitempty" json:"interval,omitempty"`
	BaseEjectionTime            *Duration    `yaml:"baseEjectionTime,omitempty" json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent          *uint32      `yaml:"maxEjectionPercent,omitempty" json:"maxEjectionPercent,omitempty"`
	SplitExternalAndLocalErrors *bool        `yaml:"splitExternalAndLocalErrors,omitempty" json:"splitExternalAndLocalErrors,omitempty"`
	Detectors                   *Detectors   `yaml:"detectors,omitempty" json:"detectors,omitempty"`
	HealthyPanicThreshold       *IntOrString `yaml:"healthyPanicThreshold,omitempty" json:"healthyPanicThreshold,omitempty"`
}

type Detectors struct {
	TotalFailures       *ConsecutiveDetector       `yaml:"totalFailures,omitempty" json:"totalFailures,omitempty"`
	GatewayFailures     *ConsecutiveDetector       `yaml:"gatewayFailures,omitempty" json:"gatewayFailures,omitempty"`
	LocalOriginFailures *ConsecutiveDetector       `yaml:"localOriginFailures,omitempty" json:"localOriginFailures,omitempty"`
	SuccessRate         *SuccessRateDetector       `yaml:"successRate,omitempty" json:"successRate,omitempty"`
	FailurePercentage   *FailurePercentageDetector `yaml:"failurePercentage,omitempty" json:"failurePercentage,omitempty"`
}

// ConsecutiveDetector is the shape of the totalFailures, gatewayFailures
// and localOriginFailures detectors.
type ConsecutiveDetector struct {
	Consecutive *uint32 `yaml:"consecutive,omitempty" json:"consecutive,omitempty"`
}

type SuccessRateDetector struct {
	MinimumHosts            *uint32      `yaml:"minimumHosts,omitempty" json:"minimumHosts,omitempty"`
	RequestVolume           *uint32      `yaml:"requestVolume,omitempty" json:"requestVolume,omitempty"`
	StandardDeviationFactor *IntOrString `yaml:"standardDeviationFactor,omitempty" json:"standardDeviationFactor,omitempty"`
}

type FailurePercentageDetector struct {
	MinimumHosts  *uint32 `yaml:"minimumHosts,omitempty" json:"minimumHosts,omitempty"`
	RequestVolume *uint32 `yaml:"requestVolume,omitempty" json:"requestVolume,omitempty"`
	Threshold     *uint32 `yaml:"threshold,omitempty" json:"threshold,omitempty"`
}

func (r *MeshCircuitBreaker) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshCircuitBreaker) SpecValue() any                 { return r.Spec }

func (r *MeshCircuitBreaker) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Default}
	}
	return out
}
