package resource

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unique"

	"go.yaml.in/yaml/v3"
)

const (
	kumaAPIVersion = "kuma.io/v1alpha1"
	k8sCoreVersion = "v1"
)

var lineRE = regexp.MustCompile(`line (\d+)`)

// ParseBytes reads every YAML document in data. It returns the resources it
// could read and one error per problem; a broken document does not hide the
// good ones before it.
//
// Resources do not keep their YAML node trees (see docSource): memory stays
// a small multiple of the input, and a tree is rebuilt from the document's
// text only when an error needs a line.
func ParseBytes(file string, data []byte) ([]Object, []*FieldError) {
	if objs, errs, ok := parseFast(file, data); ok {
		return objs, errs
	}
	return parseDecoder(file, data)
}

// parseDecoder is ParseBytes through the YAML decoder, for any input.
func parseDecoder(file string, data []byte) ([]Object, []*FieldError) {
	r := newDocReader(file, data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for idx := 0; ; idx++ {
		doc := new(yaml.Node)
		err := dec.Decode(doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.errs = append(r.errs, &FieldError{File: file, Line: lineFromYAMLError(err.Error(), 1), Message: "invalid YAML: " + trimYAMLError(err.Error())})
			break // the decoder cannot resynchronise after a syntax error
		}
		r.add(idx, doc, r.lines.offset(doc.Line), true)
	}
	return r.finish()
}

// parseFast is ParseBytes for files fastYAML reads whole; ok is false
// (and what it read is dropped) when it gives up anywhere in the file.
func parseFast(file string, data []byte) ([]Object, []*FieldError, bool) {
	if bytes.IndexByte(data, '#') >= 0 {
		return nil, nil, false // a comment, most likely: fastYAML would give up there, after reading up to it
	}
	p := newFastYAML(data)
	r := newDocReader(file, data)
	// Resources keep their document's text, not its tree (see docSource),
	// so a document's nodes can be the next one's.
	p.reuse = !r.keepTrees
	for idx := 0; ; idx++ {
		doc, offset, ok := p.document()
		if !ok {
			return nil, nil, false
		}
		if doc == nil {
			break
		}
		// Such trees have no aliases: the alias budget has nothing to count.
		r.add(idx, doc, offset, false)
	}
	objs, errs := r.finish()
	return objs, errs, true
}

// docReader turns a file's documents, in order, into resources and problems.
type docReader struct {
	file      string
	data      []byte
	keepTrees bool
	lines     *lineCursor
	aliases   aliasBudget
	objs      []Object
	errs      []*FieldError
	// A document's text runs from its first line to the next document's.
	open   *docSource
	openAt int
}

func newDocReader(file string, data []byte) *docReader {
	return &docReader{file: file, data: data, keepTrees: utf16(data), lines: newLineCursor(data)}
}

// add reads document idx, whose first line starts at offset in the file.
func (r *docReader) add(idx int, doc *yaml.Node, offset int, checkAliases bool) {
	if r.open != nil {
		r.open.text = r.data[r.openAt:offset]
		r.open = nil
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return // empty document, e.g. a trailing ---
	}
	if checkAliases {
		if why := r.aliases.spend(doc); why != "" {
			r.errs = append(r.errs, &FieldError{File: r.file, Line: doc.Content[0].Line, Message: why})
			return
		}
	}
	obj, derrs := parseDocument(r.file, idx, doc)
	r.errs = append(r.errs, derrs...)
	if obj == nil {
		return
	}
	r.objs = append(r.objs, obj)
	if !r.keepTrees {
		m := obj.GetMeta()
		r.open, r.openAt = &docSource{line: doc.Line}, offset
		m.src, m.root = r.open, nil
	}
}

func (r *docReader) finish() ([]Object, []*FieldError) {
	if r.open != nil {
		r.open.text = r.data[r.openAt:]
	}
	return r.objs, r.errs
}

func trimYAMLError(s string) string {
	s = strings.TrimPrefix(s, "yaml: ")
	return lineRE.ReplaceAllString(strings.TrimPrefix(s, "unmarshal errors:\n  "), "line $1")
}

func lineFromYAMLError(s string, def int) int {
	if m := lineRE.FindStringSubmatch(s); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return n
		}
	}
	return def
}

