// Package pki is meshext's one certificate authority and identity package:
// it creates CAs and keeps them in a private directory, issues leaf
// certificates with chosen SANs, usages and validity, and turns a verified
// peer certificate into an identity. The xDS server's client authentication
// is built on it; a mesh's builtin CA (Kuma's: RSA 2048, subject
// CN=<mesh>,O=Kuma,OU=Mesh, URI SAN spiffe://<mesh>, workload certificates
// with SPIFFE URI SANs and a 10 s NotBefore skew) is a CA made here with
// other options. Everything is crypto/x509; private keys are never logged
// and only written with mode 0600.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Defaults, as Kuma's builtin CA has them.
const (
	// DefaultClockSkew is how far before "now" a certificate becomes valid,
	// so a peer whose clock is a little behind accepts it.
	DefaultClockSkew = 10 * time.Second
	// DefaultCAValidity is a CA's lifetime (10 years).
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultLeafValidity is a leaf certificate's lifetime.
	DefaultLeafValidity = 24 * time.Hour
	// MinRSABits is the smallest RSA key GenerateKey makes.
	MinRSABits = 2048
)

// KeySpec chooses a private key: ECDSA P-256 (the zero value) or RSA with
// RSABits bits.
type KeySpec struct {
	RSABits int
}

// String names the key for messages.
func (k KeySpec) String() string {
	if k.RSABits == 0 {
		return "ECDSA P-256"
	}
	return fmt.Sprintf("RSA %d", k.RSABits)
}

// GenerateKey makes a new private key.
func GenerateKey(k KeySpec) (crypto.Signer, error) {
	switch {
	case k.RSABits == 0:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case k.RSABits < MinRSABits:
		return nil, fmt.Errorf("pki: RSA key of %d bits is below the minimum of %d", k.RSABits, MinRSABits)
	default:
		return rsa.GenerateKey(rand.Reader, k.RSABits)
	}
}

// Validity is the window of a new certificate: from Now-NotBeforeSkew to
// Now+Lifetime. Zero fields take the defaults (time.Now(), DefaultClockSkew,
// and the CA or leaf default lifetime). NotBefore and NotAfter, when both
// set, give the window exactly instead (tests of expired certificates).
type Validity struct {
	Now           time.Time
	NotBeforeSkew time.Duration
	Lifetime      time.Duration

	NotBefore, NotAfter time.Time
}

func (v Validity) window(defaultLifetime time.Duration) (notBefore, notAfter time.Time, err error) {
	if !v.NotBefore.IsZero() || !v.NotAfter.IsZero() {
		if !v.NotAfter.After(v.NotBefore) {
			return time.Time{}, time.Time{}, fmt.Errorf("pki: NotAfter %s is not after NotBefore %s", v.NotAfter, v.NotBefore)
		}
		return v.NotBefore, v.NotAfter, nil
	}
	now := v.Now
	if now.IsZero() {
		now = time.Now()
	}
	skew := v.NotBeforeSkew
	if skew == 0 {
		skew = DefaultClockSkew
	}
	life := v.Lifetime
	if life == 0 {
		life = defaultLifetime
	}
	if skew < 0 || life <= 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("pki: invalid validity: skew %v, lifetime %v", skew, life)
	}
	return now.Add(-skew), now.Add(life), nil
}

// CAOptions describe a new self-signed CA.
type CAOptions struct {
	Subject pkix.Name
	// URIs are URI SANs, e.g. the trust domain "spiffe://<mesh>".
	URIs     []*url.URL
	Key      KeySpec
	Validity Validity // default lifetime DefaultCAValidity
}

// CA is a certificate authority that issues leaf certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// NewCA makes a self-signed CA.
func NewCA(o CAOptions) (*CA, error) {
	notBefore, notAfter, err := o.Validity.window(DefaultCAValidity)
	if err != nil {
		return nil, err
	}
	key, err := GenerateKey(o.Key)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               o.Subject,
		URIs:                  o.URIs,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := sign(tmpl, key, nil, nil)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: EncodeCertPEM(cert.Raw)}, nil
}

// Pool is a cert pool holding only this CA, for tls.Config RootCAs/ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// KeyPEM is the CA's private key as PKCS#8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return EncodeKeyPEM(ca.Key) }

// LeafOptions describe a leaf certificate.
type LeafOptions struct {
	// CommonName is the subject CN; empty leaves the subject empty, as
	// Kuma's workload certificates have it.
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []*url.URL
	// ExtKeyUsage defaults to server and client authentication.
	ExtKeyUsage []x509.ExtKeyUsage
	Key         KeySpec
	Validity    Validity // default lifetime DefaultLeafValidity
}

// KeyPair is an issued certificate with its private key.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // the leaf alone
	KeyPEM  []byte // PKCS#8
}

// TLSCertificate is the pair ready for tls.Config.Certificates.
func (kp *KeyPair) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{kp.Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
}

// Issue signs a new leaf certificate with a new key. A leaf never outlives
// the CA: a derived NotAfter is capped at the CA's (an explicit one is kept).
func (ca *CA) Issue(o LeafOptions) (*KeyPair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("pki: issue: no CA")
	}
	return issue(o, ca.Cert, ca.Key)
}

// SelfSigned makes a leaf certificate signed by its own key (not a CA), for
// peers that trust exactly that certificate.
func SelfSigned(o LeafOptions) (*KeyPair, error) { return issue(o, nil, nil) }

func issue(o LeafOptions, parent *x509.Certificate, parentKey crypto.Signer) (*KeyPair, error) {
	notBefore, notAfter, err := o.Validity.window(DefaultLeafValidity)
	if err != nil {
		return nil, err
	}
	if parent != nil && o.Validity.NotAfter.IsZero() && notAfter.After(parent.NotAfter) {
		notAfter = parent.NotAfter
	}
	key, err := GenerateKey(o.Key)
	if err != nil {
		return nil, err
	}
	usage := o.ExtKeyUsage
	if len(usage) == 0 {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	keyUsage := x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		keyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPs,
		URIs:                  o.URIs,
	}
	cert, err := sign(tmpl, key, parent, parentKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: EncodeCertPEM(cert.Raw), KeyPEM: keyPEM}, nil
}

// sign gives tmpl a fresh serial and signs it for key: by parent, or by key
// itself when parent is nil.
func sign(tmpl *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	sn, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = sn
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("pki: create certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// newSerial is a random serial in [1, 2^128), as RFC 5280 and the CA/B
// forum want: positive, unpredictable, at most 20 octets.
func newSerial() (*big.Int, error) {
	max := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, max.Sub(max, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// RenewAt is when a certificate should be replaced: after two thirds of its
// lifetime, leaving a third for retries and for peers to pick it up.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life * 2 / 3)
}
