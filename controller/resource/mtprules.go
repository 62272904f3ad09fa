package resource

// TrafficPermRule is one entry of a MeshTrafficPermission's spec.rules
// (Kuma 2.12+): lists of matches that deny, allow, or allow while logging
// as denied.
type TrafficPermRule struct {
	Default TrafficPermRuleConf `yaml:"default" json:"default"`
}

// TrafficPermRuleConf is a rule's default.
type TrafficPermRuleConf struct {
	Deny                []TrafficPermMatch `yaml:"deny,omitempty" json:"deny,omitempty"`
	AllowWithShadowDeny []TrafficPermMatch `yaml:"allowWithShadowDeny,omitempty" json:"allowWithShadowDeny,omitempty"`
	Allow               []TrafficPermMatch `yaml:"allow,omitempty" json:"allow,omitempty"`
}

// TrafficPermMatch matches a client by its SPIFFE ID (Exact or Prefix) and
// the SNI of its connection (Kuma 2.14; Exact only), Kuma's common Match;
// both, when given, must match.
type TrafficPermMatch struct {
	SpiffeID *StringMatch `yaml:"spiffeID,omitempty" json:"spiffeID,omitempty"`
	SNI      *StringMatch `yaml:"sni,omitempty" json:"sni,omitempty"`
}

// StringMatch types.
const (
	MatchExact  = "Exact"
	MatchPrefix = "Prefix"
)

// StringMatch is {type, value}: Kuma's SpiffeIDMatch and SNIMatch.
type StringMatch struct {
	Type  string `yaml:"type" json:"type"`
	Value string `yaml:"value" json:"value"`
}
