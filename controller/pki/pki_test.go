package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newTestCA(t *testing.T, o CAOptions) *CA {
	t.Helper()
	ca, err := NewCA(o)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// A Kuma-shaped mesh CA and workload certificate: RSA 2048, subject
// CN=<mesh>,O=Kuma,OU=Mesh, trust-domain URI SAN, a 24 h leaf valid from
// now-10s with server and client auth, verifiable against the CA.
func TestMeshCAAndWorkloadCert(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	ca := newTestCA(t, CAOptions{
		Subject:  pkix.Name{CommonName: "default", Organization: []string{"Kuma"}, OrganizationalUnit: []string{"Mesh"}},
		URIs:     []*url.URL{mustURL(t, "spiffe://default")},
		Key:      KeySpec{RSABits: 2048},
		Validity: Validity{Now: now},
	})
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "default" || ca.Cert.Subject.Organization[0] != "Kuma" {
		t.Fatalf("CA subject/flags: %+v", ca.Cert.Subject)
	}
	if k, ok := ca.Key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Fatalf("CA key: %T", ca.Key)
	}
	if got := ca.Cert.NotAfter.Sub(now); got != DefaultCAValidity {
		t.Errorf("CA lifetime %v, want %v", got, DefaultCAValidity)
	}
	wl, err := ca.Issue(LeafOptions{
		URIs:     []*url.URL{mustURL(t, "spiffe://default/backend"), mustURL(t, "kuma://team/payments")},
		Key:      KeySpec{RSABits: 2048},
		Validity: Validity{Now: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	if wl.Cert.Subject.CommonName != "" {
		t.Errorf("workload subject should be empty, got %q", wl.Cert.Subject.CommonName)
	}
	if got := now.Sub(wl.Cert.NotBefore); got != DefaultClockSkew {
		t.Errorf("NotBefore skew %v, want %v", got, DefaultClockSkew)
	}
	if got := wl.Cert.NotAfter.Sub(now); got != DefaultLeafValidity {
		t.Errorf("leaf lifetime %v, want %v", got, DefaultLeafValidity)
	}
	if wl.Cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Errorf("RSA leaf without key encipherment: %v", wl.Cert.KeyUsage)
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := wl.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Errorf("verify for %v: %v", eku, err)
		}
	}
	id, err := IdentityOf(wl.Cert)
	if err != nil || id.String() != "spiffe://default/backend" {
		t.Errorf("identity %q (%v), want the SPIFFE ID", id, err)
	}
	if bytes.Contains(wl.CertPEM, []byte("PRIVATE")) || !bytes.HasPrefix(wl.KeyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("PEM shapes wrong")
	}
}

func TestIssueSANsUsageValidity(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, CAOptions{Subject: pkix.Name{CommonName: "test"}, Validity: Validity{Lifetime: time.Hour}})
	if _, ok := ca.Key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("default key is %T, want ECDSA", ca.Key)
	}
	kp, err := ca.Issue(LeafOptions{
		CommonName:  "node-a",
		DNSNames:    []string{"xds.example"},
		IPs:         []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Validity:    Validity{Lifetime: 48 * time.Hour, NotBeforeSkew: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !kp.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("leaf outlives its CA: %v > %v", kp.Cert.NotAfter, ca.Cert.NotAfter)
	}
	if d := time.Since(kp.Cert.NotBefore); d < time.Minute || d > 2*time.Minute {
		t.Errorf("NotBefore skew %v, want about 1m", d)
	}
	if len(kp.Cert.ExtKeyUsage) != 1 || kp.Cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v", kp.Cert.ExtKeyUsage)
	}
	if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "xds.example"}); err == nil {
		t.Errorf("a client-auth-only certificate verified for server auth")
	}
	if err := kp.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("IP SAN: %v", err)
	}
	id, err := IdentityOf(kp.Cert)
	if err != nil || id.String() != "node-a" || id.SPIFFEID != "" {
		t.Errorf("identity %+v (%v), want CN node-a", id, err)
	}
	if _, err := GenerateKey(KeySpec{RSABits: 1024}); err == nil {
		t.Errorf("1024-bit RSA accepted")
	}
	if _, err := ca.Issue(LeafOptions{Validity: Validity{Lifetime: -time.Hour}}); err == nil {
		t.Errorf("negative lifetime accepted")
	}
	if got := RenewAt(kp.Cert); !got.After(kp.Cert.NotBefore) || !got.Before(kp.Cert.NotAfter) {
		t.Errorf("RenewAt %v outside the validity", got)
	}
}

