package core

import (
	"encoding/json"
	"strings"
	"testing"
)

func svc(name string, port uint32, vip string, hosts ...string) Service {
	return Service{Name: name, Mesh: "default", Cluster: "mes_" + name, Protocol: "http", Port: port, VIP: vip, Hostnames: hosts}
}

func from(kind, name string, tags map[string]string, a Action) From {
	return From{TargetRef: TargetRef{Kind: kind, Name: name, Tags: tags}, Default: Conf{Action: a}}
}

func mtp(name string, target TargetRef, f ...From) Policy {
	return Policy{Name: name, Mesh: "default", TargetRef: target, From: f}
}

var (
	toMesh = TargetRef{Kind: KindMesh}
	web    = Identity{Mesh: "default", Service: "web", Tags: map[string]string{"team": "a", "version": "v1"}}
)

func toMES(n string) TargetRef { return TargetRef{Kind: KindMeshExternalService, Name: n} }

func mustCompile(t *testing.T, cfg *Config) *Table {
	t.Helper()
	tab, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tab
}

func TestLookupHostForms(t *testing.T) {
	tab := mustCompile(t, &Config{
		Source: web,
		Services: []Service{
			svc("httpbin", 80, "242.0.0.1", "httpbin.extsvc.mesh.local", "HttpBin.Example.COM."),
			svc("six", 443, "fd00::7", "six.extsvc.mesh.local"),
			svc("noport", 0, "", "noport.example"),
		},
	})
	cases := []struct{ authority, want string }{
		{"httpbin.extsvc.mesh.local", "httpbin"},
		{"httpbin.extsvc.mesh.local:80", "httpbin"},
		{"HTTPBIN.extsvc.MESH.local:80", "httpbin"},
		{"httpbin.extsvc.mesh.local.", "httpbin"},
		{"httpbin.extsvc.mesh.local.:80", "httpbin"},
		{"httpbin.example.com", "httpbin"},
		{"httpbin.example.com.", "httpbin"},
		{"242.0.0.1", "httpbin"},
		{"242.0.0.1:80", "httpbin"},
		{"httpbin.extsvc.mesh.local:8080", ""}, // wrong port
		{"242.0.0.1:81", ""},
		{"six.extsvc.mesh.local:443", "six"},
		{"[fd00::7]:443", "six"},
		{"[FD00::7]:443", "six"},
		{"[fd00::7]", "six"},
		{"fd00::7", "six"},
		{"noport.example", "noport"},
		{"noport.example:80", ""},
		{"unknown.example", ""},
		{"", ""},
		{":80", ""},
		{".", ""},
		{strings.Repeat("a", 400), ""},
	}
	for _, c := range cases {
		e := tab.Lookup(c.authority)
		got := ""
		if e != nil {
			got = e.Service.Name
		}
		if got != c.want {
			t.Errorf("Lookup(%q) = %q, want %q", c.authority, got, c.want)
		}
	}
	if tab.Len() != 3 {
		t.Errorf("Len = %d", tab.Len())
	}
	if got := strings.Join(tab.Lookup("six.extsvc.mesh.local").Hosts(), ","); got != "[fd00::7],[fd00::7]:443,fd00::7,six.extsvc.mesh.local,six.extsvc.mesh.local:443" {
		t.Errorf("Hosts() = %s", got)
	}
}

func TestDefaultServiceFallback(t *testing.T) {
	tab := mustCompile(t, &Config{Source: web, Services: []Service{svc("a", 80, "", "a.ext"), svc("b", 80, "", "b.ext")}, DefaultService: "b"})
	if e := tab.Lookup("whatever.example:1234"); e == nil || e.Service.Name != "b" {
		t.Fatalf("fallback = %v, want b", e)
	}
	if e := tab.Lookup("a.ext"); e == nil || e.Service.Name != "a" {
		t.Fatalf("exact match must beat fallback, got %v", e)
	}
}

