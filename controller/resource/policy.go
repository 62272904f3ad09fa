package resource

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The targetRef policy kinds meshext reads (kuma.io/v1alpha1). Each has its
// own file: its types, its to[] entries and the conf the merge works on.
const (
	KindMeshTimeout               Kind = "MeshTimeout"
	KindMeshRetry                 Kind = "MeshRetry"
	KindMeshCircuitBreaker        Kind = "MeshCircuitBreaker"
	KindMeshHealthCheck           Kind = "MeshHealthCheck"
	KindMeshLoadBalancingStrategy Kind = "MeshLoadBalancingStrategy"
	KindMeshAccessLog             Kind = "MeshAccessLog"
	KindMeshHTTPRoute             Kind = "MeshHTTPRoute"
	KindMeshTCPRoute              Kind = "MeshTCPRoute"
)

// PolicyKinds lists the policy kinds in Kuma's plugin order (each kind's
// +kuma:policy:order: MeshHTTPRoute 100, MeshTCPRoute 200,
// MeshLoadBalancingStrategy 400, MeshAccessLog 600, MeshTimeout 1000,
// MeshHealthCheck 1200, MeshCircuitBreaker 1300, MeshRetry 1400).
var PolicyKinds = []Kind{
	KindMeshHTTPRoute, KindMeshTCPRoute, KindMeshLoadBalancingStrategy, KindMeshAccessLog,
	KindMeshTimeout, KindMeshHealthCheck, KindMeshCircuitBreaker, KindMeshRetry,
}

// Policy is a parsed targetRef policy of one of PolicyKinds.
type Policy interface {
	Object
	// TopTargetRef is spec.targetRef; nil means the whole mesh (Kuma's default).
	TopTargetRef() *PolicyTargetRef
	// ToEntries are spec.to[] in order, each with its default conf.
	ToEntries() []ToEntry
	// SpecValue is the spec, for printing.
	SpecValue() any
}

// ToEntry is one spec.to[] item: which traffic, and the conf for it. Conf
// is a pointer to the kind's conf type (for routes, their rules), ready for
// Kuma's JSON merge.
type ToEntry struct {
	TargetRef PolicyTargetRef
	Conf      any
}

// newPolicy returns an empty resource of a policy kind and its spec to
// decode into, or nil.
func newPolicy(meta *Meta) (Policy, any) {
	if mk := policyConstructors[meta.Kind]; mk != nil {
		return mk(*meta)
	}
	return nil, nil
}

// NewPolicy returns an empty resource of a policy kind and its spec (what
// the parser decodes into), or nil.
func NewPolicy(kind Kind) (Policy, any) { return newPolicy(&Meta{Kind: kind}) }

var policyConstructors = map[Kind]func(Meta) (Policy, any){
	KindMeshTimeout:               func(m Meta) (Policy, any) { r := &MeshTimeout{Meta: m}; return r, &r.Spec },
	KindMeshRetry:                 func(m Meta) (Policy, any) { r := &MeshRetry{Meta: m}; return r, &r.Spec },
	KindMeshCircuitBreaker:        func(m Meta) (Policy, any) { r := &MeshCircuitBreaker{Meta: m}; return r, &r.Spec },
	KindMeshHealthCheck:           func(m Meta) (Policy, any) { r := &MeshHealthCheck{Meta: m}; return r, &r.Spec },
	KindMeshLoadBalancingStrategy: func(m Meta) (Policy, any) { r := &MeshLoadBalancingStrategy{Meta: m}; return r, &r.Spec },
	KindMeshAccessLog:             func(m Meta) (Policy, any) { r := &MeshAccessLog{Meta: m}; return r, &r.Spec },
	KindMeshHTTPRoute:             func(m Meta) (Policy, any) { r := &MeshHTTPRoute{Meta: m}; return r, &r.Spec },
	KindMeshTCPRoute:              func(m Meta) (Policy, any) { r := &MeshTCPRoute{Meta: m}; return r, &r.Spec },
}

// TargetRef kinds beyond the ones MeshTrafficPermission uses.
const (
	RefMeshGateway          = "MeshGateway"
	RefMeshMultiZoneService = "MeshMultiZoneService"
	RefMeshHTTPRoute        = "MeshHTTPRoute"
)

// Proxy types of a targetRef's proxyTypes.
const (
	ProxyTypeSidecar = "Sidecar"
	ProxyTypeGateway = "Gateway"
)

