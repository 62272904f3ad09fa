package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/meshext/meshext/controller/pki"
)

func request(t *testing.T, op admissionv1.Operation, kind, namespace, objYAML string) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(objYAML))
	require.NoError(t, err)
	return &admissionv1.AdmissionRequest{
		UID: types.UID("req-1"), Kind: metav1.GroupVersionKind{Group: "kuma.io", Version: "v1alpha1", Kind: kind},
		Namespace: namespace, Operation: op, Object: runtime.RawExtension{Raw: raw},
	}
}

const invalidMES = `apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: bad
  labels: {kuma.io/mesh: default}
spec:
  match: {port: 443, protocol: tcp}
  endpoints: [{address: "unix:///tmp/x.sock", port: 80}]
  tls: {enabled: true, version: {min: TLS13, max: TLS12}, verification: {clientCert: {inline: dGVzdA==}}}
`

func TestReviewRefusesWithKumasMessages(t *testing.T) {
	h := &Handler{Zone: "default"}
	resp := h.Review(request(t, admissionv1.Create, "MeshExternalService", "kuma-system", invalidMES))
	require.False(t, resp.Allowed)
	assert.Equal(t, int32(http.StatusUnprocessableEntity), resp.Result.Code)
	assert.Equal(t, metav1.StatusReasonInvalid, resp.Result.Reason)
	assert.Equal(t, "bad", resp.Result.Details.Name, "the name comes from the object on a create")
	assert.Equal(t, "spec.endpoints[0].port: must not be defined when endpoint is a unix path; "+
		"spec.tls.version.min: min version must be lower than max; "+
		"spec.tls.verification.clientKey: must be defined when clientCert is defined", resp.Result.Message)
	var fields []string
	for _, c := range resp.Result.Details.Causes {
		assert.Equal(t, metav1.CauseTypeFieldValueInvalid, c.Type)
		fields = append(fields, c.Field)
	}
	assert.Equal(t, []string{"spec.endpoints[0].port", "spec.tls.version.min", "spec.tls.verification.clientKey"}, fields)
}

func TestReviewChecksNamespaceAndKind(t *testing.T) {
	h := &Handler{}
	good := strings.Replace(invalidMES, "spec:", "spec:\n  extension: {type: x}", 1)
	good = good[:strings.Index(good, "  endpoints")]
	resp := h.Review(request(t, admissionv1.Create, "MeshExternalService", "kuma-system", good))
	assert.True(t, resp.Allowed, "%+v", resp.Result)

	// The namespace of the request counts when the object has none.
	resp = h.Review(request(t, admissionv1.Create, "MeshExternalService", "apps", good))
	require.False(t, resp.Allowed)
	assert.Equal(t, "namespace: resource type MeshExternalService can be created only in the system namespace:kuma-system", resp.Result.Message)

	// Deletes, other groups and kinds are not meshext's to refuse.
	assert.True(t, h.Review(request(t, admissionv1.Delete, "MeshExternalService", "kuma-system", invalidMES)).Allowed)
	other := request(t, admissionv1.Create, "MeshGateway", "kuma-system", "metadata: {name: x}")
	assert.True(t, h.Review(other).Allowed)
}

func TestServesAdmissionReviewOverTLS(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	require.NoError(t, err)
	tc, err := TLSConfig(ca, []string{"127.0.0.1"})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lis, tc, &Handler{}, discardLogger()) }()
	t.Cleanup(func() { cancel(); <-done })

	review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: request(t, admissionv1.Update, "MeshExternalService", "kuma-system", invalidMES)}
	body, err := json.Marshal(&review)
	require.NoError(t, err)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := client.Post("https://"+lis.Addr().String()+Path, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out admissionv1.AdmissionReview
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	assert.Equal(t, "AdmissionReview", out.Kind)
	assert.Equal(t, types.UID("req-1"), out.Response.UID)
	assert.False(t, out.Response.Allowed)

	// The CA in the configuration is the one that signed the serving certificate.
	cfg, err := Configuration(ClientConfig{URL: "https://127.0.0.1:1/validate"}, ca.CertPEM)
	require.NoError(t, err)
	var parsed struct {
		Webhooks []struct {
			Name         string
			ClientConfig struct{ CABundle []byte }
			Rules        []struct{ Resources []string }
		}
	}
	require.NoError(t, yaml.Unmarshal(cfg, &parsed))
	require.Len(t, parsed.Webhooks, 1)
	assert.Equal(t, Name, parsed.Webhooks[0].Name)
	certs, err := pki.ParseCertsPEM(parsed.Webhooks[0].ClientConfig.CABundle)
	require.NoError(t, err)
	assert.True(t, certs[0].Equal(ca.Cert))
	assert.Contains(t, parsed.Webhooks[0].Rules[0].Resources, "meshexternalservices")
	assert.Len(t, parsed.Webhooks[0].Rules[0].Resources, 14)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
