package egress

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/meshext/meshext/plugin/core"
)

// jsonFields lists a struct type's JSON property names, following
// embedded structs the way encoding/json does.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// The documented schema must list exactly the Go types' fields.
func TestSchemaMatchesTypes(t *testing.T) {
	b, err := os.ReadFile("filterconfig.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]json.RawMessage) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	check := func(what string, got []string, typ reflect.Type) {
		want := jsonFields(typ)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: schema has %v, Go type %s has %v", what, got, typ, want)
		}
	}
	check("top level", keys(schema.Properties), reflect.TypeOf(FilterConfig{}))
	for def, typ := range map[string]reflect.Type{
		"identity":    reflect.TypeOf(core.Identity{}),
		"mesh":        reflect.TypeOf(core.Mesh{}),
		"service":     reflect.TypeOf(core.Service{}),
		"targetRef":   reflect.TypeOf(core.TargetRef{}),
		"policy":      reflect.TypeOf(core.Policy{}),
		"from":        reflect.TypeOf(core.From{}),
		"conf":        reflect.TypeOf(core.Conf{}),
		"rule":        reflect.TypeOf(core.Rule{}),
		"ruleConf":    reflect.TypeOf(core.RuleConf{}),
		"match":       reflect.TypeOf(core.Match{}),
		"stringMatch": reflect.TypeOf(core.StringMatch{}),
	} {
		d, ok := schema.Defs[def]
		if !ok {
			t.Errorf("schema lacks $defs/%s", def)
			continue
		}
		check("$defs/"+def, keys(d.Properties), typ)
	}
}
