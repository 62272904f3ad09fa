package resource

// MeshHTTPRoute routes HTTP requests to the destinations its to[] entries
// select: matches on path, method, headers and query; weighted backendRefs;
// header modifiers, redirects and rewrites (Kuma's MeshHTTPRoute,
// kuma.io/v1alpha1).
type MeshHTTPRoute struct {
	Meta `yaml:"-"`
	Spec MeshHTTPRouteSpec `yaml:"spec"`
}

type MeshHTTPRouteSpec struct {
	TargetRef *PolicyTargetRef  `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	To        []MeshHTTPRouteTo `yaml:"to,omitempty" json:"to,omitempty"`
}

type MeshHTTPRouteTo struct {
	// Hostnames is for MeshGateway targets only (Kuma refuses it elsewhere).
	Hostnames *[]string       `yaml:"hostnames,omitempty" json:"hostnames,omitempty"`
	TargetRef PolicyTargetRef `yaml:"targetRef" json:"targetRef"`
	Rules     []HTTPRouteRule `yaml:"rules" json:"rules"`
}

type HTTPRouteRule struct {
	Matches []HTTPRouteMatch `yaml:"matches" json:"matches"`
	Default HTTPRouteConf    `yaml:"default" json:"default"`
}

type HTTPRouteMatch struct {
	Path        *HTTPPathMatch         `yaml:"path,omitempty" json:"path,omitempty"`
	Method      *string                `yaml:"method,omitempty" json:"method,omitempty"`
	QueryParams *[]HTTPQueryParamMatch `yaml:"queryParams,omitempty" json:"queryParams,omitempty"`
	Headers     *[]HeaderMatch         `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// Path, query and rewrite types; methods.
const (
	PathExact             = "Exact"
	PathPrefix            = "PathPrefix"
	PathRegularExpression = "RegularExpression"

	QueryExact             = "Exact"
	QueryRegularExpression = "RegularExpression"

	RewriteReplaceFullPath    = "ReplaceFullPath"
	RewriteReplacePrefixMatch = "ReplacePrefixMatch"
)

// HTTPMethods are the methods a match may name.
var HTTPMethods = []string{"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}

type HTTPPathMatch struct {
	Value string `yaml:"value" json:"value"`
	Type  string `yaml:"type" json:"type"`
}

type HTTPQueryParamMatch struct {
	Type  string `yaml:"type" json:"type"`
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

type HTTPRouteConf struct {
	Filters     *[]HTTPRouteFilter  `yaml:"filters,omitempty" json:"filters,omitempty"`
	BackendRefs *[]PolicyBackendRef `yaml:"backendRefs,omitempty" json:"backendRefs,omitempty"`
}

// Filter types.
const (
	FilterRequestHeaderModifier  = "RequestHeaderModifier"
	FilterResponseHeaderModifier = "ResponseHeaderModifier"
	FilterRequestRedirect        = "RequestRedirect"
	FilterURLRewrite             = "URLRewrite"
	FilterRequestMirror          = "RequestMirror"
)

type HTTPRouteFilter struct {
	Type                   string               `yaml:"type" json:"type"`
	RequestHeaderModifier  *HTTPHeaderModifier  `yaml:"requestHeaderModifier,omitempty" json:"requestHeaderModifier,omitempty"`
	ResponseHeaderModifier *HTTPHeaderModifier  `yaml:"responseHeaderModifier,omitempty" json:"responseHeaderModifier,omitempty"`
	RequestRedirect        *HTTPRequestRedirect `yaml:"requestRedirect,omitempty" json:"requestRedirect,omitempty"`
	URLRewrite             *HTTPURLRewrite      `yaml:"urlRewrite,omitempty" json:"urlRewrite,omitempty"`
	RequestMirror          *HTTPRequestMirror   `yaml:"requestMirror,omitempty" json:"requestMirror,omitempty"`
}

type HTTPHeaderModifier struct {
	Set    *[]HeaderKeyValue `yaml:"set,omitempty" json:"set,omitempty"`
	Add    *[]HeaderKeyValue `yaml:"add,omitempty" json:"add,omitempty"`
	Remove *[]string         `yaml:"remove,omitempty" json:"remove,omitempty"`
}

type HTTPRequestRedirect struct {
	Scheme   *string          `yaml:"scheme,omitempty" json:"scheme,omitempty"`
	Hostname *string          `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Path     *HTTPPathRewrite `yaml:"path,omitempty" json:"path,omitempty"`
	Port     *int32           `yaml:"port,omitempty" json:"port,omitempty"`
	// StatusCode defaults to 302 (Kuma's schema default; see applyDefaults).
	StatusCode int `yaml:"statusCode,omitempty" json:"statusCode,omitempty"`
}

type HTTPPathRewrite struct {
	Type               string  `yaml:"type" json:"type"`
	ReplaceFullPath    *string `yaml:"replaceFullPath,omitempty" json:"replaceFullPath,omitempty"`
	ReplacePrefixMatch *string `yaml:"replacePrefixMatch,omitempty" json:"replacePrefixMatch,omitempty"`
}

type HTTPURLRewrite struct {
	Hostname              *string          `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Path                  *HTTPPathRewrite `yaml:"path,omitempty" json:"path,omitempty"`
	HostToBackendHostname *bool            `yaml:"hostToBackendHostname,omitempty" json:"hostToBackendHostname,omitempty"`
}

type HTTPRequestMirror struct {
	Percentage *IntOrString     `yaml:"percentage,omitempty" json:"percentage,omitempty"`
	BackendRef PolicyBackendRef `yaml:"backendRef" json:"backendRef"`
}

func (r *MeshHTTPRoute) TopTargetRef() *PolicyTargetRef { return r.Spec.TargetRef }
func (r *MeshHTTPRoute) SpecValue() any                 { return r.Spec }

// ToEntries gives each to[] item's rules as its conf (*[]HTTPRouteRule);
// routes merge rule by rule, keyed by their matches.
func (r *MeshHTTPRoute) ToEntries() []ToEntry {
	out := make([]ToEntry, len(r.Spec.To))
	for i := range r.Spec.To {
		out[i] = ToEntry{TargetRef: r.Spec.To[i].TargetRef, Conf: &r.Spec.To[i].Rules}
	}
	return out
}

// applyDefaults fills Kuma's schema default statusCode: 302 of redirects.
func (s *MeshHTTPRouteSpec) applyDefaults() {
	for i := range s.To {
		for j := range s.To[i].Rules {
			fs := s.To[i].Rules[j].Default.Filters
			if fs == nil {
				continue
			}
			for k := range *fs {
				if rr := (*fs)[k].RequestRedirect; rr != nil && rr.StatusCode == 0 {
					rr.StatusCode = 302
				}
			}
		}
	}
}
