package resource

// MeshLoadBalancingStrategy picks the load-balancing algorithm and hash
// policies for the destinations its to[] entries select (Kuma's
// MeshLoadBalancingStrategy, kuma.io/v1alpha1).
type MeshLoadBalancingStrategy struct {
	Meta `yaml:"-"`
	Spec MeshLoadBalancingStrategySpec `yaml:"spec"`
}

type MeshLoadBalancingStrategySpec struct {
	TargetRef *PolicyTargetRef              `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshLoadBalancingStrategyTo `yaml:"to,omitempty" json:"to,omitempty"`
}

type MeshLoadBalancingStrategyTo struct {
	TargetRef PolicyTargetRef               `yaml:"targetRef" json:"targetRef"`
	Default   MeshLoadBalancingStrategyConf `yaml:"default,omitempty" json:"default"`
}

type MeshLoadBalancingStrategyConf struct {
	// LocalityAwareness balances by zones and tags a MeshExternalService's
	// endpoints do not have; it is read only to be refused with a clear message.
	LocalityAwareness any           `yaml:"localityAwareness,omitempty" json:"localityAwareness,omitempty"`
	LoadBalancer      *LoadBalancer `yaml:"loadBalancer,omitempty" json:"loadBalancer,omitempty"`
	HashPolicies      *[]HashPolicy `yaml:"hashPolicies,omitempty" json:"hashPolicies,omitempty"`
}

// Load balancer types.
const (
	LBRoundRobin   = "RoundRobin"
	LBLeastRequest = "LeastRequest"
	LBRingHash     = "RingHash"
	LBRandom       = "Random"
	LBMaglev       = "Maglev"
)

type LoadBalancer struct {
	Type         string        `yaml:"type" json:"type"`
	RoundRobin   *struct{}     `yaml:"roundRobin,omitempty" json:"roundRobin,omitempty"`
	LeastRequest *LeastRequest `yaml:"leastRequest,omitempty" json:"leastRequest,omitempty"`
	RingHash     *RingHash     `yaml:"ringHash,omitempty" json:"ringHash,omitempty"`
	Random       *struct{}     `yaml:"random,omitempty" json:"random,omitempty"`
	Maglev       *Maglev       `yaml:"maglev,omitempty" json:"maglev,omitempty"`
}

type LeastRequest struct {
	ChoiceCount       *uint32      `yaml:"choiceCount,omitempty" json:"choiceCount,omitempty"`
	ActiveRequestBias *IntOrString `yaml:"activeRequestBias,omitempty" json:"activeRequestBias,omitempty"`
}

type RingHash struct {
	HashFunction *string       `yaml:"hashFunction,omitempty" json:"hashFunction,omitempty"`
	MinRingSize  *uint32       `yaml:"minRingSize,omitempty" json:"minRingSize,omitempty"`
	MaxRingSize  *uint32       `yaml:"maxRingSize,omitempty" json:"maxRingSize,omitempty"`
	HashPolicies *[]HashPolicy `yaml:"hashPolicies,omitempty" json:"hashPolicies,omitempty"`
}

type Maglev struct {
	TableSize    *uint32       `yaml:"tableSize,omitempty" json:"tableSize,omitempty"`
	HashPolicies *[]HashPolicy `yaml:"hashPolicies,omitempty" json:"hashPolicies,omitempty"`
}

// Hash policy types and ring hash functions.
const (
	HashHeader         = "Header"
	HashCookie         = "Cookie"
	HashConnection     = "Connection"
	HashSourceIP       = "SourceIP"
	HashQueryParameter = "QueryParameter"
	HashFilterState    = "FilterState"

	HashFunctionXXHash      = "XXHash"
	HashFunctionMurmurHash2 = "MurmurHash2"
)

type HashPolicy struct {
	Type           string               `yaml:"type" json:"type"`
	Terminal       *bool                `yaml:"terminal,omitempty" json:"terminal,omitempty"`
	Header         *HashHeaderName      `yaml:"header,omitempty" json:"header,omitempty"`
	Cookie         *HashCookieConf      `yaml:"cookie,omitempty" json:"cookie,omitempty"`
	Connection     *HashConnectionConf  `yaml:"connection,omitempty" json:"connection,omitempty"`
	QueryParameter *HashHeaderName      `yaml:"queryParameter,omitempty" json:"queryParameter,omitempty"`
	FilterState    *HashFilterStateConf `yaml:"filterState,omitempty" json:"filterState,omitempty"`
}

// HashHeaderName names a request header or query parameter to hash.
type HashHeaderName struct {
	Name string `yaml:"name" json:"name"`
}

type HashCookieConf struct {
	Name string    `yaml:"name" json:"name"`
	TTL  *Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	Path *string   `yaml:"path,omitempty" json:"path,omitempty"`
}

type HashConnectionConf struct {
	SourceIP *bool `yaml:"sourceIP,omitempty" json:"sourceIP,omitempty"`
}

type HashFilterStateConf struct {
	Key string `yaml:"key" json:"key"`
}

func (r *MeshLoadBalancingStrategy) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshLoadBalancingStrategy) SpecValue() any                 { return r.Spec }

func (r *MeshLoadBalancingStrategy) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Default}
	}
	return out
}