func TestIdentityRules(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, CAOptions{Subject: pkix.Name{CommonName: "test"}})
	issue := func(o LeafOptions) *x509.Certificate {
		kp, err := ca.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		return kp.Cert
	}
	two := issue(LeafOptions{URIs: []*url.URL{mustURL(t, "spiffe://td/a"), mustURL(t, "spiffe://td/b")}})
	if _, err := IdentityOf(two); err == nil {
		t.Errorf("two SPIFFE IDs accepted")
	}
	for _, bad := range []string{"spiffe://td/a%2Fb", "spiffe://TD/a", "spiffe://td/a?x=1", "spiffe://td/../x", "spiffe://td:8/a"} {
		c := issue(LeafOptions{CommonName: "cn", URIs: []*url.URL{mustURL(t, bad)}})
		if id, err := IdentityOf(c); err == nil {
			t.Errorf("%s accepted as %q", bad, id)
		}
	}
	if _, err := IdentityOf(issue(LeafOptions{})); err == nil {
		t.Errorf("a certificate without SPIFFE ID or CN has an identity")
	}
	other := issue(LeafOptions{CommonName: "cn", URIs: []*url.URL{mustURL(t, "https://example.test/x")}})
	if id, err := IdentityOf(other); err != nil || id.String() != "cn" {
		t.Errorf("non-SPIFFE URI: %q %v, want the CN", id, err)
	}
	if _, err := PeerIdentity(tls.ConnectionState{PeerCertificates: []*x509.Certificate{other}}); err == nil {
		t.Errorf("an unverified peer certificate gave an identity")
	}
	if id, err := PeerIdentity(tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{other, ca.Cert}}}); err != nil || id.String() != "cn" {
		t.Errorf("verified peer: %q %v", id, err)
	}
	u, err := SPIFFEID("meshext-xds", "node", "default.web-1")
	if err != nil || u.String() != "spiffe://meshext-xds/node/default.web-1" {
		t.Errorf("SPIFFEID: %v %v", u, err)
	}
	for _, segs := range [][]string{{"a/b"}, {""}, {".."}, {"sp ace"}, {"ü"}} {
		if _, err := SPIFFEID("td", segs...); err == nil {
			t.Errorf("segment %q accepted", segs)
		}
	}
	if _, err := SPIFFEID("Upper"); err == nil {
		t.Errorf("upper-case trust domain accepted")
	}
}

func TestSelfSigned(t *testing.T) {
	t.Parallel()
	kp, err := SelfSigned(LeafOptions{DNSNames: []string{"self.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if kp.Cert.IsCA {
		t.Errorf("self-signed leaf is a CA")
	}
	if err := kp.Cert.CheckSignatureFrom(kp.Cert); err == nil {
		t.Errorf("a non-CA self-signed leaf should not pass as its own issuer")
	}
	if err := kp.Cert.CheckSignature(kp.Cert.SignatureAlgorithm, kp.Cert.RawTBSCertificate, kp.Cert.Signature); err != nil {
		t.Errorf("self signature: %v", err)
	}
}

func TestPEMHelpers(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, CAOptions{Subject: pkix.Name{CommonName: "test"}})
	kp, err := ca.Issue(LeafOptions{CommonName: "leaf"})
	if err != nil {
		t.Fatal(err)
	}
	chain := append(append([]byte("junk\n"), kp.CertPEM...), ca.CertPEM...)
	certs, err := ParseCertsPEM(chain)
	if err != nil || len(certs) != 2 || certs[1].Subject.CommonName != "test" {
		t.Fatalf("ParseCertsPEM: %v %v", certs, err)
	}
	if _, err := ParseCertsPEM(kp.KeyPEM); err == nil {
		t.Errorf("a key parsed as certificates")
	}
	if _, _, err := ParseKeyPairPEM(kp.CertPEM, kp.KeyPEM); err != nil {
		t.Errorf("matching pair: %v", err)
	}
	caKey, _ := ca.KeyPEM()
	_, _, err = ParseKeyPairPEM(kp.CertPEM, caKey)
	if err == nil {
		t.Fatalf("mismatched pair accepted")
	}
	if strings.Contains(err.Error(), string(caKey[30:60])) {
		t.Errorf("error quotes the key: %v", err)
	}
}

func TestCAStore(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	dir := filepath.Join(state, "xds-ca")
	o := CAOptions{Subject: pkix.Name{CommonName: "meshext test"}}
	ca, created, err := LoadOrCreateCA(dir, o)
	if err != nil || !created {
		t.Fatalf("create: %v created=%v", err, created)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, CAKeyFile): 0o600, filepath.Join(dir, CACertFile): 0o644} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", path, st.Mode().Perm(), err, want)
		}
	}
	again, created, err := LoadOrCreateCA(dir, o)
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, again != nil && again.Cert.Equal(ca.Cert))
	}
	// A key others can read is refused, not used.
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	if _, _, err := LoadOrCreateCA(dir, o); err == nil {
		t.Errorf("LoadOrCreateCA replaced or used a CA whose key is world-readable")
	}
	// A directory without a CA is not overwritten.
	empty := filepath.Join(state, "empty")
	os.Mkdir(empty, 0o700)
	if _, _, err := LoadOrCreateCA(empty, o); err == nil {
		t.Errorf("CA created into an existing directory")
	}
}

// Processes starting together agree on one CA.
func TestCAStoreRace(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	var wg sync.WaitGroup
	cas := make([]*CA, 4)
	errs := make([]error, 4)
	for i := range cas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cas[i], _, errs[i] = LoadOrCreateCA(dir, CAOptions{Subject: pkix.Name{CommonName: "race"}})
		}()
	}
	wg.Wait()
	for i := range cas {
		if errs[i] != nil {
			t.Fatalf("%d: %v", i, errs[i])
		}
		if !cas[i].Cert.Equal(cas[0].Cert) {
			t.Errorf("%d got another CA", i)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 {
		t.Errorf("temp directories left behind: %v", entries)
	}
}

func TestEnsurePrivateDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v after EnsurePrivateDir", st.Mode().Perm())
	}
	file := filepath.Join(dir, "f")
	if err := WriteFileAtomic(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePrivateDir(file); err == nil {
		t.Errorf("a file accepted as a private directory")
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePrivateDir(link); err == nil {
		t.Errorf("a symbolic link accepted as a private directory")
	}
	if os.Geteuid() == 0 {
		os.Chown(dir, 65534, 65534)
		if err := EnsurePrivateDir(dir); err == nil || !strings.Contains(err.Error(), "belongs to uid") {
			t.Errorf("directory of another user: %v", err)
		}
	}
}
