package model

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/meshext/meshext/controller/inputfile"
	capki "github.com/meshext/meshext/controller/pki" // named so: model's tests declare a type pki
	"github.com/meshext/meshext/controller/resource"
)

// EnvSystemCAPath is kuma-dp's override of the system CA bundle path.
const EnvSystemCAPath = "KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH"

// SystemCABundles are probed in order (kuma-dp's list) when neither
// Options.SystemCAPath nor $KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH is set.
var SystemCABundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian/Ubuntu/Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",                  // RHEL/Fedora
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS/RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS
}

// systemCA is the resolved OS bundle: a path, or why there is none.
type systemCA struct {
	path string
	err  string // set when an explicitly configured path is unusable
}

func resolveSystemCA(explicit string) systemCA {
	check := func(p, origin string) systemCA {
		st, err := os.Stat(p)
		switch {
		case err != nil:
			return systemCA{err: fmt.Sprintf("system CA bundle %q (%s) is unusable: %v", p, origin, err)}
		case !st.Mode().IsRegular():
			// Envoy reads the bundle; a FIFO or device there would stall or flood it.
			return systemCA{err: fmt.Sprintf("system CA bundle %q (%s) is %s, not a PEM file", p, origin, inputfile.Describe(st.Mode()))}
		}
		return systemCA{path: p}
	}
	if explicit != "" {
		return check(explicit, "configured system CA path")
	}
	if v := os.Getenv(EnvSystemCAPath); v != "" {
		return check(v, "$"+EnvSystemCAPath)
	}
	for _, p := range SystemCABundles {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return systemCA{path: p}
		}
	}
	return systemCA{}
}

// TLS condition reasons.
const (
	ReasonSecretNotFound = "SecretNotFound"
	ReasonInvalidData    = "InvalidData"
	ReasonNoTrustAnchors = "NoTrustAnchors"
)

// resolveTLS loads every material the service's tls block references and
// applies meshext's fail-closed rule (F1): a mode that verifies the chain
// (Secured, SkipSAN) with neither a caCert nor a system bundle is an error,
// never a silent "accept anything".
func resolveTLS(m *resource.MeshExternalService, valid, all *resource.Set, sys systemCA) (*TLS, string, *resource.FieldError) {
	in := m.Spec.TLS
	t := &TLS{Mode: resource.ModeSecured, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto, AllowRenegotiation: in.AllowRenegotiation}
	if in.Version != nil {
		if in.Version.Min != "" {
			t.MinVersion = in.Version.Min
		}
		if in.Version.Max != "" {
			t.MaxVersion = in.Version.Max
		}
	}
	v := in.Verification
	if v == nil {
		v = &resource.Verification{}
	}
	if v.Mode != "" {
		t.Mode = v.Mode
	}
	t.ServerName = v.ServerName
	t.SANs = append(t.SANs, v.SubjectAltNames...)
	for i := range t.SANs {
		if t.SANs[i].Type == "" {
			t.SANs[i].Type = resource.SANExact
		}
	}

	const base = "spec.tls.verification."
	if v.CACert != nil {
		data, src, reason, fe := readSource(&m.Meta, base+"caCert", v.CACert, valid, all)
		if fe != nil {
			return nil, reason, fe
		}
		if err := checkCertificates(data); err != nil {
			return nil, ReasonInvalidData, m.Errorf(base+"caCert", "could not load caCert: %v", err)
		}
		t.CA, t.CASource = data, src
	}
	if (v.ClientCert == nil) != (v.ClientKey == nil) {
		missing := "clientKey"
		if v.ClientCert == nil {
			missing = "clientCert"
		}
		return nil, ReasonInvalidData, m.Errorf(base+missing, "must be set when %s is set: a client certificate needs its key", otherOf(missing))
	}
	if v.ClientCert != nil {
		cert, certSrc, reason, fe := readSource(&m.Meta, base+"clientCert", v.ClientCert, valid, all)
		if fe != nil {
			return nil, reason, fe
		}
		key, _, reason, fe := readSource(&m.Meta, base+"clientKey", v.ClientKey, valid, all)
		if fe != nil {
			return nil, reason, fe
		}
		if err := checkKeyPair(cert, key); err != nil {
			return nil, ReasonInvalidData, m.Errorf(base+"clientCert", "clientCert and clientKey are not a usable PEM certificate and matching key: %v", err)
		}
		t.ClientCert, t.ClientKey, t.ClientCertSource = cert, key, certSrc
	}

	if t.CA == nil && t.Mode != resource.ModeSkipAll {
		if sys.path != "" {
			t.SystemCAPath, t.CASource = sys.path, "system:"+sys.path
		} else if t.Mode == resource.ModeSecured || t.Mode == resource.ModeSkipSAN {
			why := sys.err
			if why == "" {
				why = "no OS CA bundle found (looked for " + strings.Join(SystemCABundles, ", ") + ") and $" + EnvSystemCAPath + " is not set"
			}
			return nil, ReasonNoTrustAnchors, m.Errorf(base+"mode",
				"mode %s needs trust anchors but the service has no caCert and %s; failing closed: the service is not rendered rather than accepting any server certificate (set caCert, or point $%s at a PEM bundle)",
				t.Mode, why, EnvSystemCAPath)
		}
	}
	return t, "", nil
}