func scalar(m *yaml.Node, key string) (string, *yaml.Node) {
	n, _ := child(m, pathStep{key: key, index: -1})
	if n == nil || n.Kind != yaml.ScalarNode {
		return "", n
	}
	return n.Value, n
}

func parseDocument(file string, idx int, doc *yaml.Node) (Object, []*FieldError) {
	root := doc.Content[0]
	fail := func(line int, format string, args ...any) []*FieldError {
		return []*FieldError{{File: file, Line: line, Message: fmt.Sprintf(format, args...)}}
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "document %d is not a mapping: expected a resource with apiVersion/kind or type", idx+1)
	}
	meta := Meta{Source: Source{File: file, Line: root.Line, Index: idx}, root: doc}
	var body *yaml.Node   // the node decoded into the typed spec
	var labels *yaml.Node // the labels mapping, if any

	// YAML keys must be unique; decoders disagree on which one wins, so a
	// duplicate is an error wherever it is. One in the resource's identity
	// (kind, name, mesh) leaves no resource to attach it to.
	var dups []duplicateKey
	if hasDuplicateKeys(root) { // cheap: duplicateKeys builds every key's path
		dups = duplicateKeys(root, "", nil)
	}
	for _, d := range dups {
		if d.identity() {
			return nil, fail(d.line, "%s: mapping key %q already defined at line %d", joinPath(d.path, d.key), d.key, d.first)
		}
	}

	if apiVersion, avNode := scalar(root, "apiVersion"); avNode != nil {
		meta.Source.Style = StyleKubernetes
		kind, _ := scalar(root, "kind")
		meta.Kind = Kind(kind)
		if kind == "" {
			return nil, fail(root.Line, "kind: must be set")
		}
		md, _ := child(root, pathStep{key: "metadata", index: -1})
		if md == nil || md.Kind != yaml.MappingNode {
			return nil, fail(root.Line, "%s: metadata: must be set", kind)
		}
		meta.Name, _ = scalar(md, "name")
		meta.Namespace, _ = scalar(md, "namespace")
		meta.CreationTime, _ = scalar(md, "creationTimestamp")
		if ln, _ := child(md, pathStep{key: "labels", index: -1}); ln != nil {
			if err := decodeNode(ln, &meta.Labels); err != nil {
				return nil, fail(ln.Line, "%s %s: metadata.labels: %s", kind, meta.Name, trimYAMLError(err.Error()))
			}
			labels = ln
		}
		meta.nameField, meta.meshField = "metadata.name", `metadata.labels["kuma.io/mesh"]`
		meta.specPrefix = ""
		wantVersion := kumaAPIVersion
		if meta.Kind == KindSecret {
			wantVersion = k8sCoreVersion
		}
		if !knownKind(meta.Kind) {
			return nil, fail(root.Line, "unsupported kind %q (meshext reads %s)", kind, kindList())
		}
		if apiVersion != wantVersion {
			return nil, fail(avNode.Line, "%s %s: apiVersion: must be %q, got %q", kind, meta.Name, wantVersion, apiVersion)
		}
		if meta.Kind.MeshScoped() {
			meta.Mesh = meta.Labels[LabelMesh]
			if meta.Mesh == "" {
				meta.Mesh = DefaultMesh
			}
		}
		if meta.Kind == KindDataplane || meta.Kind == KindMesh || meta.Kind == KindZoneEgress {
			meta.specPrefix = "spec."
		}
		body, _ = child(root, pathStep{key: "spec", index: -1})
	} else {
		meta.Source.Style = StyleUniversal
		typ, tNode := scalar(root, "type")
		if tNode == nil {
			return nil, fail(root.Line, "resource has neither apiVersion/kind (Kubernetes style) nor type (universal style)")
		}
		meta.Kind = Kind(typ)
		if !knownKind(meta.Kind) {
			return nil, fail(tNode.Line, "unsupported type %q (meshext reads %s)", typ, kindList())
		}
		meta.Name, _ = scalar(root, "name")
		meta.Mesh, _ = scalar(root, "mesh")
		meta.CreationTime, _ = scalar(root, "creationTime")
		if ln, _ := child(root, pathStep{key: "labels", index: -1}); ln != nil {
			if err := decodeNode(ln, &meta.Labels); err != nil {
				return nil, fail(ln.Line, "%s %s: labels: %s", typ, meta.Name, trimYAMLError(err.Error()))
			}
			labels = ln
		}
		meta.nameField, meta.meshField = "name", "mesh"
		if !meta.Kind.MeshScoped() {
			meta.Mesh = ""
		} else if meta.Mesh == "" {
			meta.Mesh = DefaultMesh
		}
		switch meta.Kind {
		case KindDataplane, KindMesh, KindSecret, KindZoneEgress:
			body = root // fields sit at the top level
		default:
			body, _ = child(root, pathStep{key: "spec", index: -1})
		}
	}
	if meta.Kind == KindMesh {
		meta.Mesh = meta.Name
	}
	if meta.Name == "" {
		return nil, []*FieldError{meta.Errorf("name", "must be set")}
	}
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}

	obj, errs := decodeBody(&meta, root, body)
	if labels != nil {
		// Label values are strings (Kuma's schema, and Kubernetes' labels).
		errs = append(errs, checkFields(&meta, labels, reflect.TypeOf(meta.Labels), "labels")...)
	}
	for _, d := range dups {
		errs = append(errs, &FieldError{File: file, Line: d.line, Kind: meta.Kind, Mesh: meta.Mesh, Name: meta.Name,
			Field: joinPath(d.path, d.key), Message: fmt.Sprintf("mapping key %q already defined at line %d", d.key, d.first)})
	}
	if obj != nil && len(errs) > 0 {
		obj.GetMeta().Malformed = true
	}
	return obj, errs
}

