package meshca_test

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/meshca"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/controller/resource"
)

const mtlsMesh = `type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
      dpCert:
        rotation:
          expiration: 2h
---
type: MeshExternalService
name: httpbin
mesh: default
spec:
  match:
    port: 80
    protocol: http
  endpoints:
    - address: 127.0.0.12
      port: 80
---
type: ZoneEgress
name: egress-1
networking:
  address: 127.0.0.2
  port: 10002
`

func dataplane(tags string) string {
	return `---
type: Dataplane
name: web-1
mesh: default
networking:
  address: 127.0.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: web
` + tags
}

func build(t *testing.T, docs string) *model.World {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(docs), 0o600))
	set, errs, err := resource.Load([]string{dir}, resource.Options{})
	require.NoError(t, err)
	require.Empty(t, errs)
	return model.Build(set, model.Options{})
}

func parse(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	cs, err := pki.ParseCertsPEM(pemData)
	require.NoError(t, err)
	return cs[0]
}

// Kuma's builtin CA and workload certificates, kept in the state directory.
func TestBuiltinCAAndIdentitiesAreKumas(t *testing.T) {
	state := t.TempDir()
	a := meshca.New(state)
	w := build(t, mtlsMesh+dataplane("        version: v1\n"))
	notes := a.Issue(w)
	assert.Contains(t, strings.Join(notes, "\n"), `created the builtin CA "ca-1"`)
	mt := w.MTLS["default"]
	require.NotNil(t, mt)
	require.Empty(t, mt.Problem)

	ca := parse(t, mt.CACert)
	assert.True(t, ca.IsCA)
	assert.Equal(t, "default", ca.Subject.CommonName)
	assert.Equal(t, []string{"Kuma"}, ca.Subject.Organization)
	assert.Equal(t, []string{"Mesh"}, ca.Subject.OrganizationalUnit)
	require.Len(t, ca.URIs, 1)
	assert.Equal(t, "spiffe://default", ca.URIs[0].String())
	assert.Equal(t, 2048, ca.PublicKey.(*rsa.PublicKey).N.BitLen())
	assert.InDelta(t, (10 * 365 * 24 * time.Hour).Hours(), ca.NotAfter.Sub(ca.NotBefore).Hours(), 1)

	dir := meshca.CADir(state, "default", "ca-1")
	st, err := os.Stat(filepath.Join(dir, pki.CAKeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	web := mt.Identities["default.web-1"]
	require.NotNil(t, web)
	leaf := parse(t, web.CertPEM)
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	assert.Equal(t, []string{"spiffe://default/web", "kuma://kuma.io/service/web", "kuma://version/v1"}, uris)
	assert.Equal(t, "spiffe://default/web", web.SPIFFEID)
	assert.Empty(t, leaf.Subject.String())
	assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage)
	assert.Equal(t, 2048, leaf.PublicKey.(*rsa.PublicKey).N.BitLen())
	assert.Equal(t, 2*time.Hour+10*time.Second, leaf.NotAfter.Sub(leaf.NotBefore), "dpCert.rotation.expiration plus Kuma's 10 s skew")
	_, err = leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	_, _, err = pki.ParseKeyPairPEM(web.CertPEM, web.KeyPEM)
	require.NoError(t, err)
	assert.Equal(t, pki.RenewAt(leaf), web.RenewAt)
	assert.NotContains(t, web.String(), "PRIVATE", "an identity's string never shows its key")

	egress := mt.Identities[".egress-1"]
	require.NotNil(t, egress)
	assert.Equal(t, "spiffe://default/zone-egress", egress.SPIFFEID)
	assert.Equal(t, web.RenewAt, a.NextRenewal(), "both issued now with the same lifetime; the web one first")

	// A new process finds the same CA.
	w2 := build(t, mtlsMesh+dataplane(""))
	assert.Empty(t, meshca.New(state).Issue(w2))
	assert.Equal(t, mt.CACert, w2.MTLS["default"].CACert)
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// An identity is kept until its renewal time, and re-issued at once when
// the Dataplane's tags or the mesh's CA change.
func TestRotation(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := meshca.New(t.TempDir())
	a.SetClock(func() time.Time { return now })
	serial := func(w *model.World) string {
		a.Issue(w)
		id := w.MTLS["default"].Identities["default.web-1"]
		require.NotNil(t, id)
		return id.Serial
	}
	first := serial(build(t, mtlsMesh+dataplane("")))
	assert.Equal(t, first, serial(build(t, mtlsMesh+dataplane(""))), "unchanged: kept")

	now = now.Add(time.Hour) // before two thirds of 2h10s
	assert.Equal(t, first, serial(build(t, mtlsMesh+dataplane(""))))
	now = now.Add(30 * time.Minute) // past it
	renewed := serial(build(t, mtlsMesh+dataplane("")))
	assert.NotEqual(t, first, renewed, "renewed after pki.RenewAt")

	tagged := serial(build(t, mtlsMesh+dataplane("        version: v2\n")))
	assert.NotEqual(t, renewed, tagged, "new tags: new certificate")

	other := strings.Replace(mtlsMesh, "enabledBackend: ca-1\n  backends:\n    - name: ca-1", "enabledBackend: ca-2\n  backends:\n    - name: ca-2", 1)
	w := build(t, other+dataplane("        version: v2\n"))
	assert.NotEqual(t, tagged, serial(w), "new CA: new certificate")
	assert.Equal(t, "spiffe://default", parse(t, w.MTLS["default"].CACert).URIs[0].String())
}

// A provided CA comes from the mesh's Secrets; a missing Secret leaves the
// mesh's services not Ready, and nothing of them is rendered.
func TestProvidedCA(t *testing.T) {
	ca, err := pki.NewCA(pki.CAOptions{})
	require.NoError(t, err)
	keyPEM, err := ca.KeyPEM()
	require.NoError(t, err)
	provided := strings.Replace(mtlsMesh, "type: builtin\n      dpCert:", "type: provided\n      conf:\n        cert:\n          secret: ca-cert\n        key:\n          secret: ca-key\n      dpCert:", 1)
	secrets := "---\ntype: Secret\nname: ca-cert\nmesh: default\ndata: " + base64.StdEncoding.EncodeToString(ca.CertPEM) +
		"\n---\ntype: Secret\nname: ca-key\nmesh: default\ndata: " + base64.StdEncoding.EncodeToString(keyPEM) + "\n"

	w := build(t, provided+secrets+dataplane(""))
	meshca.New("").Issue(w)
	assert.Equal(t, ca.CertPEM, w.MTLS["default"].CACert)
	leaf := parse(t, w.MTLS["default"].Identities["default.web-1"].CertPEM)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)
	require.Equal(t, "", w.Service("default", "httpbin").Broken)

	w = build(t, provided+dataplane(""))
	meshca.New("").Issue(w)
	s := w.Service("default", "httpbin")
	assert.Contains(t, s.Broken, `Secret "ca-cert" not found in mesh "default"`)
	assert.Empty(t, w.MTLS["default"].Identities)
}

// Without a ZoneEgress in the zone an mTLS mesh's services are not Ready.
func TestNoZoneEgressFailsClosed(t *testing.T) {
	w := build(t, strings.Replace(mtlsMesh, "type: ZoneEgress", "type: ZoneEgress\nzone: elsewhere", 1))
	s := w.Service("default", "httpbin")
	assert.Contains(t, s.Broken, `zone "default" has none`)
	var found bool
	for _, c := range s.Conditions {
		if c.Type == model.ConditionZoneEgress {
			found = true
			assert.Equal(t, model.StatusFalse, c.Status)
			assert.Equal(t, model.ReasonNoZoneEgress, c.Reason)
		}
		if c.Type == model.ConditionReady {
			assert.Equal(t, model.StatusFalse, c.Status)
		}
	}
	assert.True(t, found)
	assert.Empty(t, w.ZoneEgresses, "an egress of another zone is not used")
}
