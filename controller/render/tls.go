package render

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
)

const transportSocketTLS = "envoy.transport_sockets.tls"

// A client certificate's secret is named per service, so rotating it changes
// one SDS resource and leaves the cluster untouched (F7). Trust anchors are
// shared: a caCert from a Secret is one SDS secret per Secret (rotating the
// Secret touches no cluster, F7), an inline one is named by its content
// (names.CASecret). At 10k services with one CA that is one secret instead
// of 10k: per-service secrets cost 10k files and exceed Envoy's inotify
// budget in file mode. Editing an inline caCert is an edit of that service:
// its cluster moves to the new bundle's secret, the others stay.
func caSecretName(s *model.Service) string {
	if secret, ok := strings.CutPrefix(s.TLS.CASource, "secret:"); ok {
		return names.SecretCASecret(s.Mesh, secret)
	}
	return names.CASecret(s.TLS.CA)
}

func clientSecretName(s *model.Service) string { return names.ClientSecret(s.ClusterName()) }

// SecretPath is where SecretsFile mode expects the secret's DiscoveryResponse
// file in dir (the SDS directory): the file controller/xds writes.
func SecretPath(dir, name string) string { return xds.SecretFile(dir, name) }

// upstreamTLS renders the cluster's TLS transport socket and its SDS secrets.
//
// Mode semantics (Kuma's, with its quirks fixed):
//
//	mode     trust anchors          SAN check                   client cert
//	Secured  required (F1)          yes                         yes
//	SkipSAN  required (F1)          no; serverName kept (F8)    yes
//	SkipCA   if any: ACCEPT_UNTRUSTED, SANs counted only (F3)   yes
//	SkipAll  none                   no                          yes (Kuma drops it)
//
// Version bounds, ALPN and SNI apply in every mode (F2, F6, F5).
func (r *renderer) upstreamTLS(s *model.Service) (*corev3.TransportSocket, []*tlsv3.Secret, error) {
	t := s.TLS
	params, err := tlsParams(t.MinVersion, t.MaxVersion)
	if err != nil {
		return nil, nil, err
	}
	common := &tlsv3.CommonTlsContext{
		// F2: bounds in every mode, TLSAuto as an explicit 1.2..1.3 range.
		TlsParams:     params,
		AlpnProtocols: alpn(s.Protocol),
	}
	var secrets []*tlsv3.Secret

	// Client certificate. SkipAll keeps it too: SkipAll is about verifying the
	// server; dropping our identity (as Kuma does) only breaks mTLS servers.
	switch {
	case len(t.ClientCert) > 0 && len(t.ClientKey) > 0:
		sec := &tlsv3.Secret{
			Name: clientSecretName(s),
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inlineBytes(t.ClientCert),
				PrivateKey:       inlineBytes(t.ClientKey),
			}},
		}
		secrets = append(secrets, sec)
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{r.sdsRef(sec.Name)}
	case len(t.ClientCert) > 0 || len(t.ClientKey) > 0:
		return nil, nil, fmt.Errorf("tls: clientCert and clientKey must be given together")
	}

	// Trust anchors: the user's CA, else the system bundle by file name (Envoy
	// has no usable "system roots" switch). Both travel as an SDS secret.
	var ca *tlsv3.Secret
	var shared caShared
	if len(t.CA) > 0 || t.SystemCAPath != "" {
		shared, _ = r.caSecrets.get(caKey{mesh: s.Mesh, source: t.CASource, data: firstByte(t.CA), n: len(t.CA), sys: t.SystemCAPath},
			func() (caShared, error) { return r.caSecret(s), nil })
		ca = shared.secret
	}

	up := &tlsv3.UpstreamTlsContext{
		CommonTlsContext:   common,
		AllowRenegotiation: t.AllowRenegotiation,
	}
	// SNI (F5, F8): an explicit serverName is sent to every endpoint, in every
	// mode; otherwise each host's own name (Endpoint.hostname / DNS name).
	// Not both: Envoy lets the host name beat a static sni. An IP literal
	// serverName is never sent (RFC 6066 SNI carries host names only); it is
	// still the implicit SAN, as an IP_ADDRESS matcher.
	if t.ServerName != "" && !hostIsIP(t.ServerName) {
		up.Sni = t.ServerName
	} else if t.ServerName == "" {
		up.AutoHostSni = true
	}

	var defaults *tlsv3.CertificateValidationContext
	switch t.Mode {
	case resource.ModeSecured, resource.ModeSkipSAN:
		if ca == nil {
			// F1: Kuma silently verifies nothing here. Fail closed instead.
			return nil, nil, fmt.Errorf("tls: mode %s needs trust anchors, but no caCert was given and no system CA bundle was found (refusing to render an unverified TLS cluster)", t.Mode)
		}
		defaults = &tlsv3.CertificateValidationContext{}
		if t.Mode == resource.ModeSecured {
			m, auto, err := sanMatchers(s)
			if err != nil {
				return nil, nil, err
			}
			defaults.MatchTypedSubjectAltNames = m
			up.AutoSniSanValidation = auto
		}
	case resource.ModeSkipCA:
		// F3: keep the SAN matchers and bounds, accept an untrusted chain.
		// Envoy caveat (v1.39 default_validator.cc, pinned by live_test.go):
		// ACCEPT_UNTRUSTED also accepts SAN mismatches, counting them in
		// ssl.fail_verify_san, and with an untrusted chain it returns before
		// looking at SANs at all (only ssl.fail_verify_error counts). So SkipCA
		// makes mismatches visible for trusted chains; it does not enforce
		// SANs. The Rendered condition says so. Envoy refuses SAN matchers
		// without trusted_ca, so with no CA at all there is no validation
		// context (nothing is verified, which SkipCA asked for).
		if ca != nil {
			m, auto, err := sanMatchers(s)
			if err != nil {
				return nil, nil, err
			}
			defaults = &tlsv3.CertificateValidationContext{
				TrustChainVerification:    tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED,
				MatchTypedSubjectAltNames: m,
			}
			up.AutoSniSanValidation = auto
		}
	case resource.ModeSkipAll:
		ca = nil
	default:
		return nil, nil, fmt.Errorf("tls: unknown verification mode %q", t.Mode)
	}
	if ca != nil {
		secrets = append(secrets, ca)
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         defaults,
				ValidationContextSdsSecretConfig: shared.ref,
			},
		}
	}
	for _, sec := range secrets {
		err := shared.invalid
		if sec != ca {
			err = validate(sec)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("tls secret %s: %w", sec.Name, err)
		}
	}
	a, err := pack(up)
	if err != nil {
		return nil, nil, err
	}
	return &corev3.TransportSocket{Name: transportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, secrets, nil
}

