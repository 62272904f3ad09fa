package model

import (
	"bytes"
	"testing"

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
	for k := range keyPairChecks.verdict {
		if bytes.Contains([]byte(k), leaf.KeyPEM) {
			t.Errorf("the key pair memo holds a private key")
		}
	}
}
