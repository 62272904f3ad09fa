package validate

import (
	"net"
	"regexp"
	"strings"
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
	var errs []string
	if len(s) > dns1123SubdomainMaxLength {
		errs = append(errs, "must be no more than 253 characters")
	}
	if !dns1123SubdomainRE.MatchString(s) {
		errs = append(errs, dns1123SubdomainMsg)
	}
	return errs
}

// validPort is 1..65535.
func validPort(p int64) bool { return p >= 1 && p <= 65535 }
