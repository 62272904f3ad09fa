// Package meshca is the mesh certificate authorities and the workload
// identities they issue: Kuma's builtin CA backend (made once per mesh and
// backend, kept in the state directory by controller/pki), the provided
// backend (a CA from the mesh's Secrets), and one certificate per node and
// mesh: every Dataplane of an mTLS mesh and every local ZoneEgress.
//
// It is the identity step between model.Build and rendering: Issue fills
// each model.MeshMTLS with its CA certificate and the nodes' identities,
// reusing an identity until its renewal time (pki.RenewAt), its CA, its URI
// SANs (the Dataplane's tags) or the mesh's certificate lifetime changes.
// Private keys live in memory and in the SDS secrets rendered from them;
// only the builtin CAs' keys are written, 0600 in a 0700 directory.
package meshca

import (
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/controller/resource"
)

// DirName is the directory of the builtin mesh CAs in a state directory:
// <state>/mesh-ca/<mesh>/<backend>/ca.{crt,key}, names escaped by
// names.PathElement.
const DirName = "mesh-ca"

// Kuma's builtin CA and workload certificate settings.
const (
	DefaultRSABits = 2048
	caOrganization = "Kuma"
	caUnit         = "Mesh"
)

// Authority issues and keeps identities across Issue calls (one per
// reload of `meshext run`). Safe for concurrent use.
type Authority struct {
	dir string
	now func() time.Time

	mu     sync.Mutex
	cas    map[string]*pki.CA // by caKey
	issued map[string]*issued // by mesh and node
	next   time.Time
}

type issued struct {
	id       *model.Identity
	ca       string // CA certificate fingerprint
	uris     string
	lifetime time.Duration
}

// New makes an Authority keeping builtin CAs in stateDir/mesh-ca; with
// stateDir "" they live in memory for the life of the process (one-shot
// commands and tests: every start makes new CAs).
func New(stateDir string) *Authority {
	a := &Authority{now: time.Now, cas: map[string]*pki.CA{}, issued: map[string]*issued{}}
	if stateDir != "" {
		a.dir = filepath.Join(stateDir, DirName)
	}
	return a
}

// SetClock replaces time.Now (tests of rotation).
func (a *Authority) SetClock(now func() time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.now = now
}

// CADir is where the builtin CA of a mesh's backend is kept in stateDir.
func CADir(stateDir, mesh, backend string) string {
	return filepath.Join(stateDir, DirName, names.PathElement(mesh), names.PathElement(backend))
}

// Issue fills w.MTLS with CA certificates and identities. A mesh whose CA
// cannot be loaded or made has its services marked not Ready
// (model.World.FailMesh); a node whose identity cannot be issued gets a
// problem and no identity (render then skips its services of that mesh).
// The returned notes are for the log.
func (a *Authority) Issue(w *model.World) (notes []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	keep := map[string]*issued{}
	var next time.Time
	for _, mesh := range slices.Sorted(maps.Keys(w.MTLS)) {
		mt := w.MTLS[mesh]
		if mt.Problem != "" {
			continue
		}
		ca, note, err := a.ca(mt)
		if note != "" {
			notes = append(notes, note)
		}
		if err != nil {
			w.FailMesh(mesh, err.Error())
			continue
		}
		mt.CACert = ca.CertPEM
		sum := sha256.Sum256(ca.Cert.Raw)
		fp := hex.EncodeToString(sum[:])
		for _, n := range w.IdentityNodes(mesh) {
			key := mesh + "\x00" + n.Node
			uris, err := identityURIs(mesh, n)
			if err != nil {
				w.Problems = append(w.Problems, n.Meta.Errorf("name", "mesh %q: no mTLS identity: %v", mesh, err))
				continue
			}
			urisKey := strings.Join(uris, " ")
			prev := a.issued[key]
			if prev == nil || prev.ca != fp || prev.uris != urisKey || prev.lifetime != mt.DPCertLifetime || !now.Before(prev.id.RenewAt) {
				id, err := issue(ca, n, uris, mt.DPCertLifetime, now)
				if err != nil {
					w.Problems = append(w.Problems, n.Meta.Errorf("name", "mesh %q: no mTLS identity: %v", mesh, err))
					continue
				}
				prev = &issued{id: id, ca: fp, uris: urisKey, lifetime: mt.DPCertLifetime}
			}
			keep[key] = prev
			mt.Identities[n.Node] = prev.id
			if next.IsZero() || prev.id.RenewAt.Before(next) {
				next = prev.id.RenewAt
			}
		}
	}
	a.issued, a.next = keep, next
	return notes
}