func TestSameHostnameDifferentPorts(t *testing.T) {
	tab := mustCompile(t, &Config{Source: web, Services: []Service{svc("p80", 80, "", "api.ext"), svc("p443", 443, "", "api.ext")}})
	for authority, want := range map[string]string{"api.ext:80": "p80", "api.ext:443": "p443"} {
		if e := tab.Lookup(authority); e == nil || e.Service.Name != want {
			t.Errorf("Lookup(%q) = %v, want %s", authority, e, want)
		}
	}
	if e := tab.Lookup("api.ext"); e != nil {
		t.Errorf("port-less name shared by two ports must not match, got %s", e.Service.Name)
	}
	if got := strings.Join(tab.Entries()[0].Hosts(), ","); got != "api.ext:80" {
		t.Errorf("Hosts() = %s", got)
	}
}

func TestDefaults(t *testing.T) {
	for _, forbid := range []bool{false, true} {
		tab := mustCompile(t, &Config{
			Source:   web,
			Meshes:   []Mesh{{Name: "default", DefaultForbidMeshExternalServiceAccess: forbid}},
			Services: []Service{svc("a", 80, "", "a.ext")},
		})
		d := tab.Lookup("a.ext").Decide()
		want := Allow
		if forbid {
			want = Deny
		}
		if d.Action != want || d.Reason != ReasonMeshDefault || d.Policy != "" {
			t.Errorf("forbid=%v: got %+v, want %s by mesh default", forbid, d, want)
		}
		if d.PolicyOrReason() != "mesh-default" {
			t.Errorf("PolicyOrReason = %q", d.PolicyOrReason())
		}
	}
}

func TestPrecedence(t *testing.T) {
	type tc struct {
		name     string
		policies []Policy
		id       Identity
		action   Action
		policy   string
	}
	subsetA := map[string]string{"team": "a"}
	cases := []tc{
		{"mesh-wide from Mesh", []Policy{mtp("p", toMesh, from(KindMesh, "", nil, Deny))}, web, Deny, "p"},
		{"MeshService beats Mesh", []Policy{
			mtp("p1", toMesh, from(KindMesh, "", nil, Deny)),
			mtp("p2", toMesh, from(KindMeshService, "web", nil, Allow))}, web, Allow, "p2"},
		{"MeshService for another service does not match", []Policy{
			mtp("p1", toMES("a"), from(KindMeshService, "other", nil, Deny))}, web, Allow, ""},
		{"MeshSubset beats Mesh", []Policy{
			mtp("p1", toMES("a"), from(KindMesh, "", nil, Allow)),
			mtp("p2", toMesh, from(KindMeshSubset, "", subsetA, AllowWithShadowDeny))}, web, AllowWithShadowDeny, "p2"},
		{"MeshSubset tags must all match", []Policy{
			mtp("p1", toMesh, from(KindMeshSubset, "", map[string]string{"team": "a", "version": "v2"}, Deny))}, web, Allow, ""},
		{"MeshSubset on kuma.io/service tag", []Policy{
			mtp("p1", toMesh, from(KindMeshSubset, "", map[string]string{ServiceTag: "web"}, Deny))}, web, Deny, "p1"},
		{"MeshService beats MeshSubset", []Policy{
			mtp("p1", toMES("a"), from(KindMeshSubset, "", subsetA, Deny)),
			mtp("p2", toMesh, from(KindMeshService, "web", nil, Allow))}, web, Allow, "p2"},
		{"MeshServiceSubset beats MeshService", []Policy{
			mtp("p1", toMES("a"), from(KindMeshService, "web", nil, Allow)),
			mtp("p2", toMesh, from(KindMeshServiceSubset, "web", map[string]string{"version": "v1"}, Deny))}, web, Deny, "p2"},
		{"more subset tags win", []Policy{
			mtp("p1", toMesh, from(KindMeshSubset, "", subsetA, Allow)),
			mtp("p2", toMesh, from(KindMeshSubset, "", map[string]string{"team": "a", "version": "v1"}, Deny))}, web, Deny, "p2"},
		{"MES target beats Mesh target at equal from", []Policy{
			mtp("a-mesh", toMesh, from(KindMeshService, "web", nil, Deny)),
			mtp("z-mes", toMES("a"), from(KindMeshService, "web", nil, Allow))}, web, Allow, "z-mes"},
		{"name breaks ties", []Policy{
			mtp("zeta", toMES("a"), from(KindMesh, "", nil, Allow)),
			mtp("alpha", toMES("a"), from(KindMesh, "", nil, Deny))}, web, Deny, "alpha"},
		{"later from[] entry wins within a policy", []Policy{
			mtp("p", toMES("a"), from(KindMesh, "", nil, Allow), from(KindMesh, "", nil, Deny))}, web, Deny, "p"},
		{"policy for another MES is ignored", []Policy{
			mtp("p", toMES("b"), from(KindMesh, "", nil, Deny))}, web, Allow, ""},
		{"policy from another mesh is ignored", []Policy{
			{Name: "p", Mesh: "other", TargetRef: toMesh, From: []From{from(KindMesh, "", nil, Deny)}}}, web, Allow, ""},
		{"SPIFFE identity has no tags", []Policy{
			mtp("p", toMesh, from(KindMeshSubset, "", subsetA, Deny))}, Identity{Mesh: "default", Service: "web"}, Allow, ""},
		{"foreign mesh source is denied", nil, Identity{Mesh: "other", Service: "web"}, Deny, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab := mustCompile(t, &Config{Source: web, Services: []Service{svc("a", 80, "", "a.ext"), svc("b", 80, "", "b.ext")}, Policies: c.policies})
			e := tab.Lookup("a.ext")
			d := e.DecideFor(&c.id)
			if d.Action != c.action || d.Policy != c.policy {
				t.Fatalf("got %+v, want %s by %q", d, c.action, c.policy)
			}
			if c.id.Mesh == web.Mesh && c.id.Service == web.Service && len(c.id.Tags) == len(web.Tags) {
				if o := e.Decide(); o != d {
					t.Fatalf("precomputed owner decision %+v != %+v", o, d)
				}
			}
			if !d.Allowed() != (c.action == Deny) {
				t.Fatalf("Allowed() inconsistent for %s", c.action)
			}
		})
	}
}