// caKey is what a service's trust-anchor secret is made of: services
// with the same CA share one copy of its bytes (model), so its address
// stands for its content, and a Secret's CA is named by mesh and source.
type caKey struct {
	mesh, source string
	data         *byte
	n            int
	sys          string
}

// caShared is one trust-anchor secret, its SDS reference and its
// validation outcome, shared by every cluster that trusts it: at 10k
// services with one CA, one secret instead of 10k named by hashing the CA
// and validated 10k times.
type caShared struct {
	secret  *tlsv3.Secret
	ref     *tlsv3.SdsSecretConfig
	invalid error
}

// caSecret is s's trust anchors as an SDS secret: the user's CA, else the
// system bundle by file name (Envoy has no usable "system roots" switch).
func (r *renderer) caSecret(s *model.Service) caShared {
	t := s.TLS
	var ca *tlsv3.Secret
	if len(t.CA) > 0 {
		ca = &tlsv3.Secret{Name: caSecretName(s), Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inlineBytes(t.CA)}}}
	} else {
		// One secret per bundle path, shared by every service that trusts it:
		// in file-drop mode Envoy holds one inotify instance per SDS file, and
		// the kernel's default limit is 128 per user. Its content is a file
		// name, so the bundle itself still rotates by Envoy's file watch.
		ca = &tlsv3.Secret{Name: names.SystemCASecret(t.SystemCAPath), Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.SystemCAPath}},
		}}}
	}
	return caShared{secret: ca, ref: r.sdsRef(ca.Name), invalid: validate(ca)}
}

// firstByte is the address of b's bytes (nil when empty).
func firstByte(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// sdsRef points at a secret by name, over ADS or in its own file.
func (r *renderer) sdsRef(name string) *tlsv3.SdsSecretConfig {
	src := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3}
	if r.opts.SecretsVia == SecretsFile {
		src.ConfigSourceSpecifier = &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
			Path:             r.opts.FileFormat.SecretFile(r.opts.SecretsDir, name),
			WatchedDirectory: &corev3.WatchedDirectory{Path: r.opts.SecretsDir},
		}}
	} else {
		src.ConfigSourceSpecifier = &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}
	}
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: src}
}

// sanMatchers decides which certificate names are accepted (F4, F9).
//
// F9, decided: explicit subjectAltNames REPLACE the implicit host-name check
// (as in Gateway API); they never widen it, unlike Kuma, which ORs them with
// the SNI. With no explicit SANs the implicit name is serverName (typed), or,
// without serverName, the name each endpoint is dialled by: auto=true asks
// Envoy to check a DNS SAN equal to the SNI it sent (auto_host_sni), and the
// returned matchers (each endpoint host, typed) apply where no SNI was sent
// (IP endpoints).
func sanMatchers(s *model.Service) (ms []*tlsv3.SubjectAltNameMatcher, auto bool, err error) {
	t := s.TLS
	if len(t.SANs) > 0 {
		for i, san := range t.SANs {
			m, err := sanMatcher(san)
			if err != nil {
				return nil, false, fmt.Errorf("tls: subjectAltNames[%d]: %w", i, err)
			}
			ms = append(ms, m)
		}
		return ms, false, nil
	}
	if t.ServerName != "" {
		return []*tlsv3.SubjectAltNameMatcher{typedExact(t.ServerName)}, false, nil
	}
	seen := map[string]bool{}
	for _, ep := range s.Endpoints {
		if ep.Unix || seen[ep.Address] {
			continue
		}
		seen[ep.Address] = true
		ms = append(ms, typedExact(ep.Address))
	}
	if len(ms) == 0 {
		return nil, false, fmt.Errorf("tls: nothing to verify the server's name against (unix socket endpoints): set verification.serverName or subjectAltNames, or mode SkipSAN")
	}
	return ms, true, nil
}

