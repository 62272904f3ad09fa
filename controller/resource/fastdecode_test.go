package resource

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// decodeTargets are the types the parser decodes into.
func decodeTargets() []reflect.Type {
	ts := []reflect.Type{
		reflect.TypeOf(MeshExternalServiceSpec{}), reflect.TypeOf(HostnameGeneratorSpec{}), reflect.TypeOf(MeshTrafficPermissionSpec{}),
		reflect.TypeOf(DataplaneNetworking{}), reflect.TypeOf(MeshRouting{}), reflect.TypeOf(MeshMTLS{}), reflect.TypeOf(ZoneEgressSpec{}),
		reflect.TypeOf(map[string]string{}), reflect.TypeOf(""), reflect.TypeOf(false), reflect.TypeOf(int64(0)), reflect.TypeOf(uint32(0)),
		reflect.TypeOf(int8(0)), reflect.TypeOf([]Endpoint{}), reflect.TypeOf(&TLS{}),
	}
	for k := range policyConstructors {
		_, spec := NewPolicy(k)
		ts = append(ts, reflect.TypeOf(spec).Elem())
	}
	return ts
}

// checkDecodeNode compares decodeNode with node.Decode on every node of
// every document of data, into every target type.
func checkDecodeNode(t *testing.T, data []byte) (fast int) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	targets := decodeTargets()
	for {
		doc := new(yaml.Node)
		err := dec.Decode(doc)
		if errors.Is(err, io.EOF) || err != nil {
			return fast
		}
		if _, expanded, cyclic := countNodes(doc); cyclic || expanded > 2000 {
			continue // aliases: decoding every node into every type would take long
		}
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			for _, typ := range targets {
				if scalarKind := typ.Kind() != reflect.Struct && typ.Kind() != reflect.Map && typ.Kind() != reflect.Slice &&
					typ.Kind() != reflect.Pointer; scalarKind != (n.Kind == yaml.ScalarNode) {
					continue // the decoder refuses it at once; fuzzing still mixes shapes inside
				}
				got, want := reflect.New(typ), reflect.New(typ)
				gerr := decodeNode(n, got.Interface())
				werr := n.Decode(want.Interface())
				if !reflect.DeepEqual(got.Interface(), want.Interface()) || (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
					t.Fatalf("%q: decoding line %d into %v: got %#v, %v; the decoder %#v, %v", data, n.Line, typ, got.Elem(), gerr, want.Elem(), werr)
				}
				if fastDecode(n, reflect.New(typ).Elem(), planOf(typ)) {
					fast++
				}
			}
			for _, c := range n.Content {
				walk(c)
			}
		}
		if len(doc.Content) > 0 {
			walk(doc.Content[0])
		}
	}
}

func TestDecodeNodeIsTheDecoders(t *testing.T) {
	inputs := append(append([]string{benchDocs(3)}, fastCases...), slowCases...)
	inputs = append(inputs,
		"spec:\n  match: {port: 0x50, protocol: 1}\n  endpoints: [{address: ~, port: 08}, {port: -1, priority: -1}, {port: 1_0}]\n",
		"a: {port: 99999999999999999999, priority: 4294967296, enabled: yes, x: True}\n",
		"a: {tls: {enabled: \"true\", version: null}, endpoints: [], labels: {a: 1, b: null}}\n",
		"a: &x {port: 1}\nb: *x\nc: {<<: *x, address: y}\n",
		"a: {timeout: 1s, port: !!str 80, address: !!binary aGk=}\n",
		"match: {port: 80}\nmatch: {port: 81}\n",
		"labels: {a: b, a: c}\n",
	)
	fast := 0
	for _, in := range inputs {
		fast += checkDecodeNode(t, []byte(in))
	}
	if fast == 0 {
		t.Fatal("decodeNode never decoded by hand")
	}
}

func FuzzDecodeNode(f *testing.F) {
	f.Add([]byte(benchDocs(1)))
	f.Add([]byte("spec:\n  match: {port: 0x50, protocol: 1}\n  endpoints: [{address: ~, port: 08}, {port: -1, priority: 1}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		checkDecodeNode(t, data)
	})
}
