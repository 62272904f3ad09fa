// Package testpki makes throw-away certificate authorities and leaf
// certificates for tests: server and client certificates with chosen DNS, IP
// and URI SANs, expired or not-yet-valid certificates, and self-signed ones.
// It is an options front end over controller/pki, which does the crypto.
// Nothing here is meant for production keys.
package testpki

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/meshext/meshext/controller/pki"
)

// KeyType selects the private key algorithm of a certificate.
type KeyType int

const (
	// ECDSAP256 is the default: fast to generate, accepted by Envoy and Go.
	ECDSAP256 KeyType = iota
	// RSA2048 is for tests that need RSA (the seed's client certificate is RSA).
	RSA2048
)

// CA is a certificate authority that issues leaf certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// Leaf is an issued (or self-signed) certificate with its key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // the leaf followed by nothing else
	KeyPEM  []byte // PKCS#8
	// TLS is ready for tls.Config.Certificates.
	TLS tls.Certificate
}

type params struct {
	commonName string
	dnsNames   []string
	ips        []net.IP
	uris       []*url.URL
	notBefore  time.Time
	notAfter   time.Time
	keyType    KeyType
	client     bool
	server     bool
	err        error
}

// Option shapes a CA or a leaf certificate.
type Option func(*params)

// CommonName sets the subject CN.
func CommonName(cn string) Option { return func(p *params) { p.commonName = cn } }

// DNSNames adds DNS SANs (wildcards such as "*.example.com" allowed).
func DNSNames(names ...string) Option {
	return func(p *params) { p.dnsNames = append(p.dnsNames, names...) }
}

// IPs adds IP SANs; an unparsable address makes the issue call fail.
func IPs(ips ...string) Option {
	return func(p *params) {
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				p.err = errors.Join(p.err, fmt.Errorf("testpki: %q is not an IP address", s))
				continue
			}
			p.ips = append(p.ips, ip)
		}
	}
}

// URIs adds URI SANs such as "spiffe://example.org/ns/default/sa/web".
func URIs(uris ...string) Option {
	return func(p *params) {
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil || u.Scheme == "" {
				p.err = errors.Join(p.err, fmt.Errorf("testpki: %q is not an absolute URI", s))
				continue
			}
			p.uris = append(p.uris, u)
		}
	}
}

// Validity sets the validity window explicitly.
func Validity(notBefore, notAfter time.Time) Option {
	return func(p *params) { p.notBefore, p.notAfter = notBefore, notAfter }
}

// Expired makes a certificate whose validity ended an hour ago.
func Expired() Option {
	return Validity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
}

// NotYetValid makes a certificate whose validity starts in a day.
func NotYetValid() Option {
	return Validity(time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour))
}

// Key selects the key algorithm.
func Key(k KeyType) Option { return func(p *params) { p.keyType = k } }

// ClientAuth marks the leaf for client authentication only (ExtKeyUsageClientAuth).
// Without ClientAuth or ServerAuth a leaf is usable for both.
func ClientAuth() Option { return func(p *params) { p.client = true } }

// ServerAuth marks the leaf for server authentication only.
func ServerAuth() Option { return func(p *params) { p.server = true } }

func collect(opts []Option) (*params, error) {
	p := &params{
		notBefore: time.Now().Add(-time.Hour), // tolerate small clock skew between processes
		notAfter:  time.Now().Add(24 * time.Hour),
	}
	for _, o := range opts {
		o(p)
	}
	if p.err != nil {
		return nil, p.err
	}
	if !p.notAfter.After(p.notBefore) {
		return nil, fmt.Errorf("testpki: notAfter %s is not after notBefore %s", p.notAfter, p.notBefore)
	}
	return p, nil
}

func (p *params) keySpec() (pki.KeySpec, error) {
	switch p.keyType {
	case ECDSAP256:
		return pki.KeySpec{}, nil
	case RSA2048:
		return pki.KeySpec{RSABits: 2048}, nil
	default:
		return pki.KeySpec{}, fmt.Errorf("testpki: unknown key type %d", p.keyType)
	}
}

func (p *params) validity() pki.Validity {
	return pki.Validity{NotBefore: p.notBefore, NotAfter: p.notAfter}
}

