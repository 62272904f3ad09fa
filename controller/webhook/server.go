package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/controller/source/kube"
)

// CADirName is where the webhook's CA lives in the state directory.
const CADirName = "webhook-ca"

// ServingCertLifetime is the serving certificate's life; it is reissued in
// memory after two thirds of it.
const ServingCertLifetime = 30 * 24 * time.Hour

// LoadOrCreateCA loads the webhook's CA from stateDir/webhook-ca, making it
// on first use. Its certificate is the caBundle the API server trusts.
func LoadOrCreateCA(stateDir string) (*pki.CA, error) {
	ca, _, err := pki.LoadOrCreateCA(filepath.Join(stateDir, CADirName), pki.CAOptions{
		Subject: pkix.Name{CommonName: "meshext webhook CA", Organization: []string{"meshext"}},
	})
	return ca, err
}

// TLSConfig serves a certificate from ca for names (DNS names or IPs, what
// the API server dials), reissued in memory before it expires; its key is
// never written.
func TLSConfig(ca *pki.CA, names []string) (*tls.Config, error) {
	get, err := pki.ServingCertificate(ca, names, pki.LeafOptions{Validity: pki.Validity{Lifetime: ServingCertLifetime}})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w (--server-names)", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get}, nil
}

// Serve answers on lis over TLS until ctx ends.
func Serve(ctx context.Context, lis net.Listener, tc *tls.Config, h *Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Name is the webhook's name in its configuration (kubectl prints it when
// the webhook refuses a request).
const Name = "validator.meshext.kuma.io"

// ClientConfig says how the API server reaches the webhook: a URL, or a
// Service (namespace/name, port).
type ClientConfig struct {
	URL                string
	ServiceNamespace   string
	ServiceName        string
	ServicePort        int32
	ConfigurationName  string // of the ValidatingWebhookConfiguration ("" = meshext)
	FailOpenOnTimeouts bool   // failurePolicy Ignore instead of Fail
}

// Configuration is the ValidatingWebhookConfiguration, as YAML, that sends
// creates and updates of every Kuma kind meshext reads to the webhook and
// trusts caPEM for it.
func Configuration(cc ClientConfig, caPEM []byte) ([]byte, error) {
	var resources []string
	for _, k := range kube.Kinds {
		resources = append(resources, k.Plural)
	}
	client := admissionregistrationv1.WebhookClientConfig{CABundle: caPEM}
	switch {
	case cc.URL != "":
		client.URL = &cc.URL
	case cc.ServiceName != "":
		path := Path
		port := cc.ServicePort
		if port == 0 {
			port = 443
		}
		client.Service = &admissionregistrationv1.ServiceReference{Namespace: cc.ServiceNamespace, Name: cc.ServiceName, Path: &path, Port: &port}
	default:
		return nil, errors.New("webhook: a URL or a Service is needed")
	}
	fail := admissionregistrationv1.Fail
	if cc.FailOpenOnTimeouts {
		fail = admissionregistrationv1.Ignore
	}
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	scope := admissionregistrationv1.AllScopes
	name := cc.ConfigurationName
	if name == "" {
		name = "meshext"
	}
	cfg := admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    Name,
			ClientConfig:            client,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			TimeoutSeconds:          &timeout,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{kube.Group}, APIVersions: []string{kube.Version},
					Resources: resources, Scope: &scope},
			}},
		}},
	}
	return yaml.Marshal(&cfg)
}
