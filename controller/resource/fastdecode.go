package resource

import (
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// decodeNode is node.Decode(into), into a pointer to a zero value. The
// shapes resources usually have (mappings of strings, decimal integers,
// booleans, lists and nested structs) are decoded by hand, without the YAML
// decoder's reflective walk (a third of parsing a document); anything else
// — nulls, aliases, merges, other tags, types with their own unmarshalling,
// a value the decoder would convert or refuse — starts over with
// node.Decode, so the result and errors are always the decoder's.
func decodeNode(node *yaml.Node, into any) error {
	v := reflect.ValueOf(into).Elem()
	if fastDecode(node, v, planOf(v.Type())) {
		return nil
	}
	v.SetZero()
	return node.Decode(into)
}

// decodePlan is how fastDecode fills a type. Its kind is reflect.Invalid
// for a type left to the decoder: a value of it sends the whole decode
// there, while values without one (a spec without its rarely used
// extension, say) are still decoded by hand.
type decodePlan struct {
	kind   reflect.Kind
	elem   *decodePlan          // pointer, slice, map
	fields map[string]fieldPlan // struct, by YAML key
}

type fieldPlan struct {
	index int
	plan  *decodePlan
}

var (
	decodePlans sync.Map // reflect.Type → *decodePlan
	plansMu     sync.Mutex
	nodeType    = reflect.TypeOf(yaml.Node{})
)

func planOf(t reflect.Type) *decodePlan {
	if p, ok := decodePlans.Load(t); ok {
		return p.(*decodePlan)
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	building := map[reflect.Type]*decodePlan{}
	p := buildPlan(t, building)
	for bt, bp := range building {
		decodePlans.LoadOrStore(bt, bp)
	}
	return p
}

// buildPlan returns t's plan; building holds the plans being built, which
// recursive types refer to.
func buildPlan(t reflect.Type, building map[reflect.Type]*decodePlan) *decodePlan {
	if p, ok := building[t]; ok {
		return p
	}
	if p, ok := decodePlans.Load(t); ok {
		return p.(*decodePlan)
	}
	p := &decodePlan{kind: t.Kind()}
	building[t] = p
	unsupported := func() *decodePlan {
		p.kind, p.elem, p.fields = reflect.Invalid, nil, nil
		return p
	}
	if t == nodeType || t.Name() == "Duration" && t.PkgPath() == "time" {
		return unsupported() // the decoder treats these specially
	}
	pt := reflect.PointerTo(t)
	for _, m := range []string{"UnmarshalYAML", "UnmarshalText"} {
		if _, ok := pt.MethodByName(m); ok {
			return unsupported()
		}
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	case reflect.Pointer, reflect.Slice:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return unsupported() // []byte: the decoder reads base64 and strings into it
		}
		p.elem = buildPlan(t.Elem(), building)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return unsupported()
		}
		p.elem = buildPlan(t.Elem(), building)
	case reflect.Struct:
		p.fields = map[string]fieldPlan{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				return unsupported()
			}
			if !f.IsExported() {
				continue // the decoder skips them too
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if opts != "" && opts != "omitempty" {
				return unsupported() // inline, flow: the decoder's business
			}
			if name == "" {
				name = lowerASCII(f.Name)
			}
			if _, dup := p.fields[name]; dup || name == "" {
				return unsupported()
			}
			p.fields[name] = fieldPlan{index: i, plan: buildPlan(f.Type, building)}
		}
	default:
		return unsupported() // interfaces, floats, arrays...
	}
	return p
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		} else if c >= 0x80 {
			return "" // not a name fastDecode can be sure of: the type is left to the decoder
		}
	}
	return string(b)
}

// fastDecode fills v from n as the decoder would, or returns false.
func fastDecode(n *yaml.Node, v reflect.Value, p *decodePlan) bool {
	switch p.kind {
	case reflect.Invalid:
		return false
	case reflect.Pointer:
		if n.Kind == yaml.AliasNode || n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return false
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return fastDecode(n, v.Elem(), p.elem)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode || !uniqueKeys(n) {
			return false
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				return false
			}
			f, ok := p.fields[k.Value]
			if !ok {
				continue // the decoder ignores it too; checkFields reports it
			}
			if !fastDecode(n.Content[i+1], v.Field(f.index), f.plan) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return false
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if !fastDecode(item, s.Index(i), p.elem) {
				return false
			}
		}
		v.Set(s)
		return true
	case reflect.Map:
		if n.Kind != yaml.MappingNode || !uniqueKeys(n) {
			return false
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
		}
		kt, et := v.Type().Key(), v.Type().Elem()
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				return false
			}
			kv := reflect.ValueOf(k.Value).Convert(kt)
			e := reflect.New(et).Elem()
			if !fastDecode(n.Content[i+1], e, p.elem) {
				return false
			}
			v.SetMapIndex(kv, e)
		}
		return true
	}
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch p.kind {
	case reflect.String:
		if n.Tag != "!!str" {
			return false
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Tag != "!!bool" || n.Value != "true" && n.Value != "false" {
			return false
		}
		v.SetBool(n.Value == "true")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := decimal(n)
		if !ok || v.OverflowInt(i) {
			return false
		}
		v.SetInt(i)
	default: // unsigned
		i, ok := decimal(n)
		if !ok || i < 0 || v.OverflowUint(uint64(i)) {
			return false
		}
		v.SetUint(uint64(i))
	}
	return true
}

// uniqueKeys reports that no two keys of the mapping n are the same, which
// the decoder reports as an error (parseDocument has taken such repeats out).
func uniqueKeys(n *yaml.Node) bool {
	c := n.Content
	if len(c) > 32 {
		seen := make(map[string]bool, len(c)/2)
		for i := 0; i < len(c); i += 2 {
			if seen[c[i].Value] {
				return false
			}
			seen[c[i].Value] = true
		}
		return true
	}
	for i := 2; i < len(c); i += 2 {
		for j := 0; j < i; j += 2 {
			if c[i].Value == c[j].Value {
				return false
			}
		}
	}
	return true
}

// decimal reads an !!int scalar written in plain decimal (no sign but
// '-', no leading zero, no '_'), where the decoder's reading is the same.
func decimal(n *yaml.Node) (int64, bool) {
	s := n.Value
	if n.Tag != "!!int" || s == "" {
		return 0, false
	}
	d := s
	if d[0] == '-' {
		d = d[1:]
	}
	if d == "" || d[0] == '0' && len(d) > 1 {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.ParseInt(s, 10, 64)
	return i, err == nil
}
