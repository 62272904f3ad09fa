package validate

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

var (
	backendTypes  = []string{resource.BackendTCP, resource.BackendFile, resource.BackendOpenTelemetry}
	formatTypes   = []string{resource.FormatPlain, resource.FormatJSON}
	otelAttrKeyRE = regexp.MustCompile(`^[a-z](?:[a-z0-9]|[._][a-z0-9])*$`)
)

// meshAccessLog applies Kuma v2.14's MeshAccessLog validator in its order,
// then refuses the inbound parts and MeshOpenTelemetryBackend references.
func meshAccessLog(v *violations, r *resource.MeshAccessLog) {
	s := &r.Spec
	policyRole(v, r)
	top := topRef(v, s.TargetRef, refOpts{kinds: topKindsGateway, gatewayListenerTagsAllowed: true,
		inbound: nonEmptyList(s.From) || nonEmptyList(s.Rules)})
	nTo, nFrom, nRules := len(s.To), sliceLen(s.From), sliceLen(s.Rules)
	if nRules > 0 && (nTo > 0 || nFrom > 0) {
		v.add("spec", "fields 'to' and 'from' must be empty when 'rules' is defined")
	}
	if nRules == 0 && nTo == 0 && nFrom == 0 {
		v.add("spec", "at least one of 'from', 'to' or 'rules' has to be defined")
	}
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		toRef(v, at, &to.TargetRef, toKindsUnder(top, toKindsAll, []string{resource.RefMesh}, resource.RefMeshGateway))
		accessLogDefault(v, at+".default", &to.Default)
	}
	meshextInbound(v, s.From, s.Rules)
}

func accessLogDefault(v *violations, at string, c *resource.MeshAccessLogConf) {
	if c.Backends == nil {
		v.add(at+".backends", msgMustBeDefined)
		return
	}
	for i := range *c.Backends {
		b := &(*c.Backends)[i]
		bat := fmt.Sprintf("%s.backends[%d]", at, i)
		switch b.Type {
		case resource.BackendFile:
			if b.File == nil {
				v.add(bat+".file", msgMustBeDefined)
				break
			}
			if b.File.Format != nil {
				accessLogFormat(v, bat+".file.format", b.File.Format)
			}
			if !unixPathRE.MatchString(b.File.Path) {
				v.add(bat+".file.path", "file backend requires a valid path")
			}
		case resource.BackendTCP:
			if b.TCP == nil {
				v.add(bat+".tcp", msgMustBeDefined)
				break
			}
			if b.TCP.Format != nil {
				accessLogFormat(v, bat+".tcp.format", b.TCP.Format)
			}
			if !hostPort(b.TCP.Address) {
				v.add(bat+".tcp.address", "tcp backend requires valid address")
			}
		case resource.BackendOpenTelemetry:
			o := b.OpenTelemetry
			if o == nil {
				v.add(bat+".openTelemetry", msgMustBeDefined)
				break
			}
			oat := bat + ".openTelemetry"
			switch {
			case o.Endpoint != "" && o.BackendRef != nil:
				v.add(oat, "openTelemetry must have only one type defined: endpoint, backendRef")
			case o.Endpoint == "" && o.BackendRef == nil:
				v.add(oat, "openTelemetry must have exactly one defined: endpoint, backendRef")
			case o.BackendRef != nil:
				v.add(oat+".backendRef", "meshext does not read MeshOpenTelemetryBackend resources: set openTelemetry.endpoint (host:port) instead")
			case strings.ContainsAny(o.Endpoint, "/?#"):
				v.add(oat+".endpoint", "must be in host:port format, not a URL")
			}
			if o.Attributes != nil {
				for j, a := range *o.Attributes {
					otelAttributeKey(v, fmt.Sprintf("%s.attributes[%d].key", oat, j), a.Key)
				}
			}
		default: // Kuma's schema enum (its validator would panic)
			v.add(bat+".type", "%s", mustBeOneOf("type", backendTypes...))
		}
	}
}

func accessLogFormat(v *violations, at string, f *resource.AccessLogFormat) {
	switch f.Type {
	case resource.FormatPlain:
		switch {
		case f.Plain == nil:
			v.add(at+".plain", msgMustBeDefined)
		case *f.Plain == "":
			v.add(at+".plain", msgMustNotBeEmpty)
		}
	case resource.FormatJSON:
		if f.JSON == nil {
			v.add(at+".json", msgMustBeDefined)
			return
		}
		if len(*f.JSON) == 0 {
			v.add(at+".json", msgMustNotBeEmpty)
		}
		for i, kv := range *f.JSON {
			kat := fmt.Sprintf("%s.json[%d]", at, i)
			if kv.Key == "" {
				v.add(kat+".key", "key cannot be empty")
			}
			if kv.Value == "" {
				v.add(kat+".value", "value cannot be empty")
			}
			// Kuma pastes both into a JSON object unescaped and checks it parses.
			if !json.Valid([]byte(fmt.Sprintf(`{"%s": "%s"}`, kv.Key, kv.Value))) {
				v.add(kat, "is not a valid JSON object")
			}
		}
	default:
		v.add(at+".type", "%s", mustBeOneOf("type", formatTypes...))
	}
}

// hostPort accepts what a TCP log sink needs: HOST:PORT with an IP or DNS
// host and a port 1-65535. (Kuma checks govalidator.IsURL, which also passes
// strings its data plane cannot dial.)
func hostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	if err != nil || !validPort(int64(p)) {
		return false
	}
	return isIP(host) || isDNSName(host)
}

// otelAttributeKey is Kuma's ValidateOtelAttributeName.
func otelAttributeKey(v *violations, at, key string) {
	switch {
	case key == "":
		v.add(at, msgMustBeDefined)
	case strings.Contains(key, "%"):
		v.add(at, "must be a static OpenTelemetry attribute name; placeholders are only supported in values")
	case strings.HasPrefix(key, "otel."):
		v.add(at, "must not use the reserved OpenTelemetry prefix 'otel.'")
	case !otelAttrKeyRE.MatchString(key):
		v.add(at, "must start with a lowercase letter, use only lowercase letters, digits, '.' or '_', avoid consecutive delimiters, and end with a letter or digit")
	}
}
