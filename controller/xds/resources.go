// Package xds delivers rendered Envoy resources to Envoy, either as files in
// a watched directory (FileWriter) or over an ADS gRPC server backed by
// go-control-plane's snapshot cache (Server). It knows nothing of meshext's
// resource model: callers hand it typed Envoy resources per node id.
package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/parallel"
)

// Resources is the configuration of one Envoy node.
type Resources struct {
	Clusters  []*clusterv3.Cluster
	Listeners []*listenerv3.Listener
	// Routes are the route tables listeners name through RDS.
	Routes  []*routev3.RouteConfiguration
	Secrets []*tlsv3.Secret
}

// Count is the number of resources of every type.
func (r *Resources) Count() int {
	if r == nil {
		return 0
	}
	return len(r.Clusters) + len(r.Listeners) + len(r.Routes) + len(r.Secrets)
}

// Validate checks a resource and every message packed inside it. Envoy's
// generated validators (PGV) stop at google.protobuf.Any, so a listener whose
// tcp_proxy lacks stat_prefix would pass Listener.ValidateAll; here each Any
// is unpacked and validated too.
func Validate(m proto.Message) error {
	return (*Validator)(nil).validateDeep(m.ProtoReflect(), true)
}

type allValidator interface{ ValidateAll() error }

// validateDeep is Validate below m; with a Validator, an Any that passed in
// this round or the last is not unpacked again: render hands the same packed
// filter configs again for services it did not re-render, inside a listener
// that is new (the transparent listener has one chain per service).
func (v *Validator) validateDeep(m protoreflect.Message, self bool) error {
	if self {
		if v, ok := m.Interface().(allValidator); ok {
			if err := v.ValidateAll(); err != nil {
				return err
			}
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		if v.anyPassed(a) {
			return nil
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("cannot unpack %s: %w", a.GetTypeUrl(), err)
		}
		if err := v.validateDeep(inner.ProtoReflect(), true); err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		v.anyPass(a)
		return nil
	}
	// ValidateAll above already covered this message's nested (non-Any)
	// messages structurally; descend only to reach the Anys below.
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, fv protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := fv.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = v.validateDeep(l.Get(i).Message(), false)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			fv.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = v.validateDeep(mv.Message(), false)
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = v.validateDeep(fv.Message(), false)
		}
		return err == nil
	})
	return err
}

// Sanitize validates every resource of next. A resource that fails keeps its
// previous good version (same type and name in prev) when there is one, and
// is dropped otherwise, so a bad resource never reaches Envoy and never
// disturbs the others. prev may be nil. The problems name each rejected resource.
func Sanitize(prev, next *Resources) (*Resources, []error) {
	return (*Validator)(nil).Sanitize(prev, next)
}

// Validator is Sanitize with a memory: contents that passed before are not
// validated again, which is most of a reload's resources. Hashing the wire
// form costs a fraction of the deep validation it saves, and a message that
// passed in this round or the last (see Round) is not even hashed: render
// hands the very same message again for a service it did not re-render
// (render.Memo). The zero value is ready; a nil *Validator validates
// everything. Safe for concurrent use.
//
// Callers never modify a message after handing it to Sanitize (rendered
// messages are read-only).
type Validator struct {
	mu     sync.Mutex
	passed map[[sha256.Size]byte]struct{}
	// same and last hold, by identity, the messages that passed in this
	// round and in the last one, with their hashes (Hash).
	same, last map[proto.Message][sha256.Size]byte
	// anys holds, by identity, the Anys that passed in this round and in
	// the last one (validateDeep), once rounds have started.
	anys generations[*anypb.Any, struct{}]
}

func (v *Validator) anyPassed(a *anypb.Any) bool {
	if v == nil {
		return false
	}
	_, ok := v.anys.get(a)
	return ok
}