func knownKind(k Kind) bool {
	for _, kk := range Kinds {
		if kk == k {
			return true
		}
	}
	return false
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// decodeBody decodes the spec part into the typed resource and reports unknown fields.
func decodeBody(meta *Meta, root, body *yaml.Node) (Object, []*FieldError) {
	var errs []*FieldError
	decode := func(node *yaml.Node, into any, field string) {
		if node == nil {
			return
		}
		strict := checkFields(meta, node, reflect.TypeOf(into).Elem(), field)
		errs = append(errs, strict...)
		var reported map[int]bool
		if len(strict) > 0 {
			reported = map[int]bool{}
		}
		for _, e := range strict {
			reported[e.Line] = true
		}
		if err := decodeNode(node, into); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					line := lineFromYAMLError(e, node.Line)
					if reported[line] || strings.Contains(e, "already defined at line") {
						continue // said already, with the field's path (duplicates: duplicateKeys)
					}
					msg := strings.TrimSpace(lineRE.ReplaceAllString(e, ""))
					msg = strings.TrimPrefix(msg, ": ")
					errs = append(errs, &FieldError{File: meta.Source.File, Line: line,
						Kind: meta.Kind, Mesh: meta.Mesh, Name: meta.Name, Field: pathAtLine(node, field, line), Message: msg})
				}
				return
			}
			errs = append(errs, meta.Errorf(field, "%s", trimYAMLError(err.Error())))
		}
	}
	topKeys := map[string]bool{"status": true}
	if meta.Source.Style == StyleKubernetes {
		for _, k := range []string{"apiVersion", "kind", "metadata", "spec"} {
			topKeys[k] = true
		}
	} else {
		for _, k := range []string{"type", "name", "mesh", "labels", "creationTime", "modificationTime"} {
			topKeys[k] = true
		}
	}

	var obj Object
	// decodeSpec reads the `spec` of the kinds that keep everything there.
	decodeSpec := func(spec any) {
		if isNull(body) {
			// Also `spec:` with nothing after it, as a file cut short leaves it.
			errs = append(errs, meta.Errorf("spec", "must be set"))
		}
		decode(body, spec, "spec")
		topKeys["spec"] = true
	}
	switch meta.Kind {
	case KindMeshExternalService:
		r := &MeshExternalService{Meta: *meta}
		decodeSpec(&r.Spec)
		if body != nil && body.Kind == yaml.MappingNode {
			if m, _ := child(body, pathStep{key: "match", index: -1}); isNull(m) {
				// Kuma's schema (rest.yaml) requires it, with this message.
				errs = append(errs, meta.Errorf("spec.match", "in body is required"))
			}
		}
		r.Spec.applyDefaults()
		r.Spec.shareInlineData()
		obj = r
	case KindHostnameGenerator:
		r := &HostnameGenerator{Meta: *meta}
		decodeSpec(&r.Spec)
		obj = r
	case KindMeshTrafficPermission:
		r := &MeshTrafficPermission{Meta: *meta}
		decodeSpec(&r.Spec)
		obj = r
	case KindDataplane:
		r := &Dataplane{Meta: *meta}
		if meta.Source.Style == StyleKubernetes {
			topKeys["spec"] = true
			if body == nil {
				errs = append(errs, r.Errorf("networking", "must be set"))
			} else {
				// Unknown keys next to networking; decode checks inside it.
				errs = append(errs, checkFields(meta, body, reflect.TypeOf(struct {
					Networking any `yaml:"networking"`
				}{}), "")...)
				n, _ := child(body, pathStep{key: "networking", index: -1})
				if isNull(n) {
					errs = append(errs, r.Errorf("networking", "must be set"))
				}
				decode(n, &r.Networking, "networking")
			}
		} else {
			topKeys["networking"] = true
			n, _ := child(root, pathStep{key: "networking", index: -1})
			if isNull(n) {
				errs = append(errs, r.Errorf("networking", "must be set"))
			}
			decode(n, &r.Networking, "networking")
		}
		obj = r
	case KindMesh:
		r := &Mesh{Meta: *meta}
		if body != nil {
			n, _ := child(body, pathStep{key: "routing", index: -1})
			if n != nil {
				r.Routing = &MeshRouting{}
				decode(n, r.Routing, "routing")
			}
			if n, _ := child(body, pathStep{key: "mtls", index: -1}); n != nil {
				r.MTLS = &MeshMTLS{}
				decode(n, r.MTLS, "mtls")
			}
		}
		if body != nil {
			if n, _ := child(body, pathStep{key: "skipCreatingInitialPolicies", index: -1}); n != nil {
				decode(n, &r.SkipCreatingInitialPolicies, "skipCreatingInitialPolicies")
			}
		}
		topKeys = nil // a Mesh has many Kuma fields meshext does not use
		obj = r
	case KindZoneEgress:
		r := &ZoneEgress{Meta: *meta}
		if meta.Source.Style == StyleKubernetes {
			decodeSpec(&r.ZoneEgressSpec)
		} else {
			topKeys["zone"], topKeys["networking"] = true, true
			if n, _ := child(root, pathStep{key: "zone", index: -1}); n != nil {
				decode(n, &r.Zone, "zone")
			}
			if n, _ := child(root, pathStep{key: "networking", index: -1}); n != nil {
				decode(n, &r.Networking, "networking")
			}
		}
		obj = r
	case KindSecret:
		r := &Secret{Meta: *meta}
		var enc string
		if meta.Source.Style == StyleKubernetes {
			typ, _ := scalar(root, "type")
			topKeys["type"], topKeys["data"] = true, true
			if typ != SecretK8sType {
				errs = append(errs, &FieldError{File: meta.Source.File, Line: root.Line, Kind: meta.Kind, Mesh: meta.Mesh, Name: meta.Name,
					Field: "type", Message: fmt.Sprintf("must be %q, got %q", SecretK8sType, typ)})
			}
			if meta.Namespace != SystemNamespace {
				errs = append(errs, r.Errorf("namespace", "a Secret must be in namespace %q", SystemNamespace))
			}
			d, _ := child(root, pathStep{key: "data", index: -1})
			enc, _ = scalar(d, "value")
			if d == nil || enc == "" {
				errs = append(errs, r.Errorf("data.value", "must be set (base64)"))
			}
		} else {
			topKeys["data"] = true
			enc, _ = scalar(root, "data")
			if enc == "" {
				errs = append(errs, r.Errorf("data", "must be set (base64)"))
			}
		}
		if enc != "" {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
			if err != nil {
				errs = append(errs, r.Errorf("data", "not valid base64: %v", err))
			}
			r.Data = b
		}
		obj = r
	default:
		// The targetRef policy kinds (policy.go) keep everything under spec.
		if p, spec := newPolicy(meta); p != nil {
			decodeSpec(spec)
			applyPolicyDefaults(p)
			obj = p
		}
	}
	if topKeys != nil {
		for i := 0; i+1 < len(root.Content); i += 2 {
			k := root.Content[i]
			if !topKeys[k.Value] {
				errs = append(errs, &FieldError{File: meta.Source.File, Line: k.Line, Kind: meta.Kind, Mesh: meta.Mesh, Name: meta.Name,
					Field: k.Value, Message: "unknown field"})
			}
		}
	}
	return obj, errs
}

