// Package kube is `meshext run --source kubernetes`: Kuma's custom
// resources (kuma.io/v1alpha1, every kind meshext reads) and Kuma's mesh
// Secrets (type system.kuma.io/secret in the system namespace), followed
// with client-go informers and handed to the pipeline as documents, one per
// object, so the same parser, validator, model and renderer serve them as
// serve a drop directory.
//
// Kuma's Kubernetes conventions hold: the kuma.io/mesh label picks the mesh
// (default "default"), MeshExternalServices, HostnameGenerators, ZoneEgresses
// and Secrets live in the system namespace (kuma-system), policies there or
// in an application namespace. A resource's name is its metadata.name, as
// when the same YAML is read from a file, so files and Kubernetes give the
// same names, clusters, node ids and hostnames (Kuma's core name on
// Kubernetes is "<name>.<namespace>"; .DisplayName is the same in both).
// Problems name the object ("MeshExternalService kuma-system/x: spec.match.port: ...")
// instead of FILE:LINE.
package kube

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/source"
)

// SyncTimeout bounds the wait for the first complete listing of every kind.
const SyncTimeout = time.Minute

// maxDebounceWait bounds how long a steady stream of changes can hold a
// reload back, in debounce periods.
const maxDebounceWait = 10

// RESTConfig is the API server connection: the kubeconfig file, or with
// kubeconfig "" the pod's in-cluster service account.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("not running in a Kubernetes pod (%v): give --kubeconfig", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// SystemNamespace is Kuma's system namespace (Kuma's default name, which
// validation holds MeshExternalServices, HostnameGenerators and Secrets to).
const SystemNamespace = resource.SystemNamespace

// Config tunes the source.
type Config struct {
	Logger *slog.Logger
}

// Source follows the API server. Start it, then hand it to run.Config.Source.
type Source struct {
	cfg  Config
	host string
	log  *slog.Logger
	disc interface {
		ServerResourcesForGroupVersion(string) (*metav1.APIResourceList, error)
	}
	dynFactory  dynamicinformer.DynamicSharedInformerFactory
	coreFactory informers.SharedInformerFactory
	kinds       []kindInformer
	secrets     cache.SharedIndexInformer
	events      chan struct{}

	mu sync.Mutex
	// docs caches each object's document by name, with the resourceVersion it was made from.
	docs map[string]cachedDoc
	// vips are the status VIPs of the last Read (see VIPView).
	vips map[string]netip.Addr
}

type kindInformer struct {
	KindInfo
	informer cache.SharedIndexInformer
}

type cachedDoc struct {
	version string
	data    []byte
}

// New prepares informers for every kind on the API server rc points at.
func New(rc *rest.Config, cfg Config) (*Source, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	core, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, host: rc.Host, log: cfg.Logger, disc: core.Discovery(),
		events: make(chan struct{}, 1), docs: map[string]cachedDoc{}}
	s.dynFactory = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	// Only Kuma's secrets, only in the system namespace: meshext never
	// lists (or holds in memory) any other Secret.
	s.coreFactory = informers.NewSharedInformerFactoryWithOptions(core, 0,
		informers.WithNamespace(SystemNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", resource.SecretK8sType).String()
		}))
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	for _, k := range Kinds {
		inf := s.dynFactory.ForResource(k.GVR()).Informer()
		if err := inf.SetTransform(trimObject); err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
		s.kinds = append(s.kinds, kindInformer{KindInfo: k, informer: inf})
	}
	s.secrets = s.coreFactory.Core().V1().Secrets().Informer()
	if err := s.secrets.SetTransform(trimObject); err != nil {
		return nil, err
	}
	if _, err := s.secrets.AddEventHandler(handler); err != nil {
		return nil, err
	}
	return s, nil
}

// trimObject drops what meshext never reads before an object is cached
// (managed fields are often most of an object's size).
func trimObject(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	return obj, nil
}

func (s *Source) poke() {
	select {
	case s.events <- struct{}{}:
	default:
	}
}