func (v *Validator) anyPass(a *anypb.Any) {
	if v == nil {
		return
	}
	v.mu.Lock()
	rounds := v.same != nil
	v.mu.Unlock()
	if rounds {
		v.anys.put(a, struct{}{})
	}
}

// validatorMemory bounds the remembered hashes (about 40 B each).
const validatorMemory = 1 << 18

// Round starts a round of Sanitize calls (one per reload): the messages
// remembered by identity from before the last round are let go, so the
// Validator keeps no more than two reloads' messages alive.
func (v *Validator) Round() {
	v.mu.Lock()
	v.last, v.same = v.same, map[proto.Message][sha256.Size]byte{}
	v.mu.Unlock()
	v.anys.turn()
}

// Hash is hashOf(m) for a message that passed in this round or the last
// (false otherwise), so delivery need not marshal it again (Server.UseHashes).
func (v *Validator) Hash(m proto.Message) (string, bool) {
	v.mu.Lock()
	sum, ok := v.same[m]
	if !ok {
		sum, ok = v.last[m]
	}
	v.mu.Unlock()
	if !ok {
		return "", false
	}
	return hex.EncodeToString(sum[:]), true
}

func (v *Validator) validate(m proto.Message) error {
	if v == nil {
		return Validate(m)
	}
	v.mu.Lock()
	_, same := v.same[m]
	sum, last := v.last[m]
	if last && !same && v.same != nil {
		v.same[m] = sum
	}
	v.mu.Unlock()
	if same || last {
		return nil
	}
	b, err := deterministic.Marshal(m)
	if err != nil {
		return err
	}
	sum = sha256.Sum256(b)
	v.mu.Lock()
	_, ok := v.passed[sum]
	v.mu.Unlock()
	if !ok {
		if err := v.validateDeep(m.ProtoReflect(), true); err != nil {
			return err
		}
	}
	v.mu.Lock()
	if v.passed == nil || len(v.passed) >= validatorMemory {
		v.passed = map[[sha256.Size]byte]struct{}{}
	}
	v.passed[sum] = struct{}{}
	if v.same != nil {
		v.same[m] = sum
	}
	v.mu.Unlock()
	return nil
}

// Sanitize is the package-level Sanitize, skipping contents that passed before.
func (v *Validator) Sanitize(prev, next *Resources) (*Resources, []error) {
	if next == nil {
		return &Resources{}, nil
	}
	if prev == nil {
		prev = &Resources{}
	}
	var problems []error
	out := &Resources{
		Clusters:  sanitizeList(v, "cluster", prev.Clusters, next.Clusters, &problems),
		Listeners: sanitizeList(v, "listener", prev.Listeners, next.Listeners, &problems),
		Routes:    sanitizeList(v, "route table", prev.Routes, next.Routes, &problems),
		Secrets:   sanitizeList(v, "secret", prev.Secrets, next.Secrets, &problems),
	}
	return out, problems
}

type named interface {
	proto.Message
	GetName() string
}

