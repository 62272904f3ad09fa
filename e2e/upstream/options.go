// Package upstream runs loopback stand-ins for the public services the seed's
// examples use: tcpbin.com (TCP echo, plain/TLS/mTLS), httpbin.org (HTTP and
// HTTPS with httpbin-style JSON) and grpcbin.test.k6.io (gRPC with server
// reflection, plain and TLS). Each server is configured with functional
// options, so tests can also run variants: TLS 1.3 only, other certificate
// names, a required client certificate.
package upstream

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
)

// Option configures one stand-in server.
type Option func(*options)

type options struct {
	addr         string
	cert         *tls.Certificate
	minTLS       uint16
	maxTLS       uint16
	clientCAs    *x509.CertPool
	clientPins   []string // hex SHA-256 of SubjectPublicKeyInfo
	requireCert  bool
	logger       *slog.Logger
	errs         []error
	handshakeLog *HandshakeLog
}

// Addr sets the listen address, host:port. Default "127.0.0.1:0".
func Addr(hostport string) Option { return func(o *options) { o.addr = hostport } }

// TLS serves TLS with cert (use testpki to make one for the wanted names).
func TLS(cert tls.Certificate) Option { return func(o *options) { o.cert = &cert } }

// TLSVersions bounds the TLS versions the server accepts, e.g.
// TLSVersions(tls.VersionTLS13, tls.VersionTLS13) for a TLS 1.3-only server.
// Zero leaves Go's default for that bound. Needs TLS.
func TLSVersions(min, max uint16) Option {
	return func(o *options) { o.minTLS, o.maxTLS = min, max }
}

// RequireClientCertFrom requires a client certificate that chains to pool
// (ordinary chain verification, including expiry). Needs TLS.
func RequireClientCertFrom(pool *x509.CertPool) Option {
	return func(o *options) { o.clientCAs, o.requireCert = pool, true }
}

// RequireClientKey requires a client certificate whose public key has one of
// the given SPKI SHA-256 pins (hex, as testpki.SPKISHA256 prints them). The
// chain, issuer and validity dates are not checked: the pin is the identity.
// Needs TLS.
func RequireClientKey(spkiSHA256Hex ...string) Option {
	return func(o *options) {
		for _, p := range spkiSHA256Hex {
			p = strings.ToLower(strings.ReplaceAll(p, ":", ""))
			if b, err := hex.DecodeString(p); err != nil || len(b) != sha256.Size {
				o.errs = append(o.errs, fmt.Errorf("upstream: client key pin %q is not a hex SHA-256", p))
				continue
			}
			o.clientPins = append(o.clientPins, p)
		}
		o.requireCert = true
	}
}

// RequireSeedClientCert requires exactly the client certificate of the seed's
// "TCP with mTLS" example (see SeedClientSPKISHA256).
func RequireSeedClientCert() Option { return RequireClientKey(SeedClientSPKISHA256) }

// Logger sets where connection errors go; default slog.Default().
func Logger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// RecordHandshakes appends every successful TLS handshake to log, so tests
// can assert the SNI, version and ALPN a client (Envoy) used.
func RecordHandshakes(log *HandshakeLog) Option { return func(o *options) { o.handshakeLog = log } }

func collect(opts []Option) (*options, error) {
	o := &options{addr: "127.0.0.1:0"}
	for _, f := range opts {
		f(o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.cert == nil && (o.minTLS != 0 || o.maxTLS != 0 || o.requireCert) {
		o.errs = append(o.errs, errors.New("upstream: TLS versions and client certificates need the TLS option"))
	}
	if o.requireCert && len(o.clientPins) == 0 && o.clientCAs == nil {
		// Otherwise the server would silently accept clients without a certificate.
		o.errs = append(o.errs, errors.New("upstream: client certificate required but no pin or CA pool given"))
	}
	if o.minTLS != 0 && o.maxTLS != 0 && o.minTLS > o.maxTLS {
		o.errs = append(o.errs, fmt.Errorf("upstream: min TLS version %s above max %s", tls.VersionName(o.minTLS), tls.VersionName(o.maxTLS)))
	}
	return o, errors.Join(o.errs...)
}

// tlsConfig builds the server tls.Config, or nil for plaintext.
func (o *options) tlsConfig(nextProtos ...string) *tls.Config {
	if o.cert == nil {
		return nil
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*o.cert},
		MinVersion:   o.minTLS,
		MaxVersion:   o.maxTLS,
		NextProtos:   nextProtos,
	}
	switch {
	case len(o.clientPins) > 0:
		// Any certificate is accepted by crypto/tls here, and the pin check
		// below decides: the seed's client certificate is expired and its
		// issuer unknown, so chain verification would always refuse it.
		cfg.ClientAuth = tls.RequireAnyClientCert
		pins := o.clientPins
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("upstream: no client certificate")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("upstream: client certificate: %w", err)
			}
			sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
			got := hex.EncodeToString(sum[:])
			for _, p := range pins {
				if got == p {
					return nil
				}
			}
			return fmt.Errorf("upstream: client certificate %q has public key %s, not a pinned one", leaf.Subject.CommonName, got)
		}
	case o.clientCAs != nil:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = o.clientCAs
	}
	if o.handshakeLog != nil {
		hl := o.handshakeLog
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			hl.add(cs)
			return nil
		}
	}
	return cfg
}

// Handshake is what a client negotiated with a TLS stand-in.
type Handshake struct {
	ServerName  string // SNI the client sent
	Version     uint16
	ALPN        string
	ClientCert  bool   // a client certificate was presented and accepted
	ClientSubCN string // its subject CN
	// ClientCertSHA256 is the hex SHA-256 of that certificate (DER): which
	// certificate it was, even when two share a name.
	ClientCertSHA256 string
	Resumed          bool // a resumed session (the certificate is the session's)
}

// HandshakeLog collects handshakes; safe for concurrent use.
type HandshakeLog struct {
	mu   sync.Mutex
	list []Handshake
}

func (h *HandshakeLog) add(cs tls.ConnectionState) {
	hs := Handshake{ServerName: cs.ServerName, Version: cs.Version, ALPN: cs.NegotiatedProtocol, Resumed: cs.DidResume}
	if len(cs.PeerCertificates) > 0 {
		hs.ClientCert = true
		hs.ClientSubCN = cs.PeerCertificates[0].Subject.CommonName
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		hs.ClientCertSHA256 = hex.EncodeToString(sum[:])
	}
	h.mu.Lock()
	h.list = append(h.list, hs)
	h.mu.Unlock()
}

// All returns a copy of the handshakes so far.
func (h *HandshakeLog) All() []Handshake {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Handshake(nil), h.list...)
}

// Server is one running stand-in.
type Server struct {
	kind  string
	addr  string
	tls   bool
	close func() error
	once  sync.Once
	err   error
}

// Addr is the bound host:port.
func (s *Server) Addr() string { return s.addr }

// TLS reports whether the server speaks TLS.
func (s *Server) TLS() bool { return s.tls }

// Kind names the service: "tcp-echo", "http" or "grpc".
func (s *Server) Kind() string { return s.kind }

// Close stops the server and waits for its connections to end (bounded).
func (s *Server) Close() error {
	s.once.Do(func() { s.err = s.close() })
	return s.err
}

func listen(o *options) (net.Listener, error) {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("upstream: listen %s: %w", o.addr, err)
	}
	return ln, nil
}