// PolicyTargetRef is Kuma's common targetRef (api/common/v1alpha1) as the
// policy kinds use it. ProxyTypes is a pointer because Kuma tells an empty
// list (an error) from an absent one.
type PolicyTargetRef struct {
	Kind        string            `yaml:"kind" json:"kind"`
	Name        string            `yaml:"name,omitempty" json:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Tags        map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	Mesh        string            `yaml:"mesh,omitempty" json:"mesh,omitempty"`
	ProxyTypes  *[]string         `yaml:"proxyTypes,omitempty" json:"proxyTypes,omitempty"`
	SectionName string            `yaml:"sectionName,omitempty" json:"sectionName,omitempty"`
}

// PolicyBackendRef is Kuma's BackendRef: a targetRef plus a weight (default
// 1) and a port. Its fields are spelled out rather than inlined so unknown
// keys inside a backendRef are still reported.
type PolicyBackendRef struct {
	Kind        string            `yaml:"kind" json:"kind"`
	Name        string            `yaml:"name,omitempty" json:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Tags        map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	Mesh        string            `yaml:"mesh,omitempty" json:"mesh,omitempty"`
	ProxyTypes  *[]string         `yaml:"proxyTypes,omitempty" json:"proxyTypes,omitempty"`
	SectionName string            `yaml:"sectionName,omitempty" json:"sectionName,omitempty"`
	Weight      *uint32           `yaml:"weight,omitempty" json:"weight,omitempty"`
	Port        *uint32           `yaml:"port,omitempty" json:"port,omitempty"`
}

// TargetRef is the targetRef part of the backendRef.
func (b *PolicyBackendRef) TargetRef() PolicyTargetRef {
	return PolicyTargetRef{Kind: b.Kind, Name: b.Name, Namespace: b.Namespace, Labels: b.Labels, Tags: b.Tags,
		Mesh: b.Mesh, ProxyTypes: b.ProxyTypes, SectionName: b.SectionName}
}

// EffectiveWeight is the weight with Kuma's default of 1.
func (b *PolicyBackendRef) EffectiveWeight() uint32 {
	if b.Weight == nil {
		return 1
	}
	return *b.Weight
}

// HeaderMatch is Kuma's common HeaderMatch (type defaults to Exact).
type HeaderMatch struct {
	Type  *string `yaml:"type,omitempty" json:"type,omitempty"`
	Name  string  `yaml:"name" json:"name"`
	Value string  `yaml:"value,omitempty" json:"value,omitempty"`
}

// Header match types.
const (
	HeaderMatchExact             = "Exact"
	HeaderMatchPresent           = "Present"
	HeaderMatchRegularExpression = "RegularExpression"
	HeaderMatchAbsent            = "Absent"
	HeaderMatchPrefix            = "Prefix"
)

// HeaderKeyValue is one header of a header modifier.
type HeaderKeyValue struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

// Duration is a Kubernetes-style duration string ("5s", "1h30m"). It keeps
// the text the user wrote, for display, next to the parsed value. A value
// that is not a duration string is a decode error at its line.
type Duration struct {
	time.Duration
	Text string
}

// NewDuration makes a Duration from its text; it panics on bad text (for
// built-in defaults only).
func NewDuration(text string) *Duration {
	d, err := time.ParseDuration(text)
	if err != nil {
		panic(err)
	}
	return &Duration{Duration: d, Text: text}
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return typeError(n, "a duration must be a string such as \"5s\" or \"1h30m\", got %s", describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return typeError(n, "invalid duration %q: %v", n.Value, strings.TrimPrefix(err.Error(), "time: "))
	}
	d.Duration, d.Text = v, n.Value
	return nil
}

func (d Duration) String() string {
	if d.Text != "" {
		return d.Text
	}
	return d.Duration.String()
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration, d.Text = v, s
	return nil
}

// IntOrString is Kubernetes' IntOrString as Kuma uses it for percentages and
// factors: an integer, or a decimal number written as a string ("99.9").
// Validation checks that the string is a number.
type IntOrString struct {
	IsString bool
	Int      int64
	Str      string
}

func (v *IntOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "must be an integer or a string, got %s", describe(n))
	}
	switch n.Tag {
	case "!!int":
		i, err := strconv.ParseInt(n.Value, 0, 32)
		if err != nil {
			return typeError(n, "integer %s out of range", n.Value)
		}
		*v = IntOrString{Int: i}
	case "!!str":
		*v = IntOrString{IsString: true, Str: n.Value}
	default:
		return typeError(n, "must be an integer or a string (write decimals as strings, e.g. \"99.5\"), got %s", describe(n))
	}
	return nil
}