func sanitizeList[T named](v *Validator, kind string, prev, next []T, problems *[]error) []T {
	var old map[string]T
	out := make([]T, 0, len(next))
	for _, r := range next {
		err := v.validate(r)
		if err == nil {
			out = append(out, r)
			continue
		}
		if old == nil {
			old = make(map[string]T, len(prev))
			for _, p := range prev {
				old[p.GetName()] = p
			}
		}
		if p, ok := old[r.GetName()]; ok {
			out = append(out, p)
			*problems = append(*problems, fmt.Errorf("%s %q is invalid, keeping the previous version: %w", kind, r.GetName(), err))
		} else {
			*problems = append(*problems, fmt.Errorf("%s %q is invalid, dropped: %w", kind, r.GetName(), err))
		}
	}
	return out
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// hashOf hashes the deterministic wire form of a message. protojson output
// is deliberately unstable, so change detection never compares JSON.
func hashOf(m proto.Message) (string, error) {
	b, err := deterministic.Marshal(m)
	if err != nil {
		return "", err
	}
	return hashBytes(b), nil
}

// hashBytes is a resource's hash from its deterministic encoding.
func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// versionOf is the version of a list of resources: a hash of their names and
// contents in name order, so equal content always has equal versions.
func versionOf[T named](items []T) (string, error) {
	es, err := hashAll(items, hashOf)
	if err != nil {
		return "", err
	}
	return versionFrom(es), nil
}

// encodeList is versionOf that also returns each item's deterministic wire
// form: the file writers print those bytes (JSON) or pack them as they are
// (binary), instead of marshalling every resource a second time (10k
// clusters and a 6 MB listener).
func encodeList[T named](items []T) (version string, wires [][]byte, err error) {
	wires = make([][]byte, len(items))
	es, err := hashEach(items, func(i int) (string, error) {
		b, err := deterministic.Marshal(items[i])
		if err != nil {
			return "", err
		}
		wires[i] = b
		return hashBytes(b), nil
	})
	if err != nil {
		return "", nil, err
	}
	return versionFrom(es), wires, nil
}

// namedHash is one resource's name and hash.
type namedHash struct{ name, hash string }

// hashAll hashes every item with hash (safe for concurrent use), on every
// core: marshalling is the cost (10k clusters: a quarter of a drop's write).
func hashAll[T named](items []T, hash func(proto.Message) (string, error)) ([]namedHash, error) {
	return hashEach(items, func(i int) (string, error) { return hash(items[i]) })
}

// hashEach is hashAll with the hash of items[i] from hash(i), on every core.
func hashEach[T named](items []T, hash func(i int) (string, error)) ([]namedHash, error) {
	es := make([]namedHash, len(items))
	errs := make([]error, len(items))
	parallel.ForEach(len(items), func(i int) {
		es[i].name = items[i].GetName()
		es[i].hash, errs[i] = hash(i)
	})
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", es[i].name, err)
		}
	}
	return es, nil
}

// versionFrom is versionOf of hashed resources (es is sorted by name).
func versionFrom(es []namedHash) string {
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	sum := sha256.New()
	for _, e := range es {
		sum.Write([]byte(e.name))
		sum.Write([]byte{0})
		sum.Write([]byte(e.hash))
		sum.Write([]byte{0})
	}
	return hex.EncodeToString(sum.Sum(nil))[:16]
}

// hashMemo hashes messages (hashOf) and remembers the hashes by message
// identity for one generation: render hands the same message again for a
// service it did not re-render, so a reload hashes only what changed.
// hash is safe for concurrent use.
type hashMemo struct {
	hashes generations[proto.Message, string]
	// known, when set, may know a message's hash already (Server.UseHashes,
	// which sets it under Server.mu before the first Update).
	known func(proto.Message) (string, bool)
}

func (h *hashMemo) hash(m proto.Message) (string, error) {
	if v, ok := h.hashes.get(m); ok {
		return v, nil
	}
	v, ok := "", false
	if h.known != nil {
		v, ok = h.known(m)
	}
	if !ok {
		var err error
		if v, err = hashOf(m); err != nil {
			return "", err
		}
	}
	h.hashes.put(m, v)
	return v, nil
}

// turn ends a generation: hashes not asked for since the last turn are let go.
func (h *hashMemo) turn() { h.hashes.turn() }

// checkNames refuses empty and duplicate names, which Envoy would reject as a whole update.
func checkNames[T named](kind string, items []T) error {
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		n := it.GetName()
		if n == "" {
			return fmt.Errorf("%s without a name", kind)
		}
		if seen[n] {
			return fmt.Errorf("duplicate %s %q", kind, n)
		}
		seen[n] = true
	}
	return nil
}

func checkResources(r *Resources) error {
	return errors.Join(
		checkNames("cluster", r.Clusters),
		checkNames("listener", r.Listeners),
		checkNames("route table", r.Routes),
		checkNames("secret", r.Secrets),
	)
}
