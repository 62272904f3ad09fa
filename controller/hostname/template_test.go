package hostname

import (
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

func TestRender(t *testing.T) {
	k8s := Data{Name: "httpbin", DisplayName: "httpbin", Namespace: "kuma-system", Mesh: "default", Zone: "east",
		Labels: map[string]string{"team": "payments", "kuma.io/zone": "east", "upper": "Bad"}}
	cases := []struct {
		name, tmpl string
		data       Data
		want       string // hostname, or an error substring when wantErr
		wantErr    bool
	}{
		{"all variables", "{{ .Name }}.{{ .DisplayName }}.{{ .Namespace }}.{{ .Mesh }}.{{ .Zone }}", k8s, "httpbin.httpbin.kuma-system.default.east", false},
		{"seed template", "{{ .DisplayName }}.svc.meshext.local", k8s, "httpbin.svc.meshext.local", false},
		{"label function", `{{ label "team" }}.{{ .Name }}.local`, k8s, "payments.httpbin.local", false},
		{"missing label", `{{ label "owner" }}.local`, k8s, `label owner not found`, true},
		{"stub label", `{{ label "anything" }}.local`, StubData(), "label.local", false},
		{"stub values", "{{ .Name }}.{{ .DisplayName }}.{{ .Namespace }}.{{ .Mesh }}.{{ .Zone }}", StubData(), "name.displayname.namespace.mesh.zone", false},
		{"parse error", "{{ .Name ", k8s, `failed compiling gotemplate error=`, true},
		{"unknown field", "{{ .MESH }}.local", k8s, `pre evaluation of template with parameters failed with error=`, true},
		{"uppercase result", `{{ label "upper" }}.local`, k8s, `generated hostname "Bad.local" is not a valid DNS name: a lowercase RFC 1123 subdomain`, true},
		{"leading dot", ".{{ .Name }}", k8s, `generated hostname ".httpbin" is not a valid DNS name`, true},
		{"consecutive dots", "{{ .Name }}..local", k8s, `is not a valid DNS name`, true},
		{"underscore", "{{ .Name }}_x.local", k8s, `is not a valid DNS name`, true},
		{"empty namespace on universal", "{{ .Name }}.{{ .Namespace }}.local", Data{Name: "a", Labels: map[string]string{}}, `generated hostname "a..local"`, true},
		{"range refused", "{{ range 1000000000 }}a{{ end }}.local", k8s, `range is not supported in hostname templates`, true},
		{"huge label value", `{{ label "big" }}.local`, Data{Labels: map[string]string{"big": strings.Repeat("a", 1<<20)}}, `rendering needs more than 1024 bytes`, true},
		{"replace blow-up", `{{ replace "t" "tttttttttttttttt" (replace "t" "tttttttttttttttt" (replace "t" "tttttttttttttttt" .Name)) }}.local`, k8s, `rendering needs more than 1024 bytes`, true},
		{"printf refused", `{{ printf "%0999999d" 1 }}.local`, k8s, `printf\" is not allowed in hostname templates`, true},
		{"string functions", `{{ .Namespace | trimPrefix "kuma-" }}.{{ label "upper" | lower }}.local`, k8s, "system.bad.local", false},
		{"label over 63", strings.Repeat("a", 64) + ".local", k8s, `must be no more than 63 characters`, true},
		{"name over 253", strings.Repeat(strings.Repeat("a", 60)+".", 5) + "local", k8s, `must be no more than 253 characters`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Render(c.tmpl, c.data)
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, c.want)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestDataFor(t *testing.T) {
	objs, errs := resource.ParseBytes("t.yaml", []byte(`
apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: httpbin
  namespace: kuma-system
  labels:
    kuma.io/mesh: payments
    kuma.io/display-name: shown
spec:
  match: {port: 80}
  endpoints: [{address: httpbin.org, port: 80}]
---
type: MeshExternalService
name: uni
mesh: default
labels:
  kuma.io/zone: west
spec:
  match: {port: 80}
  endpoints: [{address: httpbin.org, port: 80}]
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	set := &resource.Set{}
	for _, o := range objs {
		set.Add(o)
	}
	set.ComputeLabels(resource.Options{Zone: "east"})
	k8s := DataFor(&set.MeshExternalServices[0].Meta, "east")
	if k8s.Name != "httpbin" || k8s.DisplayName != "shown" || k8s.Namespace != "kuma-system" || k8s.Mesh != "payments" || k8s.Zone != "east" {
		t.Errorf("kubernetes style: %+v", k8s)
	}
	uni := DataFor(&set.MeshExternalServices[1].Meta, "east")
	if uni.Name != "uni" || uni.DisplayName != "uni" || uni.Namespace != "" || uni.Mesh != "default" || uni.Zone != "west" {
		t.Errorf("universal style: %+v", uni)
	}
}