// checkFields reports mapping keys that have no field in t, so that a typo
// such as `protocl` is an error instead of a silently ignored line.
func checkFields(meta *Meta, node *yaml.Node, t reflect.Type, path string) []*FieldError {
	if fieldsOK(node, t) {
		return nil // the usual case, without building every field's path
	}
	return checkFieldsAt(meta, node, t, path)
}

// fieldsOK reports whether checkFieldsAt finds nothing to report.
func fieldsOK(node *yaml.Node, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return true
		}
		sf := fieldsOf(t)
		for i := 0; i+1 < len(node.Content); i += 2 {
			ft, ok := sf.fields[node.Content[i].Value]
			if !ok {
				if !sf.inline {
					return false
				}
				continue
			}
			if !fieldsOK(node.Content[i+1], ft) {
				return false
			}
		}
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			return true
		}
		for _, item := range node.Content {
			if !fieldsOK(item, t.Elem()) {
				return false
			}
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return true
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			if !fieldsOK(node.Content[i+1], t.Elem()) {
				return false
			}
		}
	default:
		if want, _ := scalarMismatch(node, t); want != "" {
			return false
		}
	}
	return true
}

// structFields is a struct type's YAML keys and their field types.
type structFields struct {
	fields map[string]reflect.Type
	inline bool // a field takes the other keys
}