func TestParseSPIFFE(t *testing.T) {
	good := map[string]Identity{
		"spiffe://default/web":       {Mesh: "default", Service: "web"},
		"SPIFFE://m/svc_ns_svc_8080": {Mesh: "m", Service: "svc_ns_svc_8080"},
	}
	for in, want := range good {
		got, ok := ParseSPIFFE(in)
		if !ok || got.Mesh != want.Mesh || got.Service != want.Service {
			t.Errorf("ParseSPIFFE(%q) = %+v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "spiffe://", "spiffe://mesh", "spiffe://mesh/", "spiffe:///svc", "https://m/s", "spiffe://m/s/extra"} {
		if _, ok := ParseSPIFFE(bad); ok {
			t.Errorf("ParseSPIFFE(%q) accepted", bad)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	base := func() Config {
		return Config{Source: web, Services: []Service{svc("a", 80, "242.0.0.1", "a.ext")}}
	}
	cases := map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"no source":        {func(c *Config) { c.Source = Identity{} }, "source"},
		"bad protocol":     {func(c *Config) { c.Services[0].Protocol = "udp" }, "protocol"},
		"no cluster":       {func(c *Config) { c.Services[0].Cluster = "" }, "cluster"},
		"bad hostname":     {func(c *Config) { c.Services[0].Hostnames = []string{"a b"} }, "invalid character"},
		"bad vip":          {func(c *Config) { c.Services[0].VIP = "242.0.0" }, "vip"},
		"port":             {func(c *Config) { c.Services[0].Port = 70000 }, "port"},
		"duplicate":        {func(c *Config) { c.Services = append(c.Services, c.Services[0]) }, "duplicate"},
		"host collision":   {func(c *Config) { c.Services = append(c.Services, svc("b", 80, "", "A.ext")) }, `already belongs to service "a"`},
		"vip collision":    {func(c *Config) { c.Services = append(c.Services, svc("b", 80, "242.0.0.1")) }, "already belongs"},
		"unknown default":  {func(c *Config) { c.DefaultService = "zz" }, "defaultService"},
		"bad target kind":  {func(c *Config) { c.Policies = []Policy{mtp("p", TargetRef{Kind: "MeshService", Name: "x"})} }, "targetRef kind"},
		"MES without name": {func(c *Config) { c.Policies = []Policy{mtp("p", TargetRef{Kind: KindMeshExternalService})} }, "needs a name"},
		"bad action": {func(c *Config) {
			c.Policies = []Policy{mtp("p", toMesh, from(KindMesh, "", nil, "Maybe"))}
		}, "action"},
		"bad from kind": {func(c *Config) {
			c.Policies = []Policy{mtp("p", toMesh, from("Dataplane", "", nil, Allow))}
		}, "from[0]: targetRef kind"},
		"MeshService without name": {func(c *Config) {
			c.Policies = []Policy{mtp("p", toMesh, from(KindMeshService, "", nil, Allow))}
		}, "needs a name"},
		"unnamed policy": {func(c *Config) { c.Policies = []Policy{mtp("", toMesh)} }, "name and mesh"},
	}
	for name, c := range cases {
		cfg := base()
		c.mutate(&cfg)
		_, err := Compile(&cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	const doc = `{
	  "source": {"mesh": "default", "service": "web", "tags": {"team": "a"}},
	  "meshes": [{"name": "default", "defaultForbidMeshExternalServiceAccess": true}],
	  "services": [{"name": "httpbin", "mesh": "default", "cluster": "mes_httpbin", "protocol": "http",
	                "port": 80, "vip": "242.0.0.1", "hostnames": ["httpbin.extsvc.mesh.local"]}],
	  "policies": [{"name": "allow-web", "mesh": "default",
	                "targetRef": {"kind": "MeshExternalService", "name": "httpbin"},
	                "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"team": "a"}}, "default": {"action": "AllowWithShadowDeny"}}]}]
	}`
	var cfg Config
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	tab := mustCompile(t, &cfg)
	d := tab.Lookup("242.0.0.1:80").Decide()
	if d.Action != AllowWithShadowDeny || d.Policy != "allow-web" {
		t.Fatalf("got %+v", d)
	}
	id := Identity{Mesh: "default", Service: "other"}
	if d := tab.Lookup("httpbin.extsvc.mesh.local").DecideFor(&id); d.Action != Deny || d.Reason != ReasonMeshDefault {
		t.Fatalf("other source under forbid default: %+v", d)
	}
}

// SPIFFEDecisions must agree with DecideFor for every tag-less identity.
func TestSPIFFEDecisionsAgreeWithDecideFor(t *testing.T) {
	policies := []Policy{
		mtp("mesh-deny", toMesh, from(KindMesh, "", nil, Deny)),
		mtp("a-allow-web", toMES("a"), from(KindMeshService, "web", nil, Allow)),
		mtp("a-shadow-api", toMES("a"), from(KindMeshSubset, "", map[string]string{ServiceTag: "api"}, AllowWithShadowDeny)),
		mtp("a-team", toMES("a"), from(KindMeshSubset, "", map[string]string{"team": "x"}, Allow)),
		mtp("a-deny-web-v1", toMES("a"), from(KindMeshServiceSubset, "web", map[string]string{"version": "v1"}, Deny)),
		mtp("a-deny-db", toMES("a"), from(KindMeshServiceSubset, "db", map[string]string{ServiceTag: "db"}, Deny)),
		mtp("b-open", toMES("b"), from(KindMeshSubset, "", nil, Allow)),
	}
	for _, forbid := range []bool{false, true} {
		tab := mustCompile(t, &Config{Source: web, Meshes: []Mesh{{Name: "default", DefaultForbidMeshExternalServiceAccess: forbid}},
			Services: []Service{svc("a", 80, "", "a.ext"), svc("b", 80, "", "b.ext"), svc("c", 80, "", "c.ext")}, Policies: policies})
		for _, e := range tab.Entries() {
			byService, others := e.SPIFFEDecisions()
			for _, s := range []string{"web", "api", "db", "other", "x"} {
				want := e.DecideFor(&Identity{Mesh: "default", Service: s})
				got, ok := byService[s]
				if !ok {
					got = others
				}
				if got != want {
					t.Errorf("forbid=%v %s from %s: SPIFFEDecisions %+v, DecideFor %+v", forbid, e.Service.Name, s, got, want)
				}
			}
		}
	}
}
