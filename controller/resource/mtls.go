package resource

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// MeshMTLS is a Mesh's spec.mtls (Kuma's Mesh.Mtls): the certificate
// authority backends and the one that is enabled. With an enabled backend,
// workloads get identities from it and MeshExternalService traffic leaves
// through the zone's ZoneEgresses.
type MeshMTLS struct {
	EnabledBackend string      `yaml:"enabledBackend,omitempty" json:"enabledBackend,omitempty"`
	Backends       []CABackend `yaml:"backends,omitempty" json:"backends,omitempty"`
	SkipValidation bool        `yaml:"skipValidation,omitempty" json:"skipValidation,omitempty"`
}

// CA backend types (Kuma ships these two).
const (
	CABuiltin  = "builtin"
	CAProvided = "provided"
)

// CABackend is Kuma's CertificateAuthorityBackend.
type CABackend struct {
	Name      string         `yaml:"name" json:"name"`
	Type      string         `yaml:"type" json:"type"`
	DPCert    *DPCert        `yaml:"dpCert,omitempty" json:"dpCert,omitempty"`
	Conf      *CABackendConf `yaml:"conf,omitempty" json:"conf,omitempty"`
	Mode      string         `yaml:"mode,omitempty" json:"mode,omitempty"`
	RootChain *RootChain     `yaml:"rootChain,omitempty" json:"rootChain,omitempty"`
}

// DPCert is the workload certificate settings.
type DPCert struct {
	Rotation       *DPCertRotation `yaml:"rotation,omitempty" json:"rotation,omitempty"`
	RequestTimeout string          `yaml:"requestTimeout,omitempty" json:"requestTimeout,omitempty"`
}

// DPCertRotation.Expiration is the lifetime of a workload certificate in
// Kuma's duration form ("24h", "1d", "2w").
type DPCertRotation struct {
	Expiration string `yaml:"expiration,omitempty" json:"expiration,omitempty"`
}

// RootChain is accepted for compatibility; meshext's CAs are local.
type RootChain struct {
	RequestTimeout string `yaml:"requestTimeout,omitempty" json:"requestTimeout,omitempty"`
}

// CABackendConf holds the typed conf of either backend type: caCert for
// builtin (Kuma's BuiltinCertificateAuthorityConfig), cert and key for
// provided (ProvidedCertificateAuthorityConfig).
type CABackendConf struct {
	CACert *BuiltinCACert `yaml:"caCert,omitempty" json:"caCert,omitempty"`
	Cert   *DataSource    `yaml:"cert,omitempty" json:"cert,omitempty"`
	Key    *DataSource    `yaml:"key,omitempty" json:"key,omitempty"`
}

// BuiltinCACert is the builtin CA's own certificate: RSA key size (default
// 2048) and lifetime (default 10 years).
type BuiltinCACert struct {
	RSABits    *uint32 `yaml:"RSAbits,omitempty" json:"RSAbits,omitempty"`
	Expiration string  `yaml:"expiration,omitempty" json:"expiration,omitempty"`
}

// EnabledMTLSBackend is the mesh's enabled CA backend, or nil when mTLS is off.
func (m *Mesh) EnabledMTLSBackend() *CABackend {
	if m == nil || m.MTLS == nil || m.MTLS.EnabledBackend == "" {
		return nil
	}
	for i := range m.MTLS.Backends {
		if m.MTLS.Backends[i].Name == m.MTLS.EnabledBackend {
			return &m.MTLS.Backends[i]
		}
	}
	return nil
}

// kumaDurationRE is Kuma's duration form (core_mesh.ParseDuration): one
// number and one unit.
var kumaDurationRE = regexp.MustCompile(`^(\d+)(y|w|d|h|m|s|ms)$`)

// kumaUnits are the units' lengths; y is 365 days.
var kumaUnits = map[string]time.Duration{
	"y": 365 * 24 * time.Hour, "w": 7 * 24 * time.Hour, "d": 24 * time.Hour,
	"h": time.Hour, "m": time.Minute, "s": time.Second, "ms": time.Millisecond,
}

// ParseDuration reads Kuma's duration form ("0", "90s", "24h", "1d", "2w",
// "10y"). Values that overflow a time.Duration are errors.
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	m := kumaDurationRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("not a valid duration string: %q", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := kumaUnits[m[2]]
	if err != nil || n > int64(math.MaxInt64/unit) {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return time.Duration(n) * unit, nil
}
