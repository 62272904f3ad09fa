package kube

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// object is a MeshExternalService as the API server returns it: server
// fields, status, and a spec.
func object(t *testing.T, name string, spec string, status string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	doc := `{"apiVersion":"kuma.io/v1alpha1","kind":"MeshExternalService",
	  "metadata":{"name":"` + name + `","namespace":"kuma-system","uid":"u-` + name + `","resourceVersion":"7","generation":1,
	    "creationTimestamp":"2026-01-02T03:04:05Z","labels":{"kuma.io/mesh":"default"},
	    "managedFields":[{"manager":"kubectl"}],"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},
	  "spec":` + spec
	if status != "" {
		doc += `,"status":` + status
	}
	require.NoError(t, u.UnmarshalJSON([]byte(doc+"}")))
	return u
}

const goodSpec = `{"match":{"type":"HostnameGenerator","port":80,"protocol":"http"},"endpoints":[{"address":"httpbin.org","port":80}]}`

func parse(t *testing.T, kind resource.Kind, u *unstructured.Unstructured) ([]resource.Object, []*resource.FieldError) {
	t.Helper()
	data, err := json.Marshal(Document(kind, u))
	require.NoError(t, err)
	return ParseObject(Ref(kind, u.GetNamespace(), u.GetName()), data)
}

func TestObjectParsesAsTheSameYAMLInAFile(t *testing.T) {
	u := object(t, "mes-http", goodSpec, `{"vip":{"ip":"242.0.0.9"}}`)
	objs, errs := parse(t, resource.KindMeshExternalService, u)
	require.Empty(t, errs)
	require.Len(t, objs, 1)
	m := objs[0].(*resource.MeshExternalService)
	assert.Equal(t, "mes-http", m.Name, "metadata.name, as a file gives it")
	assert.Equal(t, "default", m.Mesh)
	assert.Equal(t, "kuma-system", m.Namespace)
	assert.Equal(t, "2026-01-02T03:04:05Z", m.CreationTime)
	assert.Equal(t, resource.StyleKubernetes, m.Source.Style)
	assert.Equal(t, resource.NoLine, m.Source.Line)
	assert.Equal(t, "MeshExternalService kuma-system/mes-http", m.Source.File)
	assert.Equal(t, int64(80), *m.Spec.Match.Port)

	files, ferrs := resource.ParseBytes("mes-http.yaml", []byte(`apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: mes-http
  namespace: kuma-system
  labels: {kuma.io/mesh: default}
spec:
  match: {type: HostnameGenerator, port: 80, protocol: http}
  endpoints: [{address: httpbin.org, port: 80}]
`))
	require.Empty(t, ferrs)
	assert.Equal(t, files[0].(*resource.MeshExternalService).Spec, m.Spec, "the same spec from a file")
}

func TestProblemsNameTheObjectNotALine(t *testing.T) {
	u := object(t, "bad", `{"match":{"port":80,"protocol":"tcp"},"endpoints":[{"address":"a.example","port":70000}],"bogus":1}`, "")
	objs, errs := parse(t, resource.KindMeshExternalService, u)
	require.Len(t, objs, 1)
	set := &resource.Set{}
	require.Nil(t, set.Add(objs[0]))
	set.ComputeLabels(resource.Options{})
	errs = append(errs, validate.Object(objs[0], set)...)
	var msgs []string
	for _, e := range errs {
		assert.Equal(t, resource.NoLine, e.Line)
		msgs = append(msgs, e.Error())
	}
	assert.Contains(t, msgs, "MeshExternalService kuma-system/bad: spec.bogus: unknown field")
	assert.Contains(t, msgs, "MeshExternalService kuma-system/bad: spec.endpoints[0].port: port must be a valid (1-65535)")
}