var structFieldsCache sync.Map // reflect.Type → *structFields

// fieldsOf returns t's keys, computed once per type.
func fieldsOf(t reflect.Type) *structFields {
	if sf, ok := structFieldsCache.Load(t); ok {
		return sf.(*structFields)
	}
	sf := &structFields{fields: map[string]reflect.Type{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			sf.inline = true
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		sf.fields[name] = f.Type
	}
	structFieldsCache.Store(t, sf)
	return sf
}

// checkFieldsAt is checkFields, with each problem's line and path.
func checkFieldsAt(meta *Meta, node *yaml.Node, t reflect.Type, path string) []*FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	var errs []*FieldError
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return nil // the decoder reports the type mismatch
		}
		sf := fieldsOf(t)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			sub := joinPath(path, k.Value)
			ft, ok := sf.fields[k.Value]
			if !ok {
				if !sf.inline {
					errs = append(errs, &FieldError{File: meta.Source.File, Line: k.Line, Kind: meta.Kind, Mesh: meta.Mesh, Name: meta.Name,
						Field: sub, Message: "unknown field"})
				}
				continue
			}
			errs = append(errs, checkFieldsAt(meta, v, ft, sub)...)
		}
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range node.Content {
			errs = append(errs, checkFieldsAt(meta, item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			errs = append(errs, checkFieldsAt(meta, node.Content[i+1], t.Elem(), joinPath(path, node.Content[i].Value))...)
		}
	default:
		if want, got := scalarMismatch(node, t); want != "" {
			errs = append(errs, &FieldError{File: meta.Source.File, Line: node.Line, Kind: meta.Kind, Mesh: meta.Mesh, Name: meta.Name,
				Field: path, Message: fmt.Sprintf("in body must be of type %s: %q", want, got)})
		}
	}
	return errs
}