// NextRenewal is the earliest renewal time of the identities the last
// Issue handed out (zero when there are none): `meshext run` reloads then.
func (a *Authority) NextRenewal() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.next
}

// ca returns the mesh's CA: the provided one from its Secrets, or the
// builtin one, loaded from (or made in) the state directory once.
func (a *Authority) ca(mt *model.MeshMTLS) (*pki.CA, string, error) {
	b := &mt.Backend
	switch b.Type {
	case resource.CAProvided:
		cert, key, err := pki.ParseKeyPairPEM(mt.ProvidedCert, mt.ProvidedKey)
		if err != nil {
			return nil, "", fmt.Errorf("provided CA of backend %q: %v", b.Name, err)
		}
		if !cert.IsCA {
			return nil, "", fmt.Errorf("provided CA of backend %q: basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)", b.Name)
		}
		return &pki.CA{Cert: cert, Key: key, CertPEM: pki.EncodeCertPEM(cert.Raw)}, "", nil
	case resource.CABuiltin:
	default:
		return nil, "", fmt.Errorf("backend %q: type %q is not supported", b.Name, b.Type)
	}
	key := mt.Mesh + "\x00" + b.Name
	if ca := a.cas[key]; ca != nil {
		return ca, "", nil
	}
	opts, err := builtinOptions(mt)
	if err != nil {
		return nil, "", err
	}
	var ca *pki.CA
	var note string
	if a.dir == "" {
		ca, err = pki.NewCA(opts)
		note = fmt.Sprintf("mesh %q: the builtin CA %q lives in memory (no --state-dir): identities change at every start", mt.Mesh, b.Name)
	} else {
		var created bool
		dir := filepath.Join(a.dir, names.PathElement(mt.Mesh), names.PathElement(b.Name))
		ca, created, err = pki.LoadOrCreateCA(dir, opts)
		if created {
			note = fmt.Sprintf("mesh %q: created the builtin CA %q in %s", mt.Mesh, b.Name, dir)
		}
	}
	if err != nil {
		return nil, note, fmt.Errorf("builtin CA %q: %v", b.Name, err)
	}
	a.cas[key] = ca
	return ca, note, nil
}

// builtinOptions is Kuma's builtin root CA: RSA (RSAbits, default 2048),
// CN=<mesh>, O=Kuma, OU=Mesh, URI SAN spiffe://<mesh>, 10 years unless
// caCert.expiration says otherwise.
func builtinOptions(mt *model.MeshMTLS) (pki.CAOptions, error) {
	td, err := pki.SPIFFEID(mt.Mesh)
	if err != nil {
		return pki.CAOptions{}, err
	}
	o := pki.CAOptions{
		Subject: pkix.Name{CommonName: mt.Mesh, Organization: []string{caOrganization}, OrganizationalUnit: []string{caUnit}},
		URIs:    []*url.URL{td},
		Key:     pki.KeySpec{RSABits: DefaultRSABits},
	}
	if c := mt.Backend.Conf; c != nil && c.CACert != nil {
		if c.CACert.RSABits != nil {
			o.Key.RSABits = int(*c.CACert.RSABits)
		}
		if c.CACert.Expiration != "" {
			d, err := resource.ParseDuration(c.CACert.Expiration)
			if err != nil || d <= 0 {
				return o, fmt.Errorf("caCert.expiration %q: not a positive duration", c.CACert.Expiration)
			}
			o.Validity.Lifetime = d
		}
	}
	return o, nil
}