func otherOf(field string) string {
	if field == "clientKey" {
		return "clientCert"
	}
	return "clientKey"
}

// readSource returns a data source's bytes and a printable origin ("inline"
// or "secret:<name>"). It never puts the data itself into a message.
func readSource(m *resource.Meta, field string, ds *resource.DataSource, valid, all *resource.Set) ([]byte, string, string, *resource.FieldError) {
	what := field[strings.LastIndexByte(field, '.')+1:]
	switch {
	case ds.Inline != nil:
		b, err := inlineData.decode(*ds.Inline, what == "clientKey", func(s string) ([]byte, error) {
			return base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		})
		if err != nil {
			return nil, "", ReasonInvalidData, m.Errorf(field+".inline", "could not load %s: not valid base64: %v", what, err)
		}
		return b, "inline", "", nil
	case ds.InlineString != nil:
		b, _ := inlineStringData.decode(*ds.InlineString, what == "clientKey", func(s string) ([]byte, error) { return []byte(s), nil })
		return b, "inline", "", nil
	case ds.Secret != nil:
		name := *ds.Secret
		if sec := valid.Secret(m.Mesh, name); sec != nil {
			return sec.Data, "secret:" + name, "", nil
		}
		if sec := all.Secret(m.Mesh, name); sec != nil {
			return nil, "", ReasonSecretNotFound, m.Errorf(field+".secret", "could not load %s: Secret %s/%s (%s) is invalid", what, m.Mesh, name, sec.Source.Where())
		}
		return nil, "", ReasonSecretNotFound, m.Errorf(field+".secret", "could not load %s: Secret %q not found in mesh %q", what, name, m.Mesh)
	}
	return nil, "", ReasonInvalidData, m.Errorf(field, "could not load %s: one of inline, inlineString or secret must be set", what)
}

// checkCertificates requires at least one PEM certificate and that every
// CERTIFICATE block parses. Services often trust the same CA, and every
// build checks every service again: the verdict is remembered by content.
func checkCertificates(data []byte) error {
	return certChecks.check(data, func() error {
		_, err := capki.ParseCertsPEM(data)
		return err
	})
}

// checkKeyPair requires a usable PEM certificate and matching key,
// remembered by content like checkCertificates.
func checkKeyPair(cert, key []byte) error {
	both := make([]byte, 0, len(cert)+len(key)+1)
	both = append(append(append(both, cert...), 0), key...)
	sum := sha256.Sum256(both) // a digest, so the memo holds no private key
	return keyPairChecks.check(sum[:], func() error {
		_, err := tls.X509KeyPair(cert, key)
		return err
	})
}

var certChecks, keyPairChecks contentChecks

// contentChecks remembers a pure check's verdict by its input's content.
type contentChecks struct{ contentMemo[error] }

func (c *contentChecks) check(data []byte, run func() error) error {
	if err, ok := c.getBytes(data); ok {
		return err
	}
	err := run()
	c.put(string(data), err)
	return err
}

// inlineData and inlineStringData hold the bytes of inline data by their
// text, so services with the same inline CA share one read-only copy (as
// services naming one Secret share its Data).
var inlineData, inlineStringData contentBytes

// contentBytes remembers what decode made of a text. Errors are not
// remembered, nor private keys (secret: decoded every time, held by their
// service only).
type contentBytes struct{ contentMemo[[]byte] }

func (c *contentBytes) decode(text string, secret bool, decode func(string) ([]byte, error)) ([]byte, error) {
	if secret {
		return decode(text)
	}
	if b, ok := c.get(text); ok {
		return b, nil
	}
	b, err := decode(text)
	if err != nil {
		return nil, err
	}
	// Two services with the same text may both have missed: keep the
	// first one's copy, so they still share it.
	return c.put(text, b), nil
}

const contentChecksMax = 32 << 20

// contentMemo remembers a value by its input's content, up to
// contentChecksMax bytes of inputs (then it starts over). Safe for
// concurrent use.
type contentMemo[V any] struct {
	mu   sync.Mutex
	m    map[string]V
	size int
}

func (c *contentMemo[V]) get(k string) (V, bool) {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	return v, ok
}

// getBytes is get for a key held as bytes, without copying it.
func (c *contentMemo[V]) getBytes(k []byte) (V, bool) {
	c.mu.Lock()
	v, ok := c.m[string(k)]
	c.mu.Unlock()
	return v, ok
}

// put remembers v for k unless a value is there already, and returns the
// value it holds for k.
func (c *contentMemo[V]) put(k string, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if held, ok := c.m[k]; ok {
		return held
	}
	if c.m == nil || c.size+len(k) > contentChecksMax {
		c.m, c.size = map[string]V{}, 0
	}
	c.m[k] = v
	c.size += len(k)
	return v
}

// tlsSummary is the TLSReady message: mode, versions and trust source.
func tlsSummary(t *TLS) string {
	ca := t.CASource
	if ca == "" {
		ca = "none"
	}
	s := fmt.Sprintf("mode %s, versions %s..%s, CA %s", t.Mode, t.MinVersion, t.MaxVersion, ca)
	if t.ClientCert != nil {
		s += ", client certificate " + t.ClientCertSource
	}
	return s
}