// NewCA makes a self-signed CA. Options: CommonName, Validity/Expired, Key.
func NewCA(opts ...Option) (*CA, error) {
	p, err := collect(opts)
	if err != nil {
		return nil, err
	}
	if p.commonName == "" {
		p.commonName = "meshext test CA"
	}
	key, err := p.keySpec()
	if err != nil {
		return nil, err
	}
	ca, err := pki.NewCA(pki.CAOptions{
		Subject:  pkix.Name{CommonName: p.commonName, Organization: []string{"meshext tests"}},
		Key:      key,
		Validity: p.validity(),
	})
	if err != nil {
		return nil, err
	}
	return &CA{Cert: ca.Cert, Key: ca.Key, CertPEM: ca.CertPEM}, nil
}

// Issue signs a leaf certificate. With no SAN options the leaf has no SANs
// (useful for SAN-mismatch tests); the CN defaults to the first DNS name.
func (ca *CA) Issue(opts ...Option) (*Leaf, error) {
	p, err := collect(opts)
	if err != nil {
		return nil, err
	}
	return sign(p, &pki.CA{Cert: ca.Cert, Key: ca.Key, CertPEM: ca.CertPEM})
}

// SelfSigned makes a leaf certificate signed by its own key (not a CA).
func SelfSigned(opts ...Option) (*Leaf, error) {
	p, err := collect(opts)
	if err != nil {
		return nil, err
	}
	return sign(p, nil)
}

// sign issues from ca, or self-signs when ca is nil.
func sign(p *params, ca *pki.CA) (*Leaf, error) {
	key, err := p.keySpec()
	if err != nil {
		return nil, err
	}
	cn := p.commonName
	if cn == "" && len(p.dnsNames) > 0 {
		cn = p.dnsNames[0]
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	switch {
	case p.client && !p.server:
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case p.server && !p.client:
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	o := pki.LeafOptions{
		CommonName: cn, DNSNames: p.dnsNames, IPs: p.ips, URIs: p.uris,
		ExtKeyUsage: usage, Key: key, Validity: p.validity(),
	}
	var kp *pki.KeyPair
	if ca == nil {
		kp, err = pki.SelfSigned(o)
	} else {
		kp, err = ca.Issue(o)
	}
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	return &Leaf{Cert: kp.Cert, Key: kp.Key, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM, TLS: kp.TLSCertificate()}, nil
}

// Pool is a cert pool holding only this CA, for tls.Config.RootCAs/ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCertPEM writes the CA certificate (public) to path, creating parent directories.
func (ca *CA) WriteCertPEM(path string) error {
	return writeFile(path, ca.CertPEM, 0o644)
}

// WriteKeyPEM writes the CA private key to path with mode 0600.
func (ca *CA) WriteKeyPEM(path string) error {
	keyPEM, err := pki.EncodeKeyPEM(ca.Key)
	if err != nil {
		return err
	}
	return writeFile(path, keyPEM, 0o600)
}

// WriteFiles writes the leaf certificate (0644) and key (0600).
func (l *Leaf) WriteFiles(certPath, keyPath string) error {
	if err := writeFile(certPath, l.CertPEM, 0o644); err != nil {
		return err
	}
	return writeFile(keyPath, l.KeyPEM, 0o600)
}

// writeFile replaces path atomically (temp file + rename), so a watcher never
// reads a half-written PEM, creating parent directories.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, data, mode)
}

// SPKISHA256 is the hex SHA-256 of a certificate's SubjectPublicKeyInfo, the
// value public-key pinning compares.
func SPKISHA256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ParseCertPEM parses the first CERTIFICATE block of a PEM document.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := pki.ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	return certs[0], nil
}

// LoadCA reads a CA certificate and its PKCS#8 (or EC/PKCS#1) private key
// from PEM files, e.g. ones written by WriteCertPEM and WriteKeyPEM, so a
// restarted process can keep issuing under the same trust anchor.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	cert, key, err := pki.ParseKeyPairPEM(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("testpki: CA %s / %s: %w", certPath, keyPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("testpki: %s is not a CA certificate", certPath)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pki.EncodeCertPEM(cert.Raw)}, nil
}