// identityURIs is Kuma's workload certificate's URI SANs: the node's
// SPIFFE ID first (Envoy reports the first URI SAN as the peer's), then
// kuma://<tag>/<value> for every tag value, tags sorted. meshext gives a
// node one SPIFFE ID (see model.World.IdentityNodes); Kuma gives one per
// kuma.io/service of its inbounds.
func identityURIs(mesh string, n model.NodeIdentity) ([]string, error) {
	id, err := pki.SPIFFEID(mesh, n.Service)
	if err != nil {
		return nil, err
	}
	uris := []string{id.String()}
	for _, k := range slices.Sorted(maps.Keys(n.Tags)) {
		for _, v := range n.Tags[k] {
			u := "kuma://" + k + "/" + v
			if _, err := url.Parse(u); err != nil {
				return nil, fmt.Errorf("tag %q=%q: invalid Kuma URI: %v", k, v, err)
			}
			uris = append(uris, u)
		}
	}
	return uris, nil
}

// issue signs one workload certificate: Kuma's (RSA 2048, empty subject,
// server and client auth, NotBefore 10 s back, the mesh's lifetime).
func issue(ca *pki.CA, n model.NodeIdentity, uris []string, lifetime time.Duration, now time.Time) (*model.Identity, error) {
	us := make([]*url.URL, len(uris))
	for i, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		us[i] = u
	}
	kp, err := ca.Issue(pki.LeafOptions{
		URIs:     us,
		Key:      pki.KeySpec{RSABits: DefaultRSABits},
		Validity: pki.Validity{Now: now, Lifetime: lifetime},
	})
	if err != nil {
		return nil, err
	}
	return &model.Identity{
		Node: n.Node, SPIFFEID: uris[0], URIs: slices.Clone(uris),
		CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM,
		Serial:    kp.Cert.SerialNumber.Text(16),
		NotBefore: kp.Cert.NotBefore, NotAfter: kp.Cert.NotAfter,
		RenewAt: pki.RenewAt(kp.Cert),
	}, nil
}

// Describe lists what Issue would hand out, without issuing or writing
// anything (`meshext inspect`): each mTLS mesh's CA as it is now (a
// builtin CA from stateDir when it exists there, a provided CA from its
// Secrets; absent otherwise) and each node's SPIFFE ID and URI SANs.
// Serials and validity of the nodes' certificates are the running
// `meshext run`'s (its status); they are left empty here.
func Describe(stateDir string, w *model.World) (views []model.IdentityView, notes []string) {
	for _, mesh := range slices.Sorted(maps.Keys(w.MTLS)) {
		mt := w.MTLS[mesh]
		caPEM := mt.ProvidedCert
		if mt.Backend.Type == resource.CABuiltin {
			caPEM = nil
			if stateDir != "" {
				caPEM, _ = os.ReadFile(filepath.Join(CADir(stateDir, mesh, mt.Backend.Name), pki.CACertFile))
			}
		}
		ca, ok := mt.CAView(caPEM)
		if !ok {
			notes = append(notes, fmt.Sprintf("mesh %q: CA %q is not created yet (meshext run makes it in --state-dir)", mesh, mt.Backend.Name))
		}
		if mt.Problem != "" {
			notes = append(notes, fmt.Sprintf("mesh %q: %s", mesh, mt.Problem))
		}
		views = append(views, ca)
		for _, n := range w.IdentityNodes(mesh) {
			uris, err := identityURIs(mesh, n)
			if err != nil {
				notes = append(notes, fmt.Sprintf("mesh %q node %q: no mTLS identity: %v", mesh, n.Node, err))
				continue
			}
			views = append(views, model.IdentityView{Mesh: mesh, Node: n.Node, SPIFFEID: uris[0], URIs: uris})
		}
	}
	return views, notes
}