// scalarMismatch returns the JSON schema types (wanted, given) when a scalar
// does not have the type of the field it goes into, as Kuma's schema
// validation reports it: a fraction or exponent (80.5, 1e3) where an integer
// belongs, which the YAML decoder would silently truncate, or a number or
// boolean where a string belongs. Nulls and what the decoder rejects itself
// ("80" into an integer) are left to it.
func scalarMismatch(node *yaml.Node, t reflect.Type) (want, got string) {
	if node.Kind != yaml.ScalarNode {
		return "", ""
	}
	tag := node.ShortTag()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if tag == "!!float" {
			return "integer", "number"
		}
	case reflect.String:
		switch tag {
		case "!!int":
			return "string", "integer"
		case "!!float":
			return "string", "number"
		case "!!bool":
			return "string", "boolean"
		}
	}
	return "", ""
}

// isNull reports a missing node or an explicit or empty null (`spec:`).
func isNull(n *yaml.Node) bool {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// duplicateKey is a mapping key given twice.
type duplicateKey struct {
	path        string // of the mapping holding the key
	key         string
	line, first int
}

// identity reports a duplicate among the keys that say which resource a
// document is (kind, name, mesh): with it there is no telling which resource
// the document is.
func (d duplicateKey) identity() bool {
	switch d.path {
	case "":
		switch d.key {
		case "apiVersion", "kind", "type", "name", "mesh", "metadata", "labels":
			return true
		}
	case "metadata":
		return d.key == "name" || d.key == "namespace" || d.key == "labels"
	case "labels", "metadata.labels":
		return d.key == LabelMesh
	}
	return false
}

// hasDuplicateKeys reports whether duplicateKeys would find a repeated key.
func hasDuplicateKeys(node *yaml.Node) bool {
	switch node.Kind {
	case yaml.MappingNode:
		c := node.Content
		var seen map[string]bool // only for big mappings: small ones compare pairs
		for i := 0; i+1 < len(c); i += 2 {
			if k := c[i]; k.Kind == yaml.ScalarNode {
				if len(c) > 32 {
					if seen == nil {
						seen = make(map[string]bool, len(c)/2)
					}
					if seen[k.Value] {
						return true
					}
					seen[k.Value] = true
				} else {
					for j := 0; j < i; j += 2 {
						if c[j].Kind == yaml.ScalarNode && c[j].Value == k.Value {
							return true
						}
					}
				}
			}
			if hasDuplicateKeys(c[i+1]) {
				return true
			}
		}
	case yaml.SequenceNode:
		for _, item := range node.Content {
			if hasDuplicateKeys(item) {
				return true
			}
		}
	}
	return false
}

// duplicateKeys finds every repeated scalar key in the mappings of the tree
// under node, and takes the repeats out of the tree so that decoding goes on
// with the first (the resource is rejected anyway; this keeps its other
// errors accurate). Aliases are not followed: what they point to is checked
// where it is defined, so the walk stays linear however often it is used.
func duplicateKeys(node *yaml.Node, path string, out []duplicateKey) []duplicateKey {
	switch node.Kind {
	case yaml.MappingNode:
		var seen map[string]int
		kept := node.Content[:0]
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k.Kind == yaml.ScalarNode {
				if seen == nil {
					seen = make(map[string]int, len(node.Content)/2)
				}
				if first, dup := seen[k.Value]; dup {
					out = append(out, duplicateKey{path: path, key: k.Value, line: k.Line, first: first})
					continue
				}
				seen[k.Value] = k.Line
			}
			kept = append(kept, k, v)
			out = duplicateKeys(v, joinPath(path, k.Value), out)
		}
		node.Content = kept
	case yaml.SequenceNode:
		for i, item := range node.Content {
			out = duplicateKeys(item, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	if strings.ContainsAny(key, "./") {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	return path + "." + key
}

// shareInlineData keeps one copy of each inline certificate text in the
// process: many services trust the same CA, and 10k copies of one PEM are
// megabytes that live as long as the resources. Keys are not shared: a
// private key is nobody else's.
func (s *MeshExternalServiceSpec) shareInlineData() {
	if s.TLS == nil || s.TLS.Verification == nil {
		return
	}
	v := s.TLS.Verification
	for _, d := range []*DataSource{v.CACert, v.ClientCert} {
		if d == nil {
			continue
		}
		for _, t := range []*string{d.Inline, d.InlineString} {
			if t != nil {
				*t = unique.Make(*t).Value()
			}
		}
	}
}

// applyDefaults fills in Kuma's schema defaults, as Kuma does before validation.
func (s *MeshExternalServiceSpec) applyDefaults() {
	if s.Match.Type == "" {
		s.Match.Type = MatchTypeHostnameGenerator
	}
	if s.Match.Protocol == "" {
		s.Match.Protocol = ProtocolTCP
	}
	if s.TLS != nil {
		if s.TLS.Version == nil {
			s.TLS.Version = &TLSVersion{}
		}
		if s.TLS.Version.Min == "" {
			s.TLS.Version.Min = TLSAuto
		}
		if s.TLS.Version.Max == "" {
			s.TLS.Version.Max = TLSAuto
		}
		if s.TLS.Verification == nil {
			s.TLS.Verification = &Verification{}
		}
		if s.TLS.Verification.Mode == "" {
			s.TLS.Verification.Mode = ModeSecured
		}
		for i := range s.TLS.Verification.SubjectAltNames {
			if s.TLS.Verification.SubjectAltNames[i].Type == "" {
				s.TLS.Verification.SubjectAltNames[i].Type = SANExact
			}
		}
	}
}

// sortObjects orders resources by kind, mesh and name for stable output.
func sortObjects(objs []Object) {
	rank := map[Kind]int{}
	for i, k := range Kinds {
		rank[k] = i
	}
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i].GetMeta(), objs[j].GetMeta()
		if rank[a.Kind] != rank[b.Kind] {
			return rank[a.Kind] < rank[b.Kind]
		}
		if a.Mesh != b.Mesh {
			return a.Mesh < b.Mesh
		}
		return a.Name < b.Name
	})
}

// pathAtLine finds the path of the value that starts on line, for errors the
// YAML decoder reports by line only.
func pathAtLine(node *yaml.Node, path string, line int) string {
	switch node.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			sub := joinPath(path, k.Value)
			if v.Line == line && (v.Kind == yaml.ScalarNode || k.Line == line) {
				if v.Kind == yaml.ScalarNode {
					return sub
				}
			}
			if p := pathAtLine(v, sub, line); p != "" && p != sub {
				return p
			}
			if k.Line == line {
				return sub
			}
		}
	case yaml.SequenceNode:
		for i, item := range node.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			if p := pathAtLine(item, sub, line); p != "" && p != sub {
				return p
			}
			if item.Line == line && item.Kind == yaml.ScalarNode {
				return sub
			}
		}
	}
	return path
}