func (v IntOrString) String() string {
	if v.IsString {
		return v.Str
	}
	return strconv.FormatInt(v.Int, 10)
}

// Float parses the value as a decimal number. Kuma parses these with
// shopspring/decimal; plain decimal and exponent forms agree.
func (v IntOrString) Float() (float64, error) {
	if !v.IsString {
		return float64(v.Int), nil
	}
	s := strings.TrimSpace(v.Str)
	if s == "" || strings.ContainsAny(s, "xXpP_") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "+inf") ||
		strings.EqualFold(s, "-inf") || strings.EqualFold(s, "nan") || strings.EqualFold(s, "infinity") ||
		strings.EqualFold(s, "+infinity") || strings.EqualFold(s, "-infinity") {
		return 0, fmt.Errorf("not a decimal number: %q", v.Str)
	}
	return strconv.ParseFloat(s, 64)
}

func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.Str)
	}
	return json.Marshal(v.Int)
}

func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsString = true
		return json.Unmarshal(b, &v.Str)
	}
	v.IsString = false
	return json.Unmarshal(b, &v.Int)
}

// typeError is a decode error the YAML decoder collects with the others
// (and reports with its line) instead of stopping at.
func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "null"
	}
	return strconv.Quote(n.Value)
}

// applyPolicyDefaults fills Kuma's schema defaults, as Kuma does before validation.
func applyPolicyDefaults(p Policy) {
	switch r := p.(type) {
	case *MeshRetry:
		r.Spec.applyDefaults()
	case *MeshHTTPRoute:
		r.Spec.applyDefaults()
	}
}

// Policy roles (Kuma's kuma.io/policy-role label).
const (
	LabelPolicyRole   = "kuma.io/policy-role"
	RoleSystem        = "system"
	RoleProducer      = "producer"
	RoleConsumer      = "consumer"
	RoleWorkloadOwner = "workload-owner"
)

// ComputePolicyRole is the role Kuma gives a policy when it labels it: a
// policy in the system namespace, or without one (universal), is a system
// policy; on Kubernetes, in an application namespace, one whose to[] items
// all name a MeshService or MeshHTTPRoute of its own namespace is a producer
// policy, one with none of those a consumer policy, and one without to[] a
// workload-owner policy. Where Kuma does not compute the role (universal,
// a Kubernetes-style policy without metadata.namespace, or one synced from
// a global control plane) an explicit kuma.io/policy-role label is kept,
// and the role is otherwise system.
func ComputePolicyRole(p Policy) (string, error) {
	m := p.GetMeta()
	if m.Source.Style != StyleKubernetes || m.Namespace == "" || m.Labels[LabelOrigin] == "global" {
		switch r := m.Labels[LabelPolicyRole]; r {
		case RoleProducer, RoleConsumer, RoleWorkloadOwner:
			return r, nil
		}
		return RoleSystem, nil
	}
	if m.Namespace == SystemNamespace {
		return RoleSystem, nil
	}
	to := p.ToEntries()
	hasFrom := false
	switch r := p.(type) {
	case *MeshTimeout:
		hasFrom = nonEmpty(r.Spec.From)
	case *MeshCircuitBreaker:
		hasFrom = nonEmpty(r.Spec.From)
	case *MeshAccessLog:
		hasFrom = nonEmpty(r.Spec.From)
	}
	switch {
	case hasFrom && len(to) > 0:
		return "", fmt.Errorf("it's not allowed to mix 'to' and 'from' arrays in the same policy")
	case len(to) == 0:
		return RoleWorkloadOwner, nil
	}
	producers := 0
	for _, e := range to {
		switch e.TargetRef.Kind {
		case RefMeshService, RefMeshHTTPRoute:
			if e.TargetRef.Name != "" && (e.TargetRef.Namespace == "" || e.TargetRef.Namespace == m.Namespace) {
				producers++
			}
		}
	}
	switch producers {
	case len(to):
		return RoleProducer, nil
	case 0:
		return RoleConsumer, nil
	}
	return "", fmt.Errorf("it's not allowed to mix producer and consumer items in the same policy")
}

func nonEmpty(x any) bool {
	if s, ok := x.([]any); ok {
		return len(s) > 0
	}
	return x != nil
}
