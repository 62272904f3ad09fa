package model

import (
	"slices"
	"time"

	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/parallel"
	"github.com/meshext/meshext/controller/resource"
)

// Memo remembers, from one Build to the next, what Build derives from each
// MeshExternalService by the service's identity (parsed resources are
// never modified, and a reload hands Build the same objects for unchanged
// files): its keys, port, endpoints, cluster name and SNI; its hostname
// conditions while hostname.Generate gives it the same *Result; and its
// resolved TLS while the Secrets it names and the system CA are the ones
// it was resolved with. A reload then derives anew only for services
// parsed anew. Services are still new structs at every Build (later stages
// write their status); what they share with the last Build's (endpoints,
// addresses, TLS) is read-only. It holds the services of the last Build
// only. Not safe for concurrent use; a nil *Memo remembers nothing.
type Memo struct {
	stamp    uint64 // counts Builds; an entry holds the stamp of the last Build that used it
	services map[*resource.MeshExternalService]*derived
}

// derived is what Build derives from one service.
type derived struct {
	stamp   uint64
	key     string    // hostname.Key: the IPAM and hostname key
	owner   string    // Meta.Key: the claimant in names.Claims
	created time.Time // creation time, zero when none
	port    uint32
	// endpoints, cluster and sni are the Service fields of the same name.
	endpoints    []Endpoint
	cluster, sni string

	// The hostname outcome of gen.
	gen         *hostname.Result
	addresses   []Address
	genConds    []Condition
	genProblems []*resource.FieldError

	// The TLS outcome (tls.enabled only), valid while tlsIn is current.
	tlsDone    bool
	tlsIn      tlsInputs
	tls        *TLS
	tlsReason  string
	tlsErr     *resource.FieldError
	tlsSummary string
}

// tlsInputs is what resolveTLS read besides the service itself: the system
// CA and, for each data source naming a Secret, the Secret of that name in
// the valid set and in the whole set (compared by identity).
type tlsInputs struct {
	sys     systemCA
	secrets [3][2]*resource.Secret // caCert, clientCert, clientKey
}

// begin starts a Build: it returns the Build's stamp.
func (m *Memo) begin() uint64 {
	if m == nil {
		return 0
	}
	if m.services == nil {
		m.services = map[*resource.MeshExternalService]*derived{}
	}
	m.stamp++
	return m.stamp
}

// end forgets the services the Build with stamp did not use.
func (m *Memo) end(stamp uint64) {
	if m == nil {
		return
	}
	for s, d := range m.services {
		if d.stamp != stamp {
			delete(m.services, s)
		}
	}
}

// derive returns what Build derives from s alone, remembered or made now.
func (m *Memo) derive(s *resource.MeshExternalService, stamp uint64) *derived {
	if m != nil {
		if d := m.services[s]; d != nil {
			d.stamp = stamp
			return d
		}
	}
	d := newDerived(s, stamp)
	if m != nil {
		m.services[s] = d
	}
	return d
}

// deriveAll is derive of each service, in order: those not remembered are
// derived on every core (each from its service alone), then remembered in
// order, so a service listed twice gets one derived value as from derive.
func (m *Memo) deriveAll(mess []*resource.MeshExternalService, stamp uint64) []*derived {
	ds := make([]*derived, len(mess))
	if m != nil {
		for i, s := range mess {
			if d := m.services[s]; d != nil {
				d.stamp = stamp
				ds[i] = d
			}
		}
	}
	parallel.ForEach(len(mess), func(i int) {
		if ds[i] == nil {
			ds[i] = newDerived(mess[i], stamp)
		}
	})
	if m != nil {
		for i, s := range mess {
			if d := m.services[s]; d != nil && d.stamp == stamp {
				ds[i] = d // the first of a service listed twice
				continue
			}
			m.services[s] = ds[i]
		}
	}
	return ds
}

func newDerived(s *resource.MeshExternalService, stamp uint64) *derived {
	d := &derived{stamp: stamp, key: hostname.Key(&s.Meta), owner: s.Key(), created: hostname.CreationTime(&s.Meta),
		port: matchPort(s.Spec.Match.Port)}
	d.endpoints = slices.Clip(endpoints(s))
	d.cluster = names.MeshExternalServiceCluster(&s.Meta, d.port)
	d.sni = names.MeshExternalServiceSNI(&s.Meta, d.port)
	return d
}

// hostnames fills the hostname outcome of r (s's hostname.Result), unless
// it is r's already.
func (d *derived) hostnames(s *resource.MeshExternalService, r *hostname.Result) {
	if d.gen == r && r != nil {
		return
	}
	d.gen, d.addresses, d.genConds, d.genProblems = r, nil, nil, nil
	for _, st := range r.Statuses {
		status := StatusFalse
		if st.Generated {
			status = StatusTrue
			d.addresses = append(d.addresses, Address{Hostname: st.Hostname, Generator: st.Generator})
		}
		d.genConds = append(d.genConds, Condition{Type: ConditionGenerated, Status: status, Reason: st.Reason, Message: st.Message, Generator: st.Generator})
		if !st.Generated {
			d.genProblems = append(d.genProblems, s.Errorf("name", "HostnameGenerator %s: %s", st.Generator, st.Message))
		}
	}
	d.addresses = slices.Clip(d.addresses)
}

// resolveTLS is resolveTLS(s, valid, all, sys) and tlsSummary of its
// result, remembered while its inputs are the same.
func (d *derived) resolveTLS(s *resource.MeshExternalService, valid, all *resource.Set, sys systemCA, secrets *secretIndex) (*TLS, string, *resource.FieldError, string) {
	in := tlsInputs{sys: sys}
	if v := s.Spec.TLS.Verification; v != nil {
		for i, ds := range []*resource.DataSource{v.CACert, v.ClientCert, v.ClientKey} {
			if ds != nil && ds.Secret != nil {
				in.secrets[i] = secrets.lookup(s.Mesh, *ds.Secret, valid, all)
			}
		}
	}
	if d.tlsDone && d.tlsIn == in {
		return d.tls, d.tlsReason, d.tlsErr, d.tlsSummary
	}
	d.tls, d.tlsReason, d.tlsErr = resolveTLS(s, valid, all, sys)
	d.tlsSummary = ""
	if d.tlsErr == nil {
		d.tlsSummary = tlsSummary(d.tls)
	}
	d.tlsDone, d.tlsIn = true, in
	return d.tls, d.tlsReason, d.tlsErr, d.tlsSummary
}

// secretIndex finds Secrets by mesh and name in the valid and the whole
// set as Set.Secret does (the first of a name), indexed on first use.
type secretIndex struct {
	valid, all map[[2]string]*resource.Secret
}

// index builds the index now (lookup would on first use), so that
// lookups on several goroutines only read it.
func (x *secretIndex) index(valid, all *resource.Set) {
	if x.valid == nil {
		x.valid, x.all = indexSecrets(valid), indexSecrets(all)
	}
}

func (x *secretIndex) lookup(mesh, name string, valid, all *resource.Set) [2]*resource.Secret {
	x.index(valid, all)
	k := [2]string{mesh, name}
	return [2]*resource.Secret{x.valid[k], x.all[k]}
}

func indexSecrets(set *resource.Set) map[[2]string]*resource.Secret {
	out := make(map[[2]string]*resource.Secret, len(set.Secrets))
	for _, s := range set.Secrets {
		k := [2]string{s.Mesh, s.Name}
		if _, dup := out[k]; !dup {
			out[k] = s
		}
	}
	return out
}