func TestSecretInKumasLayout(t *testing.T) {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ca", Namespace: SystemNamespace, Labels: map[string]string{resource.LabelMesh: "default"}},
		Type:       resource.SecretK8sType,
		Data:       map[string][]byte{"value": []byte("pem bytes"), "other": []byte("x")},
	}
	data, err := json.Marshal(secretDocument(sec))
	require.NoError(t, err)
	objs, errs := ParseObject(Ref(resource.KindSecret, sec.Namespace, sec.Name), data)
	require.Empty(t, errs)
	s := objs[0].(*resource.Secret)
	assert.Equal(t, []byte("pem bytes"), s.Data)
	assert.Equal(t, "default", s.Mesh)
	assert.NotContains(t, s.String(), "pem bytes", "secret bytes are never printed")
}

func TestStatusVIPsOlderKeepsAClaim(t *testing.T) {
	older := object(t, "a", goodSpec, `{"vip":{"ip":"242.0.0.5"}}`)
	newer := object(t, "b", goodSpec, `{"vip":{"ip":"242.0.0.5"}}`)
	newer.SetCreationTimestamp(metav1.NewTime(older.GetCreationTimestamp().Add(time.Hour)))
	other := object(t, "c", goodSpec, `{"vip":{"ip":"not an ip"}}`)
	elsewhere := object(t, "d", goodSpec, `{"vip":{"ip":"242.0.0.6"}}`)
	elsewhere.SetNamespace("apps")
	got := StatusVIPs([]*unstructured.Unstructured{newer, older, other, elsewhere})
	assert.Equal(t, map[string]netip.Addr{"default/a": netip.MustParseAddr("242.0.0.5")}, got)
}

func TestVIPViewServesOnlyStoredVIPs(t *testing.T) {
	s := &Source{vips: map[string]netip.Addr{"default/a": netip.MustParseAddr("242.0.0.5"), "default/out": netip.MustParseAddr("10.0.0.1")}}
	v := s.VIPView(netip.MustParsePrefix("242.0.0.0/8"))
	leases, err := v.Assign([]string{"default/a", "default/b", "default/out"})
	assert.Equal(t, netip.MustParseAddr("242.0.0.5"), leases["default/a"].VIP)
	assert.NotContains(t, leases, "default/b")
	assert.NotContains(t, leases, "default/out", "outside the CIDR: the leader moves it")
	var pending *PendingError
	require.ErrorAs(t, err, &pending)
	assert.Equal(t, []string{"default/b", "default/out"}, pending.Keys)
}

func TestKindsCoverEveryResourceKind(t *testing.T) {
	var got []resource.Kind
	for _, k := range Kinds {
		got = append(got, k.Kind)
	}
	var want []resource.Kind
	for _, k := range resource.Kinds {
		if k != resource.KindSecret {
			want = append(want, k)
		}
	}
	assert.ElementsMatch(t, want, got, "a custom resource for every kind meshext reads")
}

func TestWatchDebouncesAndNeverWaitsForever(t *testing.T) {
	s := &Source{events: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 1)
	done := make(chan error)
	go func() { done <- s.Watch(ctx, 50*time.Millisecond, changed) }()

	// A burst is one reload, after it is quiet.
	start := time.Now()
	for range 5 {
		s.poke()
		time.Sleep(10 * time.Millisecond)
	}
	<-changed
	assert.GreaterOrEqual(t, time.Since(start), 90*time.Millisecond)
	select {
	case <-changed:
		t.Fatal("one burst, two reloads")
	case <-time.After(150 * time.Millisecond):
	}

	// Changes that never stop still reload, every maxDebounceWait periods at most.
	start = time.Now()
	stop := time.After(2 * time.Second)
	got := 0
loop:
	for {
		select {
		case <-changed:
			got++
		case <-stop:
			break loop
		case <-time.After(20 * time.Millisecond):
			s.poke()
		}
	}
	assert.GreaterOrEqual(t, got, 2, "reloads in %s of steady changes", time.Since(start))
	cancel()
	require.NoError(t, <-done)
}
