package resource

// MeshRetry retries failed connections (tcp) and requests (http, grpc) on
// the traffic its to[] entries select (Kuma's MeshRetry, kuma.io/v1alpha1).
type MeshRetry struct {
	Meta `yaml:"-"`
	Spec MeshRetrySpec `yaml:"spec"`
}

type MeshRetrySpec struct {
	TargetRef *PolicyTargetRef `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshRetryTo    `yaml:"to,omitempty" json:"to,omitempty"`
}

type MeshRetryTo struct {
	TargetRef PolicyTargetRef `yaml:"targetRef" json:"targetRef"`
	Default   MeshRetryConf   `yaml:"default,omitempty" json:"default"`
}

type MeshRetryConf struct {
	TCP  *MeshRetryTCP  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	HTTP *MeshRetryHTTP `yaml:"http,omitempty" json:"http,omitempty"`
	GRPC *MeshRetryGRPC `yaml:"grpc,omitempty" json:"grpc,omitempty"`
}

type MeshRetryTCP struct {
	MaxConnectAttempt *uint32 `yaml:"maxConnectAttempt,omitempty" json:"maxConnectAttempt,omitempty"`
}

type MeshRetryHTTP struct {
	NumRetries               *uint32                      `yaml:"numRetries,omitempty" json:"numRetries,omitempty"`
	PerTryTimeout            *Duration                    `yaml:"perTryTimeout,omitempty" json:"perTryTimeout,omitempty"`
	BackOff                  *MeshRetryBackOff            `yaml:"backOff,omitempty" json:"backOff,omitempty"`
	RateLimitedBackOff       *MeshRetryRateLimitedBackOff `yaml:"rateLimitedBackOff,omitempty" json:"rateLimitedBackOff,omitempty"`
	RetryOn                  *[]string                    `yaml:"retryOn,omitempty" json:"retryOn,omitempty"`
	RetriableResponseHeaders *[]HeaderMatch               `yaml:"retriableResponseHeaders,omitempty" json:"retriableResponseHeaders,omitempty"`
	RetriableRequestHeaders  *[]HeaderMatch               `yaml:"retriableRequestHeaders,omitempty" json:"retriableRequestHeaders,omitempty"`
	HostSelection            *[]MeshRetryPredicate        `yaml:"hostSelection,omitempty" json:"hostSelection,omitempty"`
	HostSelectionMaxAttempts *int64                       `yaml:"hostSelectionMaxAttempts,omitempty" json:"hostSelectionMaxAttempts,omitempty"`
}

type MeshRetryGRPC struct {
	NumRetries         *uint32                      `yaml:"numRetries,omitempty" json:"numRetries,omitempty"`
	PerTryTimeout      *Duration                    `yaml:"perTryTimeout,omitempty" json:"perTryTimeout,omitempty"`
	BackOff            *MeshRetryBackOff            `yaml:"backOff,omitempty" json:"backOff,omitempty"`
	RateLimitedBackOff *MeshRetryRateLimitedBackOff `yaml:"rateLimitedBackOff,omitempty" json:"rateLimitedBackOff,omitempty"`
	RetryOn            *[]string                    `yaml:"retryOn,omitempty" json:"retryOn,omitempty"`
}

type MeshRetryBackOff struct {
	BaseInterval *Duration `yaml:"baseInterval,omitempty" json:"baseInterval,omitempty"`
	MaxInterval  *Duration `yaml:"maxInterval,omitempty" json:"maxInterval,omitempty"`
}

type MeshRetryRateLimitedBackOff struct {
	ResetHeaders *[]MeshRetryResetHeader `yaml:"resetHeaders,omitempty" json:"resetHeaders,omitempty"`
	MaxInterval  *Duration               `yaml:"maxInterval,omitempty" json:"maxInterval,omitempty"`
}

type MeshRetryResetHeader struct {
	Name   string `yaml:"name" json:"name"`
	Format string `yaml:"format" json:"format"`
}

// MeshRetryPredicate is one hostSelection item. UpdateFrequency keeps
// Kuma's schema default of 2 (see applyDefaults).
type MeshRetryPredicate struct {
	Predicate       string            `yaml:"predicate" json:"predicate"`
	Tags            map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	UpdateFrequency *int32            `yaml:"updateFrequency,omitempty" json:"updateFrequency,omitempty"`
}

// MeshRetry enums (Kuma's names; retryOn also takes HTTP status codes).
const (
	PredicateOmitPreviousHosts      = "OmitPreviousHosts"
	PredicateOmitHostsWithTags      = "OmitHostsWithTags"
	PredicateOmitPreviousPriorities = "OmitPreviousPriorities"

	RateLimitFormatSeconds       = "Seconds"
	RateLimitFormatUnixTimestamp = "UnixTimestamp"
)

func (r *MeshRetry) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshRetry) SpecValue() any                 { return r.Spec }

func (r *MeshRetry) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Default}
	}
	return out
}

// applyDefaults fills Kuma's schema default updateFrequency: 2.
func (s *MeshRetrySpec) applyDefaults() {
	for i := range s.To {
		h := s.To[i].Default.HTTP
		if h == nil || h.HostSelection == nil {
			continue
		}
		for j := range *h.HostSelection {
			p := &(*h.HostSelection)[j]
			if p.UpdateFrequency == nil {
				two := int32(2)
				p.UpdateFrequency = &two
			}
		}
	}
}