// Start checks that every kind's CRD is installed, starts the informers
// and waits until each has listed its objects once (at most SyncTimeout).
// The informers stop when ctx ends.
func (s *Source) Start(ctx context.Context) error {
	list, err := s.disc.ServerResourcesForGroupVersion(Group + "/" + Version)
	served := map[string]bool{}
	if err == nil {
		for _, r := range list.APIResources {
			served[r.Name] = true
		}
	}
	var missing []string
	for _, k := range Kinds {
		if !served[k.Plural] {
			missing = append(missing, k.CRDName())
		}
	}
	if len(missing) > 0 {
		why := ""
		if err != nil {
			why = fmt.Sprintf(" (%v)", err)
		}
		return fmt.Errorf("the API server at %s does not serve %v%s: apply the CRDs first (kubectl apply -f deploy/kubernetes/crds/)", s.host, missing, why)
	}
	s.dynFactory.Start(ctx.Done())
	s.coreFactory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, SyncTimeout)
	defer cancel()
	syncs := []cache.InformerSynced{s.secrets.HasSynced}
	for _, k := range s.kinds {
		syncs = append(syncs, k.informer.HasSynced)
	}
	if !cache.WaitForCacheSync(sctx.Done(), syncs...) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("listing Kuma's resources from %s did not complete within %s (RBAC: can meshext's service account list and watch them, and Secrets in %s?)",
			s.host, SyncTimeout, SystemNamespace)
	}
	return nil
}

// String names the source.
func (s *Source) String() string { return "Kubernetes API " + s.host }

// Watch sends on changed once a burst of informer events has been quiet
// for debounce (or has gone on for maxDebounceWait of them).
func (s *Source) Watch(ctx context.Context, debounce time.Duration, changed chan<- struct{}) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var first time.Time // of the pending burst
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.events:
			if first.IsZero() {
				first = time.Now()
			}
			timer.Reset(max(0, min(debounce, time.Until(first.Add(maxDebounceWait*debounce)))))
		case <-timer.C:
			first = time.Time{}
			select {
			case changed <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}
}

// Ref is the name of an object's document: its kind and namespace/name
// (name alone for the cluster-scoped Mesh). Problems print it in place of
// FILE:LINE.
func Ref(kind resource.Kind, namespace, name string) string {
	if namespace == "" {
		return string(kind) + " " + name
	}
	return string(kind) + " " + namespace + "/" + name
}

// Read converts the informers' caches into documents, in Kuma's kind order
// and, within a kind, oldest first (so the older of two objects with one
// kind, mesh and name is the one served). It also keeps the status VIPs of
// the MeshExternalServices read, for VIPView.
func (s *Source) Read() (*source.Input, error) {
	type item struct {
		name    string
		rank    int
		created time.Time
		version string
		doc     func() map[string]any
	}
	rank := map[resource.Kind]int{}
	for i, k := range resource.Kinds {
		rank[k] = i
	}
	var items []item
	var services []*unstructured.Unstructured
	for _, k := range s.kinds {
		for _, o := range k.informer.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			if k.Kind == resource.KindMeshExternalService {
				services = append(services, u)
			}
			kind := k.Kind
			items = append(items, item{name: Ref(kind, u.GetNamespace(), u.GetName()), rank: rank[kind],
				created: u.GetCreationTimestamp().Time, version: u.GetResourceVersion(),
				doc: func() map[string]any { return Document(kind, u) }})
		}
	}
	for _, o := range s.secrets.GetStore().List() {
		sec, ok := o.(*corev1.Secret)
		if !ok {
			continue
		}
		items = append(items, item{name: Ref(resource.KindSecret, sec.Namespace, sec.Name), rank: rank[resource.KindSecret],
			created: sec.CreationTimestamp.Time, version: sec.ResourceVersion,
			doc: func() map[string]any { return secretDocument(sec) }})
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), a.created.Compare(b.created), cmp.Compare(a.name, b.name))
	})

	vips := StatusVIPs(services)
	in := &source.Input{Data: make(map[string][]byte, len(items))}
	h := sha256.New()
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]cachedDoc, len(items))
	for _, it := range items {
		c, ok := s.docs[it.name]
		if !ok || c.version != it.version || it.version == "" {
			var err error
			if c.data, err = json.Marshal(it.doc()); err != nil {
				in.Names = append(in.Names, it.name)
				in.Problems = append(in.Problems, &resource.FieldError{File: it.name, Line: resource.NoLine, Message: "cannot read: " + err.Error()})
				fmt.Fprintf(h, "%s\x00!\x00", it.name)
				continue
			}
			c.version = it.version
		}
		next[it.name] = c
		in.Names = append(in.Names, it.name)
		in.Data[it.name] = c.data
		// JSON is YAML: the documents parse as written in a file would.
		fmt.Fprintf(h, "%s\x00%d\x00", it.name, len(c.data))
		h.Write(c.data)
	}
	// VIPs are part of the input: a VIP the leader writes makes followers
	// (and the leader) render the service.
	for _, k := range slices.Sorted(maps.Keys(vips)) {
		fmt.Fprintf(h, "vip\x00%s\x00%s\x00", k, vips[k])
	}
	copy(in.Sum[:], h.Sum(nil))
	s.docs, s.vips = next, vips
	return in, nil
}

