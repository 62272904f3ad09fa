package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// node is a JSON value under merge, with the to[] item that last set it.
// Objects merge key by key; everything else (strings, numbers, lists) is
// replaced whole: RFC 7396, the merge Kuma applies to policy confs.
type node struct {
	obj    map[string]*node // non-nil for an object
	leaf   any
	origin Origin
}

func mergePatch(target *node, patch any, o Origin) *node {
	m, ok := patch.(map[string]any)
	if !ok {
		return &node{leaf: patch, origin: o}
	}
	if target == nil || target.obj == nil {
		target = &node{obj: map[string]*node{}}
	}
	target.origin = o
	for k, v := range m {
		if v == nil {
			delete(target.obj, k)
			continue
		}
		target.obj[k] = mergePatch(target.obj[k], v, o)
	}
	return target
}

func (n *node) value() any {
	if n.obj == nil {
		return n.leaf
	}
	out := make(map[string]any, len(n.obj))
	for k, c := range n.obj {
		out[k] = c.value()
	}
	return out
}

// lookup finds the node at a dotted path.
func (n *node) lookup(path []string) *node {
	for _, p := range path {
		if n == nil || n.obj == nil {
			return nil
		}
		n = n.obj[p]
	}
	return n
}

// toGeneric turns a conf into plain JSON values (maps, lists, scalars).
func toGeneric(conf any) (any, error) {
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// newConf returns a new value of the conf type of kind.
func newConf(k resource.Kind) any {
	switch k {
	case resource.KindMeshTimeout:
		return &resource.MeshTimeoutConf{}
	case resource.KindMeshRetry:
		return &resource.MeshRetryConf{}
	case resource.KindMeshCircuitBreaker:
		return &resource.MeshCircuitBreakerConf{}
	case resource.KindMeshHealthCheck:
		return &resource.MeshHealthCheckConf{}
	case resource.KindMeshLoadBalancingStrategy:
		return &resource.MeshLoadBalancingStrategyConf{}
	case resource.KindMeshAccessLog:
		return &resource.MeshAccessLogConf{}
	case resource.KindMeshTCPRoute:
		return &resource.TCPRouteConf{}
	case resource.KindMeshHTTPRoute:
		return &resource.HTTPRouteConf{}
	}
	panic("policy: no conf type for " + string(k))
}

// confOrigin is one conf to merge, as plain JSON, and where it comes from.
type confOrigin struct {
	generic any
	origin  Origin
}

// mergeConfs merges the confs of es (lowest precedence first) into kind's
// conf type; nil when es is empty. Callers hold r.mu.
func (r *Resolver) mergeConfs(k resource.Kind, es []entry) *Conf {
	if len(es) == 0 {
		return nil
	}
	key := entriesKey(string(k), es)
	if c, ok := r.confs[key]; ok {
		return c
	}
	cs := make([]confOrigin, len(es))
	for i, e := range es {
		cs[i] = confOrigin{generic: r.genericOf(e), origin: originOf(e.policy, e.index)}
	}
	c := mergeList(k, cs)
	for _, x := range cs {
		c.Origins = append(c.Origins, x.origin)
	}
	r.confs[key] = c
	return c
}

// genericOf is e's conf as plain JSON, converted once.
func (r *Resolver) genericOf(e entry) any {
	id := [2]int{e.ord, e.index}
	if g, ok := r.generic[id]; ok {
		return g
	}
	g := mustGeneric(e.conf)
	r.generic[id] = g
	return g
}

// mustGeneric converts a conf of a validated resource, whose types marshal
// losslessly; an error is a programming error.
func mustGeneric(conf any) any {
	g, err := toGeneric(conf)
	if err != nil {
		panic(fmt.Sprintf("policy: %T does not marshal: %v", conf, err))
	}
	return g
}

// mergeList merges confs into a Conf of kind k. The inputs come from
// validated resources whose types marshal and unmarshal losslessly, so an
// error here is a programming error.
func mergeList(k resource.Kind, cs []confOrigin) *Conf {
	var root *node
	for _, c := range cs {
		root = mergePatch(root, c.generic, c.origin)
	}
	merged := newConf(k)
	b, err := json.Marshal(root.value())
	if err != nil {
		panic(fmt.Sprintf("policy: merged %s conf does not marshal: %v", k, err))
	}
	if err := json.Unmarshal(b, merged); err != nil {
		panic(fmt.Sprintf("policy: merged %s conf does not unmarshal: %v", k, err))
	}
	fields, err := leaves(merged, root)
	if err != nil {
		panic(fmt.Sprintf("policy: merged %s conf: %v", k, err))
	}
	return &Conf{Kind: k, Value: merged, Fields: fields}
}

// leaves lists the leaf values of conf in its own field order (the order
// of the Go struct, which is Kuma's), with the origin recorded in root.
// An empty object (tcp: {}) is a leaf: it switches something on.
func leaves(conf any, root *node) ([]Field, error) {
	b, err := marshal(conf)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out []Field
	var walk func(path []string) error
	walk = func(path []string) error {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		if delim, ok := tok.(json.Delim); ok && delim == '{' {
			empty := true
			for d.More() {
				empty = false
				kt, err := d.Token()
				if err != nil {
					return err
				}
				if err := walk(append(path, kt.(string))); err != nil {
					return err
				}
			}
			if _, err := d.Token(); err != nil { // '}'
				return err
			}
			if empty && len(path) > 0 {
				out = append(out, field(path, map[string]any{}, root))
			}
			return nil
		}
		var v any
		if delim, ok := tok.(json.Delim); ok && delim == '[' {
			// A list is one value, kept as its JSON (in the conf's field order).
			start := d.InputOffset() - 1
			for d.More() {
				var skip json.RawMessage
				if err := d.Decode(&skip); err != nil {
					return err
				}
			}
			if _, err := d.Token(); err != nil { // ']'
				return err
			}
			v = json.RawMessage(b[start:d.InputOffset()])
		} else {
			v = tok
		}
		out = append(out, field(path, v, root))
		return nil
	}
	if err := walk(nil); err != nil {
		return nil, err
	}
	return out, nil
}

func field(path []string, v any, root *node) Field {
	f := Field{Path: strings.Join(path, "."), Value: v}
	if n := root.lookup(path); n != nil {
		f.Origin = n.origin
	}
	return f
}

// FormatValue renders a field value for people: strings bare, the rest as JSON.
func FormatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	}
	if reflect.TypeOf(v).Kind() == reflect.Map && reflect.ValueOf(v).Len() == 0 {
		return "{}"
	}
	b, err := marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// marshal is json.Marshal without HTML escaping: values are shown to people
// ("->" in an access-log format stays "->").
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
