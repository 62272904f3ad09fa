// Package testpki makes throw-away certificate authorities and leaf
// certificates for tests: server and client certificates with chosen DNS, IP
// and URI SANs, expired or not-yet-valid certificates, and self-signed ones.
// Nothing here is meant for production keys.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
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

func newKey(k KeyType) (crypto.Signer, error) {
	switch k {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("testpki: unknown key type %d", k)
	}
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
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
	key, err := newKey(p.keyType)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: p.commonName, Organization: []string{"meshext tests"}},
		NotBefore:             p.notBefore,
		NotAfter:              p.notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemCert(der)}, nil
}

// Issue signs a leaf certificate. With no SAN options the leaf has no SANs
// (useful for SAN-mismatch tests); the CN defaults to the first DNS name.
func (ca *CA) Issue(opts ...Option) (*Leaf, error) {
	p, err := collect(opts)
	if err != nil {
		return nil, err
	}
	return sign(p, ca.Cert, ca.Key)
}

// SelfSigned makes a leaf certificate signed by its own key (not a CA).
func SelfSigned(opts ...Option) (*Leaf, error) {
	p, err := collect(opts)
	if err != nil {
		return nil, err
	}
	return sign(p, nil, nil)
}

func sign(p *params, parent *x509.Certificate, parentKey crypto.Signer) (*Leaf, error) {
	key, err := newKey(p.keyType)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
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
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             p.notBefore,
		NotAfter:              p.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              p.dnsNames,
		IPAddresses:           p.ips,
		URIs:                  p.uris,
	}
	if parent == nil { // self-signed
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		Cert:    cert,
		Key:     key,
		CertPEM: pemCert(der),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
	}, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
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
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// WriteFiles writes the leaf certificate (0644) and key (0600).
func (l *Leaf) WriteFiles(certPath, keyPath string) error {
	if err := writeFile(certPath, l.CertPEM, 0o644); err != nil {
		return err
	}
	return writeFile(keyPath, l.KeyPEM, 0o600)
}

// writeFile replaces path atomically (temp file + rename), so a watcher never
// reads a half-written PEM.
func writeFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".testpki-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, mode)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// SPKISHA256 is the hex SHA-256 of a certificate's SubjectPublicKeyInfo, the
// value public-key pinning compares.
func SPKISHA256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ParseCertPEM parses the first CERTIFICATE block of a PEM document.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("testpki: no CERTIFICATE PEM block found")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
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
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("testpki: CA %s / %s: %w", certPath, keyPath, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("testpki: %s is not a CA certificate", certPath)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("testpki: %s: key cannot sign", keyPath)
	}
	return &CA{Cert: cert, Key: signer, CertPEM: pemCert(pair.Certificate[0])}, nil
}
