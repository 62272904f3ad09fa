package validate

import (
	"fmt"

	"github.com/meshext/meshext/controller/resource"
)

// Bounds meshext puts on CA settings that Kuma takes as they come: a key
// size Go's crypto and pki accept and that cannot stall the control plane
// for minutes, and certificate lifetimes that do not make it re-issue every
// workload certificate in a tight loop.
const (
	maxRSABits      = 4096
	minDPCertExpiry = "10s"
)

// mesh checks spec.mtls with Kuma's rules (mesh_validator.go validateMtls,
// validateZoneEgress, the builtin and provided CA managers' ValidateBackend)
// and messages.
func mesh(v *violations, r *resource.Mesh) {
	m := r.MTLS
	if r.Routing != nil && r.Routing.ZoneEgress && (m == nil || m.EnabledBackend == "") {
		v.add("mtls", "has to be set when zoneEgress enabled")
	}
	if m == nil {
		return
	}
	if len(m.Backends) > 1 {
		v.add("mtls.backends", "cannot have more than 1 backends")
	}
	used := map[string]bool{}
	for i, b := range m.Backends {
		at := fmt.Sprintf("mtls.backends[%d]", i)
		if used[b.Name] {
			v.add(at+".name", "%q name is already used for another backend", b.Name)
		}
		used[b.Name] = true
		if b.DPCert != nil && b.DPCert.Rotation != nil {
			if d, err := resource.ParseDuration(b.DPCert.Rotation.Expiration); err != nil {
				v.add(at+".dpCert.rotation.expiration", "has to be a valid format")
			} else if min, _ := resource.ParseDuration(minDPCertExpiry); d < min {
				v.add(at+".dpCert.rotation.expiration", "must be at least %s", minDPCertExpiry)
			}
		}
		caBackend(v, r.Name, at, &b)
	}
	if m.EnabledBackend != "" && !used[m.EnabledBackend] {
		v.add("mtls.enabledBackend", "has to be set to one of the backends in the mesh")
	}
}

// caBackend checks one backend's type and conf.
func caBackend(v *violations, mesh, at string, b *resource.CABackend) {
	conf := b.Conf
	if conf == nil {
		conf = &resource.CABackendConf{}
	}
	switch b.Type {
	case resource.CABuiltin:
		// Kuma keeps the CA in Secrets "<mesh>.ca-builtin-cert-<backend>".
		secretName := mesh + ".ca-builtin-cert-" + b.Name
		if len(secretName) > 255 {
			v.add(at+".name", "Backend name is too long. Max length: 255")
		}
		if !isDNSName(secretName) || len(dns1123Subdomain(b.Name)) > 0 {
			v.add(at+".name", "%q name must be valid dns name", b.Name)
		}
		if conf.Cert != nil || conf.Key != nil {
			v.add(at+".conf", "could not convert backend config: cert and key are for type %q", resource.CAProvided)
		}
		if c := conf.CACert; c != nil {
			if c.RSABits != nil && (*c.RSABits < 2048 || *c.RSABits > maxRSABits) {
				v.add(at+".conf.caCert.RSAbits", "must be between 2048 and %d", maxRSABits)
			}
			if c.Expiration != "" {
				if d, err := resource.ParseDuration(c.Expiration); err != nil {
					v.add(at+".conf.caCert.expiration", "has to be a valid format")
				} else if d <= 0 {
					v.add(at+".conf.caCert.expiration", "must be positive")
				}
			}
		}
	case resource.CAProvided:
		if conf.CACert != nil {
			v.add(at+".conf", "could not convert backend config: caCert is for type %q", resource.CABuiltin)
		}
		if conf.Cert == nil {
			v.add(at+".conf.cert", "has to be defined")
		} else {
			dataSource(v, at+".conf.cert", conf.Cert)
		}
		if conf.Key == nil {
			v.add(at+".conf.key", "has to be defined")
		} else {
			dataSource(v, at+".conf.key", conf.Key)
		}
	default:
		v.add(at+".type", "could not find installed plugin for this type")
	}
}
