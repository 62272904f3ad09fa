package model

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"

	"github.com/meshext/meshext/e2e/testpki"
)

// TestCertificateChecksFollowContent: the remembered verdicts are by
// content: a CA or key pair checked before keeps its verdict, and any other
// content (a corrupted CA, another key with the same certificate) is
// checked on its own, every time.
func TestCertificateChecksFollowContent(t *testing.T) {
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.CommonName("client"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(testpki.CommonName("other"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Replace(ca.CertPEM, []byte("\n"), []byte("\n!"), 3)
	for i := 0; i < 2; i++ {
		if err := checkCertificates(ca.CertPEM); err != nil {
			t.Errorf("round %d: good CA refused: %v", i, err)
		}
		if err := checkCertificates(corrupt); err == nil {
			t.Errorf("round %d: corrupted CA accepted", i)
		}
		if err := checkKeyPair(leaf.CertPEM, leaf.KeyPEM); err != nil {
			t.Errorf("round %d: matching key pair refused: %v", i, err)
		}
		if err := checkKeyPair(leaf.CertPEM, other.KeyPEM); err == nil {
			t.Errorf("round %d: certificate with another's key accepted", i)
		}
	}
	for k := range keyPairChecks.m {
		if bytes.Contains([]byte(k), leaf.KeyPEM) {
			t.Errorf("the key pair memo holds a private key")
		}
	}
}

// TestInlineCertificatesAreSharedKeysAreNot: services with the same inline
// CA and client certificate hold one copy of their bytes (10k services
// trusting one CA carry it once), and each service's client key is its
// own copy that no process-wide memo holds.
func TestInlineCertificatesAreSharedKeysAreNot(t *testing.T) {
	noSystemCA(t)
	p := newPKI(t)
	tls := "  tls:\n    enabled: true\n    verification:\n      caCert: {inline: " + p.caB64 + "}\n" +
		"      clientCert: {inline: " + p.certB64 + "}\n      clientKey: {inline: " + p.keyB64 + "}\n"
	file := writeYAML(t, t.TempDir(), "mes.yaml", mes("one", tls)+mes("two", tls))
	w := Build(loadPaths(t, file), Options{})
	one, two := w.Service("default", "one"), w.Service("default", "two")
	if one.Broken != "" || two.Broken != "" {
		t.Fatalf("broken: %q %q", one.Broken, two.Broken)
	}
	if string(one.TLS.CA) != p.caPEM || &one.TLS.CA[0] != &two.TLS.CA[0] {
		t.Errorf("the CA is not one shared copy")
	}
	if &one.TLS.ClientCert[0] != &two.TLS.ClientCert[0] {
		t.Errorf("the client certificate is not one shared copy")
	}
	if !bytes.Equal(one.TLS.ClientKey, two.TLS.ClientKey) || &one.TLS.ClientKey[0] == &two.TLS.ClientKey[0] {
		t.Errorf("the client keys are not equal, separate copies")
	}
	for _, m := range []*contentBytes{&inlineData, &inlineStringData} {
		m.mu.Lock()
		for text, b := range m.m {
			if strings.Contains(text, p.keyB64) || bytes.Contains(b, one.TLS.ClientKey) {
				t.Errorf("an inline data memo holds the private key")
			}
		}
		m.mu.Unlock()
	}
	// The resources too: one text for both CAs.
	a, b := one.Resource.Spec.TLS.Verification.CACert.Inline, two.Resource.Spec.TLS.Verification.CACert.Inline
	if unsafe.StringData(*a) != unsafe.StringData(*b) {
		t.Errorf("the parsed inline CA texts are two copies")
	}
}