// sanMatcher types a user SAN (F4): URI for "scheme://...", IP_ADDRESS for an
// IP literal, DNS otherwise; one matcher per value.
func sanMatcher(san resource.SubjectAltName) (*tlsv3.SubjectAltNameMatcher, error) {
	var sm *matcherv3.StringMatcher
	switch san.Type {
	case resource.SANExact, "":
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san.Value}}
	case resource.SANPrefix:
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: san.Value}}
	default:
		return nil, fmt.Errorf("unknown match type %q (want Exact or Prefix)", san.Type)
	}
	if san.Value == "" {
		return nil, fmt.Errorf("empty value")
	}
	return &tlsv3.SubjectAltNameMatcher{SanType: sanType(san.Value), Matcher: sm}, nil
}

func typedExact(v string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{
		SanType: sanType(v),
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}},
	}
}

func sanType(v string) tlsv3.SubjectAltNameMatcher_SanType {
	switch {
	case strings.Contains(v, "://"):
		return tlsv3.SubjectAltNameMatcher_URI
	case hostIsIP(v):
		return tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	default:
		return tlsv3.SubjectAltNameMatcher_DNS
	}
}

// alpn makes the negotiated protocol explicit (F6): h2 for grpc/http2,
// http/1.1 for http, none for tcp (the upstream speaks whatever it speaks).
func alpn(protocol string) []string {
	switch protocol {
	case resource.ProtocolGRPC, resource.ProtocolHTTP2:
		return []string{"h2"}
	case resource.ProtocolHTTP:
		return []string{"http/1.1"}
	}
	return nil
}

var tlsVersions = map[string]tlsv3.TlsParameters_TlsProtocol{
	resource.TLS10: tlsv3.TlsParameters_TLSv1_0,
	resource.TLS11: tlsv3.TlsParameters_TLSv1_1,
	resource.TLS12: tlsv3.TlsParameters_TLSv1_2,
	resource.TLS13: tlsv3.TlsParameters_TLSv1_3,
}

// legacyCipherSuites extends Envoy's client defaults (AEAD only, which TLS 1.0
// and 1.1 cannot use) with ECDHE CBC suites, only when min < TLS 1.2 was asked for.
var legacyCipherSuites = []string{
	"[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
	"[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]",
	"ECDHE-ECDSA-AES256-GCM-SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384",
	"ECDHE-ECDSA-AES128-SHA",
	"ECDHE-RSA-AES128-SHA",
	"ECDHE-ECDSA-AES256-SHA",
	"ECDHE-RSA-AES256-SHA",
}

// tlsParams maps Kuma's version names to Envoy's; TLSAuto is min TLSv1_2 and
// max TLSv1_3, written out because Envoy's client default max is TLSv1_2 (F2).
func tlsParams(min, max string) (*tlsv3.TlsParameters, error) {
	lo, hi := tlsv3.TlsParameters_TLSv1_2, tlsv3.TlsParameters_TLSv1_3
	if min != "" && min != resource.TLSAuto {
		v, ok := tlsVersions[min]
		if !ok {
			return nil, fmt.Errorf("tls: unknown version.min %q", min)
		}
		lo = v
	}
	if max != "" && max != resource.TLSAuto {
		v, ok := tlsVersions[max]
		if !ok {
			return nil, fmt.Errorf("tls: unknown version.max %q", max)
		}
		hi = v
		if min == "" || min == resource.TLSAuto {
			// An explicit max below 1.2 with an automatic min means "that old version".
			lo = min2(lo, hi)
		}
	}
	if lo > hi {
		return nil, fmt.Errorf("tls: version.min %s is above version.max %s", min, max)
	}
	p := &tlsv3.TlsParameters{TlsMinimumProtocolVersion: lo, TlsMaximumProtocolVersion: hi}
	if lo < tlsv3.TlsParameters_TLSv1_2 {
		p.CipherSuites = legacyCipherSuites
	}
	return p, nil
}

func min2(a, b tlsv3.TlsParameters_TlsProtocol) tlsv3.TlsParameters_TlsProtocol {
	if a < b {
		return a
	}
	return b
}

// tlsNote is what a successfully rendered service's Rendered condition should
// tell the user about TLS that the config alone does not show.
func tlsNote(s *model.Service) string {
	t := s.TLS
	if t == nil || t.Mode != resource.ModeSkipCA || (len(t.CA) == 0 && t.SystemCAPath == "") {
		return ""
	}
	return "SkipCA: server names are not enforced by Envoy (ACCEPT_UNTRUSTED); a mismatch with a trusted chain is only counted in ssl.fail_verify_san, and an untrusted chain skips the name check"
}
