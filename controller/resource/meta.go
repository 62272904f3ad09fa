package resource

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Style is the document style a resource was written in.
type Style string

const (
	StyleKubernetes Style = "kubernetes"
	StyleUniversal  Style = "universal"
)

// NoLine is the line of a resource read from an object rather than a file
// (a Kubernetes object), and of its problems: Source.File then holds the
// object reference ("MeshExternalService kuma-system/mes-http"), which
// messages print in place of FILE:LINE.
const NoLine = -1

// Source says where a resource came from.
type Source struct {
	File  string `json:"file"`
	Line  int    `json:"line"`
	Index int    `json:"index"` // 0-based document index in the file
	Style Style  `json:"style"`
}

// Meta is what every resource has besides its spec.
type Meta struct {
	Kind      Kind              `json:"kind"`
	Name      string            `json:"name"`
	Mesh      string            `json:"mesh,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// CreationTime is metadata.creationTimestamp / creationTime when given (RFC 3339), else "".
	CreationTime string `json:"creationTime,omitempty"`
	Source       Source `json:"source"`
	// Malformed is set when the document had parse errors (unknown fields,
	// type mismatches, ...). Those errors are reported by Load; the resource is
	// kept so its file and line stay known, and validate.Validate leaves it out
	// of the valid set.
	Malformed bool `json:"malformed,omitempty"`

	// root is the document node while it is parsed, src its text after
	// (LineOf rebuilds the tree from it); specPrefix maps a model path (e.g.
	// "networking.address") to the document path for this style ("spec.networking.address").
	root       *yaml.Node
	src        *docSource
	specPrefix string
	nameField  string
	meshField  string
}

func (m *Meta) GetMeta() *Meta { return m }

// Where is the resource's place for messages: FILE:LINE, or its object reference.
func (s Source) Where() string { return where(s.File, s.Line) }

// Where is the place of field for messages: FILE:LINE, or the object reference.
func (m *Meta) Where(field string) string { return where(m.Source.File, m.LineOf(field)) }

func where(file string, line int) string {
	if line == NoLine {
		return printable(file)
	}
	return printable(file) + ":" + strconv.Itoa(line)
}

// Key identifies a resource: kind, mesh and name.
func (m *Meta) Key() string { return string(m.Kind) + " " + m.Mesh + "/" + m.Name }

// DisplayName is label kuma.io/display-name, else the name.
func (m *Meta) DisplayName() string {
	if v := m.Labels[LabelDisplayName]; v != "" {
		return v
	}
	return m.Name
}

// SelectedByProxyRef reports whether a {kind: Dataplane} targetRef with
// name, namespace and labels takes in the proxy m stands for (a
// Dataplane's or a ZoneEgress's resource): by labels when it has any, else
// by name (and namespace, when given); a ref with neither takes in every
// proxy. sectionName is not compared: meshext's proxies have one listener
// per purpose.
func (m *Meta) SelectedByProxyRef(name, namespace string, labels map[string]string) bool {
	if len(labels) > 0 {
		for k, v := range labels {
			if got, ok := m.Labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
	if namespace != "" && namespace != m.Namespace {
		return false
	}
	return name == "" || name == m.Name
}

// FieldError is one problem with one resource field, printed as
// FILE:LINE: KIND MESH/NAME: FIELD.PATH: message, or for a resource read
// from an object (Line NoLine) OBJECT-REFERENCE: FIELD.PATH: message.
type FieldError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Kind    Kind   `json:"kind,omitempty"`
	Mesh    string `json:"mesh,omitempty"`
	Name    string `json:"name,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(where(e.File, e.Line))
	b.WriteString(": ")
	// An object reference names the resource already.
	if e.Kind != "" && (e.Line != NoLine || e.File == "") {
		b.WriteString(string(e.Kind))
		b.WriteByte(' ')
		if e.Mesh != "" || e.Kind.MeshScoped() {
			b.WriteString(printable(e.Mesh))
			b.WriteByte('/')
		}
		b.WriteString(printable(e.Name))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// printable quotes s when it holds control characters or invalid UTF-8, so
// a hostile file or resource name cannot forge or break a log line.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// Errorf makes a FieldError for field (a model path such as
// "spec.endpoints[1].port" or "name") of this resource, with the line of the
// closest node that exists in the document.
func (m *Meta) Errorf(field, format string, args ...any) *FieldError {
	return &FieldError{
		File: m.Source.File, Line: m.LineOf(field),
		Kind: m.Kind, Mesh: m.Mesh, Name: m.Name,
		Field: field, Message: fmt.Sprintf(format, args...),
	}
}

// LineOf returns the line of the deepest existing node on the path of field.
// Paths use dots and [i] indexes; map keys with dots may be written as
// labels["kuma.io/origin"].
func (m *Meta) LineOf(field string) int {
	if m.Source.Line == NoLine {
		return NoLine
	}
	node := m.root
	if node == nil && m.src != nil {
		node = m.src.root()
	}
	if node == nil {
		return m.Source.Line
	}
	doc := m.docPath(field)
	line := node.Line
	if node.Kind == yaml.DocumentNode && len(node.Content) > 0 {
		line = node.Content[0].Line // the first key, not the "---" before it
	}
	for _, step := range splitPath(doc) {
		next, keyLine := child(node, step)
		if next == nil {
			if keyLine > 0 {
				line = keyLine
			}
			break
		}
		node = next
		line = keyLine
		if line == 0 {
			line = node.Line
		}
	}
	return line
}

// docPath turns a model path into the document's own path for this style.
func (m *Meta) docPath(field string) string {
	switch {
	case field == "name":
		return m.nameField
	case field == "mesh":
		return m.meshField
	case field == "labels" || strings.HasPrefix(field, "labels[") || strings.HasPrefix(field, "labels."):
		if m.Source.Style == StyleKubernetes {
			return "metadata." + field
		}
		return field
	case field == "namespace":
		return "metadata.namespace"
	}
	return m.specPrefix + field
}

type pathStep struct {
	key   string
	index int // -1 when key
}

func splitPath(p string) []pathStep {
	var steps []pathStep
	for len(p) > 0 {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return steps
			}
			inner := p[1:end]
			p = p[end+1:]
			if n, err := strconv.Atoi(inner); err == nil {
				steps = append(steps, pathStep{index: n})
			} else {
				steps = append(steps, pathStep{key: strings.Trim(inner, `"'`), index: -1})
			}
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			steps = append(steps, pathStep{key: p[:end], index: -1})
			p = p[end:]
		}
	}
	return steps
}

// child finds step in node; it returns the value node and the line of its key
// (for mappings) or item.
func child(node *yaml.Node, step pathStep) (*yaml.Node, int) {
	for node != nil && (node.Kind == yaml.DocumentNode || node.Kind == yaml.AliasNode) {
		if node.Kind == yaml.DocumentNode {
			if len(node.Content) == 0 {
				return nil, 0
			}
			node = node.Content[0]
		} else {
			node = node.Alias
		}
	}
	if node == nil {
		return nil, 0
	}
	if step.index >= 0 {
		if node.Kind == yaml.SequenceNode && step.index < len(node.Content) {
			return node.Content[step.index], node.Content[step.index].Line
		}
		return nil, 0
	}
	if node.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == step.key {
				return node.Content[i+1], node.Content[i].Line
			}
		}
	}
	return nil, 0
}
