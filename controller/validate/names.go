package validate

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// isIP is true for an IPv4 or IPv6 literal (Kuma uses govalidator.IsIP, i.e. net.ParseIP).
func isIP(s string) bool { return net.ParseIP(s) != nil }

// dnsNameRE is the host-name shape Kuma accepts for endpoints and serverName
// (govalidator.IsDNSName): labels of letters, digits, '_' and '-' up to 63
// characters, not starting with '-', an optional trailing dot. No wildcards.
var dnsNameRE = regexp.MustCompile(`^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$`)

// isDNSName reports whether s is a DNS name in Kuma's (govalidator's) sense.
// IP literals are not DNS names.
func isDNSName(s string) bool {
	if s == "" || len(strings.ReplaceAll(s, ".", "")) > 255 {
		return false
	}
	return !isIP(s) && dnsNameRE.MatchString(s)
}

const (
	dns1123SubdomainMaxLength = 253
	dns1123SubdomainFmt       = `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
	// The Kubernetes apimachinery message Kuma prints for a bad generated hostname.
	dns1123SubdomainMsg = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', " +
		"and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '" + dns1123SubdomainFmt + "')"
)

var dns1123SubdomainRE = regexp.MustCompile("^" + dns1123SubdomainFmt + "$")

// dns1123Subdomain returns why s is not a lowercase RFC 1123 subdomain (nil when it is).
func dns1123Subdomain(s string) []string {
	return apimachineryName(s, dns1123SubdomainMaxLength, dns1123SubdomainRE, dns1123SubdomainMsg)
}

// apimachineryName is how Kubernetes reports a name: its length, then its shape.
func apimachineryName(s string, maxLength int, re *regexp.Regexp, msg string) []string {
	var errs []string
	if len(s) > maxLength {
		errs = append(errs, fmt.Sprintf("must be no more than %d characters", maxLength))
	}
	if !re.MatchString(s) {
		errs = append(errs, msg)
	}
	return errs
}

// validPort is 1..65535.
func validPort(p int64) bool { return p >= 1 && p <= 65535 }

const (
	dns1123LabelMaxLength = 63
	dns1123LabelFmt       = `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
	// The Kubernetes apimachinery message (two spaces and all).
	dns1123LabelMsg = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', " +
		"and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '" + dns1123LabelFmt + "')"
)

var dns1123LabelRE = regexp.MustCompile("^" + dns1123LabelFmt + "$")

// dns1123Label returns why s is not a lowercase RFC 1123 label (nil when it is).
func dns1123Label(s string) []string {
	return apimachineryName(s, dns1123LabelMaxLength, dns1123LabelRE, dns1123LabelMsg)
}

// Kuma's universal name rules (pkg/core/resources/apis/mesh/meta_validator.go):
// a resource name is a lowercase RFC 1123 subdomain; a mesh reference keeps
// the older character set with '_', since a Mesh may predate the rule.
var meshNameRE = regexp.MustCompile(`^[0-9a-z-_.]*$`)

const (
	identifierMaxLength = 253
	identifierMsg       = "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric " +
		"characters, '-' or '.', and must start and end with an alphanumeric character"
	meshNameMsg = "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols."
)

// identifier is Kuma's validateIdentifier: the first rule s breaks, or "".
func identifier(s string, re *regexp.Regexp, msg string) string {
	switch {
	case s == "":
		return "cannot be empty"
	case len(s) > identifierMaxLength:
		return "value length must less or equal 253"
	case !re.MatchString(s):
		return msg
	}
	return ""
}

// resourceNames checks the names every kind has, as the API that would have
// admitted it does. Universal style: Kuma's ValidateMeta (name, and mesh for
// mesh-scoped kinds). Kubernetes style: the API server's metadata.name
// (DNS-1123 subdomain) and metadata.namespace (DNS-1123 label), and Kuma's
// webhook rule for the kuma.io/mesh label. No name that passes holds '/',
// NUL, spaces, upper case or non-ASCII, so none can reach a file path or
// fold two Envoy names into one (controller/names).
func resourceNames(v *violations) {
	m := v.meta
	if m.Source.Style == resource.StyleKubernetes {
		for _, e := range dns1123Subdomain(m.Name) {
			v.addAs("name", "metadata.name", "%s", e)
		}
		if m.Namespace != "" {
			for _, e := range dns1123Label(m.Namespace) {
				v.addAs("namespace", "metadata.namespace", "%s", e)
			}
		}
	} else if msg := identifier(m.Name, dns1123SubdomainRE, identifierMsg); msg != "" {
		v.add("name", "%s", msg)
	}
	if !m.Kind.MeshScoped() || m.Kind == resource.KindHostnameGenerator {
		return // not mesh-scoped
	}
	if msg := identifier(m.Mesh, meshNameRE, meshNameMsg); msg != "" {
		if m.Source.Style == resource.StyleKubernetes {
			v.addAs("mesh", `labels["kuma.io/mesh"]`, "%s", msg)
		} else {
			v.add("mesh", "%s", msg)
		}
	}
}

// destinationLabels checks the labels that go into a MeshExternalService's
// Envoy cluster name (Kuma's "<mesh>_<name>_<namespace>_<zone>_extsvc_<port>"):
// none may hold '_', or two services could share a cluster. The display
// name is a Kubernetes name (Kuma sets it from metadata.name), the
// namespace a Kubernetes namespace, and the zone a DNS-1123 label (Kuma
// also accepts upper case and '_' in zone names; meshext does not).
func destinationLabels(v *violations) {
	for _, l := range []struct {
		key   string
		check func(string) []string
	}{
		{resource.LabelDisplayName, dns1123Subdomain},
		{resource.LabelNamespace, dns1123Label},
		{resource.LabelZone, dns1123Label},
	} {
		val, ok := v.meta.Labels[l.key]
		if !ok || val == "" {
			continue // an empty display name means the name; empty namespace and zone are unset
		}
		for _, e := range l.check(val) {
			v.add(fmt.Sprintf("labels[%q]", l.key), "%s", e)
		}
	}
}

// ZoneName checks a local zone name (meshext's --zone): it becomes the
// kuma.io/zone label of every resource, so it follows that label's rule.
func ZoneName(zone string) error {
	if errs := dns1123Label(zone); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
