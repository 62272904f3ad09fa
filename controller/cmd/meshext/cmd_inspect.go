package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/meshca"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/run"
)

func init() {
	register(&command{name: "inspect", summary: "show each MeshExternalService's VIP, hostnames, endpoints, TLS and permissions", run: runInspect})
}

func runInspect(args []string) int {
	return inspectMain(args, os.Stdout, os.Stderr)
}

// inspectMain is runInspect with its outputs, for tests.
func inspectMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "", "directory holding the VIP allocations (as `meshext run` keeps them); without it VIPs are first-fit in sorted order and nothing is written")
	cidr := fs.String("cidr", "", "VIP range (default $"+ipam.EnvCIDR+", else "+ipam.DefaultCIDR+")")
	output := fs.String("o", "table", "output format: table, json or yaml")
	fs.StringVar(output, "output", "table", "same as -o")
	zone := fs.String("zone", "default", "local zone name (computed kuma.io/zone labels, .Zone in hostname templates)")
	maxFileSize := addMaxFileSize(fs)
	systemCA := fs.String("system-ca-path", "", "CA bundle for services without caCert (default $"+model.EnvSystemCAPath+", else the first OS bundle found)")
	skipDefaults := fs.String("skip-default-policies", "", skipDefaultsUsage)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext inspect PATH... [--state-dir DIR] [--cidr CIDR] [-o table|json|yaml]

Builds the model meshext serves from the resource files under PATH and shows,
for each MeshExternalService: its VIP, generated hostnames and their
conditions, protocol and port, endpoints, the TLS it originates (effective
SNI, SAN matchers with their types, CA source, client certificate) and what
MeshTrafficPermission allows (the mesh's default and every rule that targets
the service or its mesh), and, per proxy, the effective value of every
policy field (MeshTimeout, MeshRetry, ...; Kuma's default policies
included) with the policy that set it. Secret material is never printed.

Problems (validation, missing secrets, hostname collisions, no trust anchors)
go to stderr as FILE:LINE: KIND MESH/NAME: FIELD.PATH: message.
Exit status: 0 when there are none, 1 when there are, 2 on usage errors.

Flags may come before or after the paths.

