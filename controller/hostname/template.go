// Package hostname renders HostnameGenerator templates for
// MeshExternalServices and resolves hostname collisions deterministically.
package hostname

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// Data is what a template sees: .Name .DisplayName .Namespace .Mesh .Zone,
// and the labels read by the `label "key"` function.
type Data struct {
	Name        string
	DisplayName string
	Namespace   string
	Mesh        string
	Zone        string
	Labels      map[string]string `json:"-"`
}

// DataFor builds the template data of a resource as a zone control plane
// does: .Zone is label kuma.io/zone, else localZone.
func DataFor(m *resource.Meta, localZone string) Data {
	zone := m.Labels[resource.LabelZone]
	if zone == "" {
		zone = localZone
	}
	return Data{
		Name:        m.Name,
		DisplayName: m.DisplayName(),
		Namespace:   m.Labels[resource.LabelNamespace],
		Mesh:        m.Mesh,
		Zone:        zone,
		Labels:      m.Labels,
	}
}

// StubData is what Kuma renders a template with when validating it.
func StubData() Data {
	return Data{Name: "name", DisplayName: "displayname", Namespace: "namespace", Mesh: "mesh", Zone: "zone", Labels: nil}
}

// Render executes the template text with d and checks that the result is a
// DNS-1123 subdomain. With d.Labels nil the `label` function returns "label"
// (stub rendering, as Kuma's validation does).
func Render(text string, d Data) (string, error) {
	c, err := compile(text)
	if err != nil {
		return "", err
	}
	return c.render(d)
}

// compiled is a parsed template in validate's restricted language (bounded
// work and memory per rendering); one compiled template must not render
// concurrently.
type compiled struct {
	t *validate.Template
}

func compile(text string) (*compiled, error) {
	t, err := validate.ParseTemplate(text)
	if err != nil {
		return nil, fmt.Errorf("failed compiling gotemplate error=%q", err.Error())
	}
	return &compiled{t: t}, nil
}

func (c *compiled) render(d Data) (string, error) {
	label := func(key string) (string, error) {
		if d.Labels == nil {
			return "label", nil // stub rendering
		}
		v, ok := d.Labels[key]
		if !ok {
			return "", fmt.Errorf("label %s not found", key)
		}
		return v, nil
	}
	h, err := c.t.Render(validate.TemplateData{Name: d.Name, DisplayName: d.DisplayName, Namespace: d.Namespace, Mesh: d.Mesh, Zone: d.Zone}, label)
	if err != nil {
		return "", fmt.Errorf("pre evaluation of template with parameters failed with error=%q", execErrorText(err))
	}
	if err := CheckDNSName(h); err != nil {
		return "", fmt.Errorf("generated hostname %q is not a valid DNS name: %v", h, err)
	}
	return h, nil
}

// execErrorText strips text/template's location prefix when the cause is
// our own label error, so users read "label team not found".
func execErrorText(err error) string {
	s := err.Error()
	if i := strings.Index(s, "error calling label: "); i >= 0 {
		return s[i+len("error calling label: "):]
	}
	return s
}

const (
	dns1123LabelFmt     = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
	dns1123SubdomainFmt = dns1123LabelFmt + "(\\." + dns1123LabelFmt + ")*"
	maxSubdomainLen     = 253
	maxLabelLen         = 63
)

var dns1123SubdomainRE = regexp.MustCompile("^" + dns1123SubdomainFmt + "$")

// CheckDNSName reports why h is not a DNS-1123 subdomain (Kubernetes'
// wording), also enforcing DNS's 63-byte label limit, which Kubernetes'
// subdomain check omits but resolvers do not.
func CheckDNSName(h string) error {
	if len(h) > maxSubdomainLen {
		return fmt.Errorf("must be no more than %d characters", maxSubdomainLen)
	}
	if !dns1123SubdomainRE.MatchString(h) {
		return fmt.Errorf("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '%s')", dns1123SubdomainFmt)
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) > maxLabelLen {
			return fmt.Errorf("label %q must be no more than %d characters", l, maxLabelLen)
		}
	}
	return nil
}
