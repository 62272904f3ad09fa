package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// Schema is the part of OpenAPI v3 (a CRD's structural schema) we write.
type Schema struct {
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Description          string             `json:"description,omitempty"`
	Enum                 []any              `json:"enum,omitempty"`
	Minimum              *int64             `json:"minimum,omitempty"`
	Maximum              *int64             `json:"maximum,omitempty"`
	MinLength            *int64             `json:"minLength,omitempty"`
	MaxLength            *int64             `json:"maxLength,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	MinItems             *int64             `json:"minItems,omitempty"`
	MaxItems             *int64             `json:"maxItems,omitempty"`
	Required             []string           `json:"required,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	PreserveUnknown      bool               `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string,omitempty"`
	ListType             string             `json:"x-kubernetes-list-type,omitempty"`
	ListMapKeys          []string           `json:"x-kubernetes-list-map-keys,omitempty"`
}

var (
	durationType    = reflect.TypeOf(resource.Duration{})
	intOrStringType = reflect.TypeOf(resource.IntOrString{})
)

// schemaOf derives the schema of a Go type of controller/resource from its
// yaml tags (what the parser reads), then applies the constraints of
// constraints.go: the structure is meshext's, the bounds are Kuma's.
func schemaOf(t reflect.Type) *Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		return &Schema{Type: "string", Description: "A duration such as \"5s\" or \"1h30m\"."}
	case intOrStringType:
		return &Schema{IntOrString: true}
	}
	switch t.Kind() {
	case reflect.String:
		return &Schema{Type: "string"}
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.Int, reflect.Int64:
		return &Schema{Type: "integer", Format: "int64"}
	case reflect.Int32:
		return &Schema{Type: "integer", Format: "int32"}
	case reflect.Uint32:
		return &Schema{Type: "integer", Format: "int64", Minimum: ptr(0), Maximum: ptr(1<<32 - 1)}
	case reflect.Float64, reflect.Float32:
		return &Schema{Type: "number"}
	case reflect.Interface:
		// Kept as written; meshext's validator decides (or refuses it by name).
		return &Schema{PreserveUnknown: true}
	case reflect.Slice:
		return &Schema{Type: "array", Items: schemaOf(t.Elem())}
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return &Schema{Type: "object", PreserveUnknown: true}
		}
		return &Schema{Type: "object", AdditionalProperties: schemaOf(t.Elem())}
	case reflect.Struct:
		s := &Schema{Type: "object"}
		addFields(s, t)
		applyConstraints(s, t)
		return s
	}
	panic(fmt.Sprintf("crdgen: no schema for %s", t))
}

// addFields adds t's fields as properties of s; an inline map keeps the
// fields meshext does not read (Kuma's that meshext accepts and ignores).
func addFields(s *Schema, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			if f.Type.Kind() == reflect.Map {
				s.PreserveUnknown = true
			} else {
				addFields(s, f.Type)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if s.Properties == nil {
			s.Properties = map[string]*Schema{}
		}
		s.Properties[name] = schemaOf(f.Type)
	}
}

func ptr(v int64) *int64 { return &v }
