package validate

import (
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

var (
	matchProtocols    = []string{resource.ProtocolTCP, resource.ProtocolGRPC, resource.ProtocolHTTP, resource.ProtocolHTTP2}
	tlsVersions       = []string{resource.TLSAuto, resource.TLS10, resource.TLS11, resource.TLS12, resource.TLS13}
	verificationModes = []string{resource.ModeSkipSAN, resource.ModeSkipCA, resource.ModeSkipAll, resource.ModeSecured}
	sanMatchTypes     = []string{resource.SANPrefix, resource.SANExact}
)

// tlsVersionOrder ranks specific versions; TLSAuto is not comparable.
var tlsVersionOrder = map[string]int{resource.TLS10: 1, resource.TLS11: 2, resource.TLS12: 3, resource.TLS13: 4}

const (
	maxNameLength = 63
	maxPriority   = 128
	// Linux sun_path holds 108 bytes including the terminating NUL.
	maxUnixPathLength = 107
	messagePort       = "port must be a valid (1-65535)"
	messageNotEmpty   = "must not be empty"
	messageAddress    = "address has to be a valid IP or hostname"
	messageUnixPort   = "must not be defined when endpoint is a unix path"
	messageUnixPath   = "unix socket path must be an absolute file path (unix:///path/to/socket)"
	messageDataShape  = "must have exactly one of inline, inlineString, secret"
)

// meshExternalService applies Kuma v2.14's validator in its order, with
// meshext's extra checks placed next to the Kuma rule for the same field.
func meshExternalService(v *violations, r *resource.MeshExternalService) {
	if len(r.DisplayName()) > maxNameLength {
		v.add("name", "must not be longer than %d characters", maxNameLength)
	}
	spec := &r.Spec

	// spec.match
	if spec.Match.Type != resource.MatchTypeHostnameGenerator && spec.Match.Type != "" {
		v.add("spec.match.type", "unrecognized type '%s' - only '%s' is supported", spec.Match.Type, resource.MatchTypeHostnameGenerator)
	}
	if spec.Match.Port != nil && !validPort(*spec.Match.Port) {
		v.add("spec.match.port", messagePort)
	}
	if !slices.Contains(matchProtocols, spec.Match.Protocol) {
		v.add("spec.match.protocol", "%s", mustBeOneOf("protocol", matchProtocols...))
	}

	// Kuma: with an extension, endpoints and tls are the extension's business.
	if spec.Extension == nil {
		// Kuma accepts none and serves a cluster that resets every connection;
		// meshext could not render it, and a file cut short before its
		// endpoints must not replace a working version.
		if len(spec.Endpoints) == 0 {
			v.add("spec.endpoints", "must have at least one element")
		}
		for i, ep := range spec.Endpoints {
			endpoint(v, fmt.Sprintf("spec.endpoints[%d]", i), ep)
		}
		if spec.TLS != nil {
			tls(v, spec.TLS)
		}
	} else if spec.TLS != nil && spec.TLS.Verification != nil {
		// meshext reads the data sources whatever the extension says, so
		// their shape is checked anyway (as Kuma v3 does).
		dataSources(v, spec.TLS.Verification)
	}

	if spec.Extension != nil && spec.Extension.Type == "" {
		v.add("spec.extension.type", messageNotEmpty)
	}
}

func endpoint(v *violations, at string, ep resource.Endpoint) {
	if strings.HasPrefix(ep.Address, resource.UnixPrefix) {
		// Kuma removed unix endpoints in 2.9; the seed keeps them: no port, absolute path.
		if ep.Port != 0 {
			v.add(at+".port", messageUnixPort)
		}
		p := strings.TrimPrefix(ep.Address, resource.UnixPrefix)
		switch {
		case !path.IsAbs(p) || p == "/" || strings.ContainsRune(p, 0):
			v.add(at+".address", messageUnixPath)
		case len(p) > maxUnixPathLength:
			v.add(at+".address", "unix socket path must be at most %d bytes long (the sun_path limit)", maxUnixPathLength)
		}
	} else {
		ip, dns := isIP(ep.Address), isDNSName(ep.Address)
		if (ip || dns) && !validPort(ep.Port) {
			v.add(at+".port", messagePort)
		}
		if !ip && !dns {
			v.add(at+".address", messageAddress)
		}
	}
	// Kuma enforces this in its schema (0..128), not in Go.
	if ep.Priority != nil && *ep.Priority > maxPriority {
		v.add(at+".priority", "must be between 0 and %d", maxPriority)
	}
}

func tls(v *violations, t *resource.TLS) {
	if t.Version != nil {
		validMin, validMax := false, false
		if t.Version.Min != "" {
			if validMin = slices.Contains(tlsVersions, t.Version.Min); !validMin {
				v.add("spec.tls.version.min", "%s", mustBeOneOf("min", tlsVersions...))
			}
		}
		if t.Version.Max != "" {
			if validMax = slices.Contains(tlsVersions, t.Version.Max); !validMax {
				v.add("spec.tls.version.max", "%s", mustBeOneOf("max", tlsVersions...))
			}
		}
		minRank, minSpecific := tlsVersionOrder[t.Version.Min]
		maxRank, maxSpecific := tlsVersionOrder[t.Version.Max]
		if validMin && validMax && minSpecific && maxSpecific && minRank > maxRank {
			v.add("spec.tls.version.min", "min version must be lower than max")
		}
	}
	ver := t.Verification
	if ver == nil {
		return
	}
	const at = "spec.tls.verification"
	if ver.ServerName != "" && !isDNSName(ver.ServerName) {
		v.add(at+".serverName", "must be a valid DNS name")
	}
	if ver.Mode != "" && !slices.Contains(verificationModes, ver.Mode) {
		v.add(at+".mode", "%s", mustBeOneOf("mode", verificationModes...))
	}
	for i, san := range ver.SubjectAltNames {
		if !slices.Contains(sanMatchTypes, san.Type) {
			v.add(fmt.Sprintf("%s.subjectAltNames[%d].type", at, i), "%s", mustBeOneOf("type", sanMatchTypes...))
		}
		// Kuma leaves an empty value to fail at render time; an empty matcher would match anything by prefix.
		if san.Value == "" {
			v.add(fmt.Sprintf("%s.subjectAltNames[%d].value", at, i), messageNotEmpty)
		}
	}
	if ver.ClientCert != nil && ver.ClientKey == nil {
		v.add(at+".clientKey", "must be defined when clientCert is defined")
	}
	if ver.ClientCert == nil && ver.ClientKey != nil {
		v.add(at+".clientCert", "must be defined when clientKey is defined")
	}
	dataSources(v, ver)
}

func dataSources(v *violations, ver *resource.Verification) {
	const at = "spec.tls.verification"
	dataSource(v, at+".caCert", ver.CACert)
	dataSource(v, at+".clientCert", ver.ClientCert)
	dataSource(v, at+".clientKey", ver.ClientKey)
}

// dataSource checks the shape Kuma v2.14 leaves to render time: exactly one
// source, inline is base64, a secret has a name. The secret's existence is
// a build-time, per-service matter.
func dataSource(v *violations, at string, ds *resource.DataSource) {
	if ds == nil {
		return
	}
	n := 0
	for _, set := range []bool{ds.Inline != nil, ds.InlineString != nil, ds.Secret != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.add(at, messageDataShape)
		return
	}
	switch {
	case ds.Inline != nil:
		if strings.TrimSpace(*ds.Inline) == "" {
			v.add(at+".inline", messageNotEmpty)
		} else if _, err := base64.StdEncoding.DecodeString(*ds.Inline); err != nil {
			v.add(at+".inline", "must be valid base64: %v", err)
		}
	case ds.InlineString != nil:
		if *ds.InlineString == "" {
			v.add(at+".inlineString", messageNotEmpty)
		}
	case ds.Secret != nil:
		if *ds.Secret == "" {
			v.add(at+".secret", messageNotEmpty)
		}
	}
}