// Document is the document of a Kuma custom resource: what a file in
// Kubernetes style would hold (apiVersion, kind, metadata.name, namespace,
// labels, creationTimestamp, spec, and any other top-level field, which
// the parser then reports as unknown). Status is the controller's own.
func Document(kind resource.Kind, u *unstructured.Unstructured) map[string]any {
	doc := map[string]any{}
	for k, v := range u.Object {
		switch k {
		case "metadata", "status":
		default:
			doc[k] = v
		}
	}
	doc["apiVersion"], doc["kind"] = Group+"/"+Version, string(kind)
	doc["metadata"] = metadata(u.GetName(), u.GetNamespace(), u.GetLabels(), u.GetCreationTimestamp())
	return doc
}

// secretDocument is a Kuma Secret in Kuma's Kubernetes layout: the value is
// data.value (other keys are not Kuma's and are left out).
func secretDocument(sec *corev1.Secret) map[string]any {
	data := map[string]any{}
	if v, ok := sec.Data["value"]; ok {
		data["value"] = base64.StdEncoding.EncodeToString(v)
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": metadata(sec.Name, sec.Namespace, sec.Labels, sec.CreationTimestamp),
		"type":     string(sec.Type), "data": data,
	}
}

func metadata(name, namespace string, labels map[string]string, created metav1.Time) map[string]any {
	md := map[string]any{"name": name}
	if namespace != "" {
		md["namespace"] = namespace
	}
	if len(labels) > 0 {
		md["labels"] = labels
	}
	if !created.IsZero() {
		md["creationTimestamp"] = created.UTC().Format(time.RFC3339)
	}
	return md
}

// Parse reads one object's document. Its resources and problems carry the
// object reference and no line.
func (s *Source) Parse(name string, data []byte) ([]resource.Object, []*resource.FieldError) {
	return ParseObject(name, data)
}

// ParseObject parses the document of one object (JSON or YAML) named by ref.
func ParseObject(ref string, data []byte) ([]resource.Object, []*resource.FieldError) {
	objs, errs := resource.ParseBytes(ref, data)
	for _, o := range objs {
		o.GetMeta().Source.Line = resource.NoLine
	}
	for _, e := range errs {
		e.Line = resource.NoLine
	}
	return objs, errs
}

// MeshExternalServices are the MeshExternalService objects the informer
// holds now (shared with the cache: read only).
func (s *Source) MeshExternalServices() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, k := range s.kinds {
		if k.Kind != resource.KindMeshExternalService {
			continue
		}
		for _, o := range k.informer.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				out = append(out, u)
			}
		}
	}
	return out
}
