package validate

import (
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// stubData is what Kuma 2.14 renders a template with at creation time.
var stubData = TemplateData{Name: "name", DisplayName: "displayname", Namespace: "namespace", Mesh: "mesh", Zone: "zone"}

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
		t, err := ParseTemplate(r.Spec.Template)
		if err != nil {
			v.add(at, "couldn't parse template: %v", err)
		} else {
			out, err := t.Render(stubData, func(string) (string, error) { return "label", nil })
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
