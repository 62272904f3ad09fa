package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Identity is who a verified certificate says its holder is: its SPIFFE ID
// when it has a spiffe:// URI SAN, else its subject common name.
type Identity struct {
	// SPIFFEID is the certificate's spiffe:// URI SAN ("" when it has none).
	SPIFFEID string
	// CommonName is the subject CN.
	CommonName string
}

// String is the identity peers are compared by: the SPIFFE ID, else the CN.
func (id Identity) String() string {
	if id.SPIFFEID != "" {
		return id.SPIFFEID
	}
	return id.CommonName
}

// IdentityOf reads the identity of a certificate. A certificate with more
// than one spiffe:// URI SAN is refused: it would name two workloads. Call it
// only on a certificate whose chain was verified (see PeerIdentity).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, errors.New("no certificate")
	}
	id := Identity{CommonName: cert.Subject.CommonName}
	for _, u := range cert.URIs {
		if !strings.EqualFold(u.Scheme, "spiffe") {
			continue
		}
		if id.SPIFFEID != "" {
			return Identity{}, fmt.Errorf("certificate has more than one SPIFFE ID (%s, %s)", id.SPIFFEID, u)
		}
		if err := checkSPIFFEID(u); err != nil {
			return Identity{}, err
		}
		id.SPIFFEID = u.String()
	}
	if id.String() == "" {
		return Identity{}, errors.New("certificate has neither a SPIFFE ID nor a common name")
	}
	return id, nil
}

// PeerIdentity is the identity of a TLS peer whose certificate chain the
// handshake verified. An unverified peer (no client certificate, or
// verification not required) has no identity.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, errors.New("peer presented no verified certificate")
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}

// SPIFFEID builds spiffe://<trustDomain>/<segments...>, checking each part
// against the SPIFFE ID rules: a trust domain of lower-case letters, digits,
// '.', '-' and '_'; path segments of letters, digits, '.', '-' and '_', not
// empty, "." or "..".
func SPIFFEID(trustDomain string, segments ...string) (*url.URL, error) {
	if trustDomain == "" {
		return nil, errors.New("SPIFFE ID: empty trust domain")
	}
	for _, c := range trustDomain {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return nil, fmt.Errorf("SPIFFE ID: trust domain %q: character %q is not allowed (lower-case letters, digits, '.', '-', '_')", trustDomain, c)
		}
	}
	for _, s := range segments {
		if err := checkSegment(s); err != nil {
			return nil, err
		}
	}
	u := &url.URL{Scheme: "spiffe", Host: trustDomain}
	if len(segments) > 0 {
		u.Path = "/" + strings.Join(segments, "/")
	}
	return u, nil
}

func checkSegment(s string) error {
	if s == "" || s == "." || s == ".." {
		return fmt.Errorf("SPIFFE ID: path segment %q is not allowed", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("SPIFFE ID: path segment %q: character %q is not allowed (letters, digits, '.', '-', '_')", s, c)
		}
	}
	return nil
}

// checkSPIFFEID applies the SPIFFE ID rules to a URI SAN.
func checkSPIFFEID(u *url.URL) error {
	if u.Scheme != "spiffe" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.RawPath != "" || strings.Contains(u.Path, "%") {
		return fmt.Errorf("malformed SPIFFE ID %q", u)
	}
	var segs []string
	if u.Path != "" {
		if !strings.HasPrefix(u.Path, "/") {
			return fmt.Errorf("malformed SPIFFE ID %q", u)
		}
		segs = strings.Split(u.Path[1:], "/")
	}
	if _, err := SPIFFEID(u.Host, segs...); err != nil {
		return fmt.Errorf("malformed SPIFFE ID %q: %w", u, err)
	}
	return nil
}
