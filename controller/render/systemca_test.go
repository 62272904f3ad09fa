package render

import (
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
)

// Services trusting the system bundle share one SDS secret (one file, one
// Envoy watch), listed once per node; a user CA is its own secret, named by
// its content.
func TestSystemCABundleIsOneSharedSecret(t *testing.T) {
	system := func() *model.TLS {
		return &model.TLS{Mode: resource.ModeSecured, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto,
			SystemCAPath: "/etc/ssl/certs/ca-certificates.crt", CASource: "system:/etc/ssl/certs/ca-certificates.crt"}
	}
	w := world(
		withTLS(svc("a", "tcp", 443, ep("a.example.com", 443)), system()),
		withTLS(svc("b", "tcp", 443, ep("b.example.com", 443)), system()),
		withTLS(svc("c", "tcp", 443, ep("c.example.com", 443)), tlsSecured()),
	)
	n := onlyNode(t, mustRender(t, w, Options{}))
	var secrets []string
	for _, s := range n.Secrets {
		secrets = append(secrets, s.Name)
	}
	shared := names.SystemCASecret("/etc/ssl/certs/ca-certificates.crt")
	assert.ElementsMatch(t, []string{shared, names.CASecret(w.Services[2].TLS.CA)}, secrets)
	for _, cl := range []string{w.Services[0].ClusterName(), w.Services[1].ClusterName()} {
		up := upstreamTLSOf(t, n, cl)
		require.NotNil(t, up)
		assert.Equal(t, shared, up.CommonTlsContext.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName(), cl)
	}
}

// With FileFormat pb the SDS files clusters name end in .pb, as the writer
// writes them (xds.Format).
func TestSecretFilesFollowTheFileFormat(t *testing.T) {
	tl := tlsSecured()
	tl.ClientCert, tl.ClientKey = fakeClientCert, fakeClientKey
	s := withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl)
	for _, f := range []xds.Format{"", xds.FormatJSON, xds.FormatProto} {
		n := onlyNode(t, mustRender(t, world(s), Options{SecretsVia: SecretsFile, SecretsDir: "/d", FileFormat: f}))
		up := upstreamTLSOf(t, n, s.ClusterName())
		_, ca := validationOf(up)
		for _, ref := range []*tlsv3.SdsSecretConfig{ca, up.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0]} {
			want := f.SecretFile("/d", ref.GetName())
			if got := ref.GetSdsConfig().GetPathConfigSource().GetPath(); got != want || !strings.HasSuffix(got, f.Ext()) {
				t.Errorf("format %q: secret %s read from %q, want %q", f, ref.GetName(), got, want)
			}
		}
	}
}
