package validate

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/meshext/meshext/controller/resource"
)

// TemplateData is what a hostname template sees (Kuma's names).
type TemplateData struct {
	Name        string
	DisplayName string
	Namespace   string
	Mesh        string
	Zone        string
}

// stubData is what Kuma 2.14 renders a template with at creation time.
var stubData = TemplateData{Name: "name", DisplayName: "displayname", Namespace: "namespace", Mesh: "mesh", Zone: "zone"}

// maxRenderedLength bounds a rendering; a hostname is at most 253 bytes.
const maxRenderedLength = 4096

var errTooLong = errors.New("rendered hostname is longer than 4096 bytes")

// ParseTemplate parses a hostname template with Kuma's only function,
// label "key", answered by label (nil: every label is missing, the error Kuma
// gives being "label <key> not found"). It refuses range, template and block
// actions: a hostname needs no loops, and they are how a template could run
// for a very long time.
func ParseTemplate(text string, label func(key string) (string, error)) (*template.Template, error) {
	if label == nil {
		label = func(key string) (string, error) { return "", fmt.Errorf("label %s not found", key) }
	}
	t, err := template.New("").Funcs(template.FuncMap{"label": label}).Parse(text)
	if err != nil {
		return nil, err
	}
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		if bad := forbiddenAction(tt.Tree.Root); bad != "" {
			return nil, fmt.Errorf("template: %s actions are not supported in hostname templates", bad)
		}
	}
	return t, nil
}

// RenderTemplate executes t with data, with a bound on the output size.
func RenderTemplate(t *template.Template, data TemplateData) (string, error) {
	var b cappedBuilder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

type cappedBuilder struct{ strings.Builder }

func (c *cappedBuilder) Write(p []byte) (int, error) {
	if c.Len()+len(p) > maxRenderedLength {
		return 0, errTooLong
	}
	return c.Builder.Write(p)
}

func forbiddenAction(n parse.Node) string {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Nodes {
			if bad := forbiddenAction(c); bad != "" {
				return bad
			}
		}
	case *parse.RangeNode:
		return "range"
	case *parse.TemplateNode:
		return "template"
	case *parse.IfNode:
		return firstForbidden(n.List, n.ElseList)
	case *parse.WithNode:
		return firstForbidden(n.List, n.ElseList)
	}
	return ""
}

func firstForbidden(lists ...*parse.ListNode) string {
	for _, l := range lists {
		if l != nil {
			if bad := forbiddenAction(l); bad != "" {
				return bad
			}
		}
	}
	return ""
}

func hostnameGenerator(v *violations, r *resource.HostnameGenerator) {
	sel := r.Spec.Selector
	n := 0
	for _, s := range []*resource.LabelSelector{sel.MeshService, sel.MeshExternalService, sel.MeshMultiZoneService} {
		if s != nil {
			n++
		}
	}
	if n != 1 {
		v.add("spec.selector", "exact one selector (meshService, meshExternalService) must be defined")
	}

	const at = "spec.template"
	if r.Spec.Template == "" {
		v.add(at, messageNotEmpty)
	} else {
		// Kuma 2.14 renders with stub values, label returning "label".
		t, err := ParseTemplate(r.Spec.Template, func(string) (string, error) { return "label", nil })
		if err != nil {
			v.add(at, "couldn't parse template: %v", err)
		} else {
			out, err := RenderTemplate(t, stubData)
			switch {
			case err != nil:
				v.add(at, "couldn't render template with stub values: %v", err)
			default:
				if errs := dns1123Subdomain(out); len(errs) > 0 {
					v.add(at, "template renders to %q which is not a valid DNS name: %s", out, strings.Join(errs, ", "))
				}
			}
		}
	}

	if r.Spec.Extension != nil && r.Spec.Extension.Type == "" {
		v.add("spec.extension.type", messageNotEmpty)
	}
}