Flags:`)
		fs.PrintDefaults()
	}
	var paths []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "meshext inspect: at least one PATH is required")
		fs.Usage()
		return 2
	}
	switch *output {
	case "table", "json", "yaml":
	default:
		fmt.Fprintf(stderr, "meshext inspect: -o %q: want table, json or yaml\n", *output)
		return 2
	}
	skip, err := parseSkipDefaults(*skipDefaults)
	if err != nil {
		fmt.Fprintf(stderr, "meshext inspect: %v\n", err)
		return 2
	}
	alloc, err := ipam.Open(*stateDir, *cidr)
	if err != nil {
		fmt.Fprintf(stderr, "meshext inspect: %v\n", err)
		return 2
	}
	set, loadProblems, err := resource.Load(paths, resource.Options{Zone: *zone, MaxFileSize: *maxFileSize})
	if err != nil {
		fmt.Fprintf(stderr, "meshext inspect: %v\n", err)
		return 2
	}
	w := model.Build(set, model.Options{Zone: *zone, IPAM: alloc, SystemCAPath: *systemCA, SkipDefaultPolicies: skip})
	view := newInspectView(w)
	var idNotes []string
	view.Identities, idNotes = identityViews(*stateDir, w)

	switch *output {
	case "json":
		b, _ := json.MarshalIndent(view, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	case "yaml":
		b, err := yaml.Marshal(view)
		if err != nil {
			fmt.Fprintf(stderr, "meshext inspect: %v\n", err)
			return 2
		}
		stdout.Write(b)
	default:
		writeInspectTable(stdout, view)
		writeIdentities(stdout, view.Identities)
	}

	for _, n := range idNotes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	problems := append(loadProblems, w.Problems...)
	if len(problems) == 0 {
		return 0
	}
	sortByFileAndLine(problems, set.Files)
	for _, p := range problems {
		fmt.Fprintln(stderr, p.Error())
	}
	return 1
}

// inspectView is what inspect prints; json/yaml use these field names.
type inspectView struct {
	Services []serviceView `json:"services"`
	// Identities are the mTLS meshes' CAs and the nodes' identities
	// (certificate serials and expiry from the running meshext run's
	// status in --state-dir); never key material.
	Identities []model.IdentityView `json:"identities,omitempty"`
}

type serviceView struct {
	Mesh      string          `json:"mesh"`
	Name      string          `json:"name"`
	Source    string          `json:"source"`
	VIP       string          `json:"vip,omitempty"`
	Port      uint32          `json:"port"`
	Protocol  string          `json:"protocol"`
	Hostnames []model.Address `json:"hostnames,omitempty"`
	Endpoints []endpointView  `json:"endpoints"`
	TLS       *tlsView        `json:"tls,omitempty"`
	// TLSUnresolved is set when tls.enabled is true but its material could not
	// be resolved: the service is not rendered (see Broken), never sent in plain text.
	TLSUnresolved bool              `json:"tlsUnresolved,omitempty"`
	Access        accessView        `json:"access"`
	Policies      []policyView      `json:"policies,omitempty"`
	Conditions    []model.Condition `json:"conditions"`
	Broken        string            `json:"broken,omitempty"`
	// Egress is set in a mesh with mTLS: the traffic leaves through these
	// ZoneEgresses, sending SNI.
	Egress *egressView `json:"egress,omitempty"`
}

type egressView struct {
	SNI          string   `json:"sni"`
	ZoneEgresses []string `json:"zoneEgresses"`
}

type endpointView struct {
	Address  string `json:"address"`
	Port     uint32 `json:"port,omitempty"`
	Kind     string `json:"kind"` // ip, dns or unix
	Priority uint32 `json:"priority,omitempty"`
}

type tlsView struct {
	Mode       string `json:"mode"`
	MinVersion string `json:"minVersion"`
	MaxVersion string `json:"maxVersion"`
	// Effective is the version range Envoy gets (TLSAuto = 1.2 as minimum, 1.3 as maximum).
	Effective          string `json:"effectiveVersions"`
	AllowRenegotiation bool   `json:"allowRenegotiation,omitempty"`
	// SNI is the server name sent to each endpoint.
	SNI []sniView `json:"sni"`
	// SANCheck says how the server certificate's names are checked.
	SANCheck    string       `json:"sanCheck"`
	SANMatchers []sanMatcher `json:"sanMatchers,omitempty"`
	CASource    string       `json:"caSource"`
	ClientCert  string       `json:"clientCertificate,omitempty"`
}

type sniView struct {
	Endpoint string `json:"endpoint"`
	SNI      string `json:"sni,omitempty"`
	From     string `json:"from"` // serverName, endpoint host, or none
}

type sanMatcher struct {
	SANType string `json:"sanType"` // URI, IP_ADDRESS or DNS
	Match   string `json:"match"`   // Exact or Prefix
	Value   string `json:"value"`
}

type accessView struct {
	// Default is what a source gets when no rule below applies: Allow, or Deny
	// when the mesh sets routing.defaultForbidMeshExternalServiceAccess or a
	// rules policy applies (rules deny what they do not allow).
	Default string `json:"default"`
	// DefaultFrom says why Default is Deny: "mesh" or "rules".
	DefaultFrom string     `json:"defaultFrom,omitempty"`
	Rules       []ruleView `json:"rules,omitempty"`
}

type ruleView struct {
	Policy string `json:"policy"`
	Source string `json:"source"`
	Target string `json:"target"` // Mesh or MeshExternalService
	From   string `json:"from"`
	Action string `json:"action"`
}

func newInspectView(w *model.World) inspectView {
	v := inspectView{Services: []serviceView{}}
	for _, s := range w.Services {
		sv := serviceView{
			Mesh: s.Mesh, Name: s.Name, Port: s.Port, Protocol: s.Protocol,
			Source:     s.Resource.Source.File + ":" + strconv.Itoa(s.Resource.Source.Line),
			Hostnames:  s.Addresses,
			Endpoints:  []endpointView{},
			Conditions: s.Conditions,
			Broken:     s.Broken,
			Access:     access(w, s),
			Policies:   policyViews(w, s),
		}
		if s.VIP.IsValid() {
			sv.VIP = s.VIP.String()
		}
		if w.MTLS[s.Mesh] != nil {
			sv.Egress = &egressView{SNI: s.SNI, ZoneEgresses: []string{}}
			for _, z := range w.ZoneEgresses {
				sv.Egress.ZoneEgresses = append(sv.Egress.ZoneEgresses, z.Name+" "+net.JoinHostPort(z.Networking.Address, strconv.FormatInt(z.Networking.Port, 10)))
			}
		}
		for _, e := range s.Endpoints {
			kind := "dns"
			if e.Unix {
				kind = "unix"
			} else if e.IsIP {
				kind = "ip"
			}
			sv.Endpoints = append(sv.Endpoints, endpointView{Address: e.Address, Port: e.Port, Kind: kind, Priority: e.Priority})
		}
		if s.TLS != nil {
			sv.TLS = tlsSummary(s)
		} else if t := s.Resource.Spec.TLS; t != nil && t.Enabled {
			sv.TLSUnresolved = true
		}
		v.Services = append(v.Services, sv)
	}
	return v
}

func endpointString(e model.Endpoint) string {
	switch {
	case e.Unix:
		return resource.UnixPrefix + e.Address
	case strings.Contains(e.Address, ":"):
		return "[" + e.Address + "]:" + strconv.Itoa(int(e.Port))
	}
	return e.Address + ":" + strconv.Itoa(int(e.Port))
}

// tlsSummary describes what controller/render emits (see render/tls.go):
// SNI is serverName for every endpoint, else each endpoint's DNS name (F5);
// explicit subjectAltNames replace the implicit name check (F9), each typed
// by its value (F4); SkipSAN/SkipAll check no names; SkipCA keeps matchers
// but Envoy only counts mismatches (F3).
func tlsSummary(s *model.Service) *tlsView {
	t := s.TLS
	v := &tlsView{Mode: t.Mode, MinVersion: t.MinVersion, MaxVersion: t.MaxVersion, AllowRenegotiation: t.AllowRenegotiation,
		CASource: t.CASource, ClientCert: t.ClientCertSource, SNI: []sniView{},
		Effective: effectiveVersion(t.MinVersion, "1.2") + ".." + effectiveVersion(t.MaxVersion, "1.3")}
	if v.CASource == "" {
		v.CASource = "none"
	}
	for _, e := range s.Endpoints {
		sv := sniView{Endpoint: endpointString(e)}
		switch {
		case t.ServerName != "":
			sv.SNI, sv.From = t.ServerName, "serverName"
		case !e.Unix && !e.IsIP:
			sv.SNI, sv.From = e.Address, "endpoint host"
		default:
			sv.From = "none"
		}
		v.SNI = append(v.SNI, sv)
	}
	switch {
	case len(t.SANs) > 0:
		for _, san := range t.SANs {
			v.SANMatchers = append(v.SANMatchers, sanMatcher{SANType: sanTypeOf(san.Value), Match: san.Type, Value: san.Value})
		}
		v.SANCheck = "subjectAltNames (replace the host-name check)"
	case t.ServerName != "":
		v.SANMatchers = []sanMatcher{{SANType: sanTypeOf(t.ServerName), Match: resource.SANExact, Value: t.ServerName}}
		v.SANCheck = "serverName"
	default:
		seen := map[string]bool{}
		for _, e := range s.Endpoints {
			if e.Unix || seen[e.Address] {
				continue
			}
			seen[e.Address] = true
			v.SANMatchers = append(v.SANMatchers, sanMatcher{SANType: sanTypeOf(e.Address), Match: resource.SANExact, Value: e.Address})
		}
		v.SANCheck = "each endpoint's host"
	}
	switch t.Mode {
	case resource.ModeSkipSAN, resource.ModeSkipAll:
		v.SANMatchers, v.SANCheck = nil, "none ("+t.Mode+")"
	case resource.ModeSkipCA:
		v.SANCheck += "; SkipCA: mismatches are counted in ssl.fail_verify_san, not refused"
	}
	return v
}

// effectiveVersion is what controller/render emits for a Kuma version name
// (F2: TLSAuto is explicit, 1.2 as minimum and 1.3 as maximum).
func effectiveVersion(v, auto string) string {
	if v == resource.TLSAuto || v == "" {
		return "TLS " + auto
	}
	if rest, ok := strings.CutPrefix(v, "TLS1"); ok && len(rest) == 1 {
		return "TLS 1." + rest
	}
	return v
}

func sanTypeOf(v string) string {
	if strings.Contains(v, "://") {
		return "URI"
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return "IP_ADDRESS"
	}
	return "DNS"
}

// access lists the mesh default and every MeshTrafficPermission rule whose
// targetRef is the service's mesh (or absent, which Kuma reads as Mesh) or
// the service itself.
func access(w *model.World, s *model.Service) accessView {
	v := accessView{Default: resource.ActionAllow}
	if w.Meshes[s.Mesh].ForbidsMeshExternalServiceAccess() {
		v.Default, v.DefaultFrom = resource.ActionDeny, "mesh"
	}
	for _, p := range w.Permissions {
		if p.Mesh != s.Mesh {
			continue
		}
		target := resource.RefMesh
		if tr := p.Spec.TargetRef; tr != nil && tr.Kind == resource.RefDataplane {
			target = refString(resource.TargetRef{Kind: tr.Kind, Name: tr.Name, Tags: tr.Labels}) // the proxies it selects
		} else if tr != nil && tr.Kind != resource.RefMesh {
			if tr.Kind != resource.RefMeshExternalService || tr.Name != s.Name {
				continue
			}
			target = resource.RefMeshExternalService
		}
		for _, f := range p.Spec.From {
			v.Rules = append(v.Rules, ruleView{
				Policy: p.Name, Source: p.Source.File + ":" + strconv.Itoa(p.Source.Line),
				Target: target, From: refString(f.TargetRef), Action: f.Default.Action,
			})
		}
		if rv := rulesViews(p, target); len(p.Spec.Rules) > 0 {
			v.Rules = append(v.Rules, rv...)
			v.Default, v.DefaultFrom = resource.ActionDeny, "rules"
		}
	}
	return v
}

// rulesViews lists a policy's rules[] matches; the enforcing proxies are
// the ones its targetRef selects (every one for Mesh).
func rulesViews(p *resource.MeshTrafficPermission, target string) []ruleView {
	var out []ruleView
	add := func(action string, ms []resource.TrafficPermMatch) {
		for _, m := range ms {
			var conds []string
			if m.SpiffeID != nil {
				conds = append(conds, "spiffeID "+m.SpiffeID.Type+" "+m.SpiffeID.Value)
			}
			if m.SNI != nil {
				conds = append(conds, "sni "+m.SNI.Type+" "+m.SNI.Value)
			}
			out = append(out, ruleView{Policy: p.Name, Source: p.Source.File + ":" + strconv.Itoa(p.Source.Line),
				Target: target, From: strings.Join(conds, " and "), Action: action})
		}
	}
	for _, r := range p.Spec.Rules {
		add(resource.ActionDeny, r.Default.Deny)
		add(resource.ActionAllowWithShadowDeny, r.Default.AllowWithShadowDeny)
		add(resource.ActionAllow, r.Default.Allow)
	}
	return out
}

// identityViews is what `meshext inspect` knows of the mesh identities:
// meshca.Describe (CAs, SPIFFE IDs, URI SANs), completed with the serials
// and validity of the running meshext run's certificates from the status
// file in stateDir.
func identityViews(stateDir string, w *model.World) ([]model.IdentityView, []string) {
	views, notes := meshca.Describe(stateDir, w)
	if stateDir == "" || len(views) == 0 {
		return views, notes
	}
	st, err := run.ReadStatus(stateDir)
	if err != nil {
		return views, append(notes, "no certificate serials and expiry: meshext run's status is not readable in --state-dir")
	}
	running := map[[2]string]model.IdentityView{}
	for _, v := range st.Identities {
		running[[2]string{v.Mesh, v.Node}] = v
	}
	for i, v := range views {
		if r, ok := running[[2]string{v.Mesh, v.Node}]; ok && v.Node != "" && r.SPIFFEID == v.SPIFFEID {
			views[i].Serial, views[i].NotBefore, views[i].NotAfter, views[i].RenewAt = r.Serial, r.NotBefore, r.NotAfter, r.RenewAt
		}
	}
	return views, notes
}

func refString(r resource.TargetRef) string {
	s := r.Kind
	if r.Name != "" {
		s += " " + r.Name
	}
	if len(r.Tags) > 0 {
		keys := make([]string, 0, len(r.Tags))
		for k := range r.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + r.Tags[k]
		}
		s += " {" + strings.Join(parts, ", ") + "}"
	}
	return s
}

func writeInspectTable(out io.Writer, v inspectView) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MESH\tNAME\tVIP\tPORT\tPROTOCOL\tHOSTNAMES\tTLS\tSTATUS")
	for _, s := range v.Services {
		hosts := make([]string, len(s.Hostnames))
		for i, h := range s.Hostnames {
			hosts[i] = h.Hostname
		}
		tlsMode, status := "-", "Ready"
		if s.TLS != nil {
			tlsMode = s.TLS.Mode
		}
		if s.Broken != "" {
			status = "Broken"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Mesh, s.Name, orDash(s.VIP), s.Port, s.Protocol, orDash(strings.Join(hosts, ",")), tlsMode, status)
	}
	tw.Flush()
	for _, s := range v.Services {
		fmt.Fprintf(out, "\nMeshExternalService %s/%s (%s)\n", s.Mesh, s.Name, s.Source)
		fmt.Fprintf(out, "  VIP:        %s:%d (%s)\n", orDash(s.VIP), s.Port, s.Protocol)
		if len(s.Hostnames) == 0 {
			fmt.Fprintln(out, "  Hostnames:  -")
		}
		for i, h := range s.Hostnames {
			label := "  Hostnames:  "
			if i > 0 {
				label = "              "
			}
			fmt.Fprintf(out, "%s%s (HostnameGenerator %s)\n", label, h.Hostname, h.Generator)
		}
		for i, e := range s.Endpoints {
			label := "  Endpoints:  "
			if i > 0 {
				label = "              "
			}
			fmt.Fprintf(out, "%s%s (%s, priority %d)\n", label, endpointString(model.Endpoint{Address: e.Address, Port: e.Port, Unix: e.Kind == "unix"}), e.Kind, e.Priority)
		}
		if t := s.TLS; t == nil && s.TLSUnresolved {
			fmt.Fprintln(out, "  TLS:        enabled but unresolved: the service is not rendered (see Ready)")
		} else if t == nil {
			fmt.Fprintln(out, "  TLS:        none (plain connection to the endpoints)")
		} else {
			fmt.Fprintf(out, "  TLS:        mode %s, versions %s..%s (%s)", t.Mode, t.MinVersion, t.MaxVersion, t.Effective)
			if t.AllowRenegotiation {
				fmt.Fprint(out, ", renegotiation allowed")
			}
			fmt.Fprintln(out)
			for _, sn := range t.SNI {
				fmt.Fprintf(out, "    SNI:      %s -> %s (%s)\n", sn.Endpoint, orDash(sn.SNI), sn.From)
			}
			fmt.Fprintf(out, "    SANs:     %s\n", t.SANCheck)
			for _, m := range t.SANMatchers {
				fmt.Fprintf(out, "              %s %s %s\n", m.SANType, m.Match, m.Value)
			}
			fmt.Fprintf(out, "    CA:       %s\n", t.CASource)
			if t.ClientCert != "" {
				fmt.Fprintf(out, "    Client:   certificate from %s\n", t.ClientCert)
			}
		}
		if e := s.Egress; e != nil {
			fmt.Fprintf(out, "  Egress:     mTLS through ZoneEgress %s, SNI %s; the egress authorizes\n", orDash(strings.Join(e.ZoneEgresses, ", ")), e.SNI)
		}
		fmt.Fprintf(out, "  Access:     default %s", s.Access.Default)
		switch s.Access.DefaultFrom {
		case "mesh":
			fmt.Fprint(out, " (mesh routing.defaultForbidMeshExternalServiceAccess)")
		case "rules":
			fmt.Fprint(out, " (MeshTrafficPermission rules deny what they do not allow)")
		}
		fmt.Fprintln(out)
		for _, r := range s.Access.Rules {
			fmt.Fprintf(out, "              %s from %s (MeshTrafficPermission %s targets %s, %s)\n", r.Action, r.From, r.Policy, r.Target, r.Source)
		}
		writePolicyViews(out, s.Policies)
		fmt.Fprintln(out, "  Conditions:")
		for _, c := range s.Conditions {
			fmt.Fprintf(out, "    %s=%s %s", c.Type, c.Status, c.Reason)
			if c.Generator != "" {
				fmt.Fprintf(out, " [HostnameGenerator %s]", c.Generator)
			}
			if c.Message != "" {
				fmt.Fprintf(out, ": %s", c.Message)
			}
			fmt.Fprintln(out)
		}
	}
}

// writeIdentities prints the identities section of the table.
func writeIdentities(out io.Writer, ids []model.IdentityView) {
	if len(ids) == 0 {
		return
	}
	fmt.Fprintln(out, "\nIdentities (mesh mTLS; keys are never shown)")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, v := range ids {
		if v.Node == "" {
			fmt.Fprintf(out, "  mesh %s CA %s: %s serial %s expires %s\n", v.Mesh, v.CA, v.SPIFFEID, orDash(v.Serial), when(v.NotAfter))
			continue
		}
		fmt.Fprintf(out, "    node %s: %s serial %s expires %s renews %s\n", v.Node, strings.Join(v.URIs, " "), orDash(v.Serial), when(v.NotAfter), when(v.RenewAt))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
