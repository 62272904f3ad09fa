package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs a real TLS handshake over loopback between a server using
// leaf and a client trusting ca, asking for serverName.
func handshake(t *testing.T, ca *CA, leaf *Leaf, serverName string, tlsMax uint16) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = c.(*tls.Conn).Handshake()
	}()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, MaxVersion: tlsMax})
	if err != nil {
		return err
	}
	return c.Close()
}

func TestIssuedLeafVerifiesForItsNameOnly(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(DNSNames("tcpbin.com"), ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, ca, leaf, "tcpbin.com", 0); err != nil {
		t.Fatalf("handshake for the certificate's own name: %v", err)
	}
	err = handshake(t, ca, leaf, "httpbin.org", 0)
	var hn x509.HostnameError
	if !errors.As(err, &hn) {
		t.Fatalf("handshake for another name: got %v, want a hostname error", err)
	}
}

func TestExpiredAndSelfSignedAreRefused(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.Issue(DNSNames("tcpbin.com"), Expired())
	if err != nil {
		t.Fatal(err)
	}
	var inv x509.CertificateInvalidError
	if err := handshake(t, ca, expired, "tcpbin.com", tls.VersionTLS12); !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Fatalf("expired leaf: got %v, want x509 Expired", err)
	}
	self, err := SelfSigned(DNSNames("tcpbin.com"), Key(RSA2048))
	if err != nil {
		t.Fatal(err)
	}
	var unk x509.UnknownAuthorityError
	if err := handshake(t, ca, self, "tcpbin.com", 0); !errors.As(err, &unk) {
		t.Fatalf("self-signed leaf: got %v, want unknown authority", err)
	}
}

func TestSANKinds(t *testing.T) {
	ca, err := NewCA(Key(RSA2048))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(IPs("127.0.0.11", "::1"), URIs("spiffe://example.org/ns/default/sa/web"), ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.Cert.IPAddresses) != 2 || !leaf.Cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.11")) {
		t.Fatalf("IP SANs = %v", leaf.Cert.IPAddresses)
	}
	if len(leaf.Cert.URIs) != 1 || leaf.Cert.URIs[0].String() != "spiffe://example.org/ns/default/sa/web" {
		t.Fatalf("URI SANs = %v", leaf.Cert.URIs)
	}
	if got := leaf.Cert.ExtKeyUsage; len(got) != 1 || got[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("ext key usage = %v, want client auth only", got)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("verify client leaf against CA: %v", err)
	}
}

func TestBadInputIsAnError(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(IPs("not-an-ip")); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("bad IP: err = %v", err)
	}
	if _, err := ca.Issue(URIs("no-scheme")); err == nil {
		t.Fatal("URI without scheme accepted")
	}
	now := time.Now()
	if _, err := ca.Issue(Validity(now, now.Add(-time.Second))); err == nil {
		t.Fatal("inverted validity accepted")
	}
}

func TestWriteFilesModesAndRoundTrip(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(DNSNames("httpbin.org"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "sub", "leaf.crt"), filepath.Join(dir, "sub", "leaf.key")
	if err := leaf.WriteFiles(crt, key); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCertPEM(filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKeyPEM(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{key: 0o600, filepath.Join(dir, "ca.key"): 0o600, crt: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
		t.Fatalf("written pair does not load: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseCertPEM(caPEM)
	if err != nil || !parsed.Equal(ca.Cert) {
		t.Fatalf("CA PEM round trip: %v", err)
	}
	if SPKISHA256(leaf.Cert) == SPKISHA256(ca.Cert) || len(SPKISHA256(leaf.Cert)) != 64 {
		t.Fatal("SPKI pins must be 64 hex chars and differ between keys")
	}
}

func TestLoadCARoundTrip(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteCertPEM(crt); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKeyPEM(key); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := loaded.Issue(DNSNames("grpcbin.test.k6.io"))
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, ca, leaf, "grpcbin.test.k6.io", 0); err != nil {
		t.Fatalf("leaf from the reloaded CA is not trusted by the original: %v", err)
	}
	notCA, err := ca.Issue(DNSNames("x.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := notCA.WriteFiles(crt, key); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(crt, key); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf loaded as CA: err = %v", err)
	}
}
