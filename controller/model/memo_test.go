package model

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// leaseBook is an ipam.Assigner whose leases the test sets: a new key gets
// the next VIP and serial, and the test may move a key or change its age.
type leaseBook struct {
	leases map[string]ipam.Lease
	serial uint64
}

func (b *leaseBook) Assign(keys []string) (map[string]ipam.Lease, error) {
	out := make(map[string]ipam.Lease, len(keys))
	for _, k := range keys {
		l, ok := b.leases[k]
		if !ok {
			b.serial++
			l = ipam.Lease{VIP: netip.AddrFrom4([4]byte{242, 0, 0, byte(b.serial)}), Serial: b.serial}
			b.leases[k] = l
		}
		out[k] = l
	}
	return out, nil
}

func (b *leaseBook) CIDR() netip.Prefix { return netip.MustParsePrefix("242.0.0.0/8") }

// TestMemoBuildsWhatAFreshBuildDoes: over a run of reloads, a Build with
// the memos (Memo, Hostnames, Validations) gives what a Build without any
// gives, on every path a memo may reuse or must not: nothing changed, an
// endpoint edit, a Secret's data changed and the Secret gone, the system
// CA bundle changed and gone, a generator's template changed, another
// zone, a service removed and one added, a cluster-name collision coming
// and going, and a VIP lease moved and aged. As in `meshext run`, an
// unchanged document is the same parsed object at the next reload.
func TestMemoBuildsWhatAFreshBuildDoes(t *testing.T) {
	noSystemCA(t)
	p := newPKI(t)
	other := newPKI(t)
	dir := t.TempDir()
	caA := writeYAML(t, dir, "ca-a.pem", p.caPEM)
	caB := writeYAML(t, dir, "ca-b.pem", other.caPEM)

	svc := func(name, labels string, port int, tls string) string {
		return fmt.Sprintf("type: MeshExternalService\nname: %s\nmesh: default\nlabels: {%s}\nspec:\n  match: {port: 443, protocol: http}\n  endpoints:\n  - {address: %s.example.com, port: %d}\n%s",
			name, labels, name, port, tls)
	}
	gen := func(name, labels, selector, template string) string {
		return fmt.Sprintf("type: HostnameGenerator\nname: %s\nlabels: {%s}\nspec:\n  selector: {meshExternalService: {matchLabels: {%s}}}\n  template: '%s'\n", name, labels, selector, template)
	}
	inlineCA := "  tls:\n    enabled: true\n    verification:\n      caCert: {inline: " + p.caB64 + "}\n"
	secretCA := "  tls:\n    enabled: true\n    verification:\n      caCert: {secret: ca}\n"
	mutual := "  tls:\n    enabled: true\n    verification:\n      caCert: {secret: ca}\n      clientCert: {inline: " + p.certB64 + "}\n      clientKey: {secret: key}\n"
	systemCA := "  tls:\n    enabled: true\n    verification: {mode: Secured, serverName: sys.example.com}\n"
	base := map[string]string{
		"gen-a":    gen("gen-a", "", "kuma.io/origin: zone", "{{ .DisplayName }}.a.local"),
		"gen-zone": gen("gen-zone", "kuma.io/origin: global", "", "{{ .Name }}.{{ .Zone }}.z.local"),
		"inline":   svc("inline", "", 443, inlineCA),
		"secret":   svc("secret", "", 443, secretCA),
		"mutual":   svc("mutual", "", 443, mutual),
		"system":   svc("system", "", 443, systemCA),
		"plain":    svc("plain", "", 80, ""),
		// Of global origin, global and gen-zone get no kuma.io/zone label:
		// they stay valid in another zone, where .Zone is that zone.
		"global": svc("global", "kuma.io/origin: global", 82, ""),
		// hostname collision: shown is also plain's display name
		"shown": svc("shown", "kuma.io/display-name: plain", 81, ""),
		"ca":    secret("ca", p.caB64),
		"key":   secret("key", p.keyB64),
	}
	type step struct {
		name    string
		edit    func(docs map[string]string)
		zone    string
		sysCA   string
		leases  func(b *leaseBook)
		changes bool // the World differs from the last step's
	}
	steps := []step{
		{name: "first", changes: true},
		{name: "unchanged"},
		{name: "endpoint edit", changes: true, edit: func(d map[string]string) { d["inline"] = svc("inline", "", 8443, inlineCA) }},
		{name: "secret data", changes: true, edit: func(d map[string]string) { d["ca"] = secret("ca", other.caB64) }},
		{name: "secret gone", changes: true, edit: func(d map[string]string) { delete(d, "ca") }},
		{name: "secret back", changes: true, edit: func(d map[string]string) { d["ca"] = secret("ca", p.caB64) }},
		{name: "system CA", changes: true, sysCA: caA},
		{name: "system CA other path", changes: true, sysCA: caB},
		{name: "system CA missing", changes: true, sysCA: filepath.Join(dir, "missing.pem")},
		{name: "generator edit", changes: true, sysCA: caA, edit: func(d map[string]string) {
			d["gen-a"] = gen("gen-a", "", "kuma.io/origin: zone", "{{ .DisplayName }}.a2.local")
		}},
		{name: "generator re-parsed, same template", sysCA: caA, edit: func(d map[string]string) { d["gen-a"] = "# re-parsed\n" + d["gen-a"] }},
		{name: "generator gone", changes: true, sysCA: caA, edit: func(d map[string]string) { delete(d, "gen-zone") }},
		{name: "generator back", changes: true, sysCA: caA, edit: func(d map[string]string) {
			d["gen-zone"] = gen("gen-zone", "kuma.io/origin: global", "", "{{ .Name }}.{{ .Zone }}.z.local")
		}},
		{name: "zone", changes: true, sysCA: caA, zone: "zone-b"},
		{name: "zone back", changes: true, sysCA: caA},
		{name: "service removed", changes: true, sysCA: caA, edit: func(d map[string]string) { delete(d, "plain") }},
		{name: "service added", changes: true, sysCA: caA, edit: func(d map[string]string) {
			d["plain"] = svc("plain", "", 80, "")
			d["late"] = svc("late", "", 90, inlineCA)
		}},
		{name: "cluster collision", changes: true, sysCA: caA, edit: func(d map[string]string) { d["clash"] = svc("clash", "kuma.io/display-name: inline", 443, "") }},
		{name: "cluster collision, unchanged", sysCA: caA},
		{name: "cluster collision gone", changes: true, sysCA: caA, edit: func(d map[string]string) { d["clash"] = svc("clash", "", 443, "") }},
		{name: "lease moved", changes: true, sysCA: caA, leases: func(b *leaseBook) {
			l := b.leases["default/inline"]
			l.Moved, l.VIP = l.VIP, netip.MustParseAddr("242.0.1.1")
			b.leases["default/inline"] = l
		}},
		{name: "lease aged", changes: true, sysCA: caA, leases: func(b *leaseBook) {
			// plain becomes younger than shown: shown wins the hostname.
			l := b.leases["default/plain"]
			l.Serial = 1000
			b.leases["default/plain"] = l
		}},
	}

	// parsed keeps each document's parse by its text, as the pipeline keeps
	// each file's: an unchanged document is the same object.
	parsed := map[string]resource.Object{}
	load := func(docs map[string]string, zone string) *resource.Set {
		set := &resource.Set{}
		next := map[string]resource.Object{}
		for _, name := range slices.Sorted(maps.Keys(docs)) {
			doc := docs[name]
			o := parsed[doc]
			if o == nil {
				objs, errs := resource.ParseBytes(name+".yaml", []byte(doc))
				if len(errs) > 0 || len(objs) != 1 {
					t.Fatalf("%s: %v", name, errs)
				}
				o = objs[0]
			}
			next[doc] = o
			if fe := set.Add(o); fe != nil {
				t.Fatal(fe)
			}
		}
		parsed = next
		set.ComputeLabels(resource.Options{Zone: zone})
		return set
	}

	docs := maps.Clone(base)
	book := &leaseBook{leases: map[string]ipam.Lease{}}
	var (
		memo                 Memo
		hostnames            hostname.Memo
		validations          validate.Memo
		memoClaims, noClaims names.Claims
		last                 string
		seen                 []string
	)
	for _, st := range steps {
		if st.edit != nil {
			st.edit(docs)
		}
		if st.leases != nil {
			st.leases(book)
		}
		set := load(docs, st.zone)
		opts := Options{Zone: st.zone, IPAM: book, SystemCAPath: st.sysCA}
		fresh := opts
		fresh.Claims = &noClaims
		want := Build(set, fresh)
		opts.Claims, opts.Memo, opts.Hostnames, opts.Validations = &memoClaims, &memo, &hostnames, &validations
		got := Build(set, opts)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: with the memos\n%s\nwant\n%s", st.name, summary(got), summary(want))
		}
		seen = append(seen, summary(want))
		if testing.Verbose() {
			t.Logf("%s:\n%s", st.name, summary(want))
		}
		if s := fingerprint(want); (s != last) != st.changes {
			t.Errorf("%s: the step changed the World: %v, want %v\n%s", st.name, s != last, st.changes, s)
		} else {
			last = s
		}
		for s := range memo.services {
			if !slices.Contains(set.MeshExternalServices, s) {
				t.Errorf("%s: the memo holds a service of an earlier Build", st.name)
			}
		}
	}
	// The steps above reach the paths they are meant to.
	for _, want := range []string{"Collision", "is already used by MeshExternalService", "VIP moved", ReasonSecretNotFound, "system:" + caA, ReasonNoTrustAnchors, "zone-b.z.local"} {
		if !strings.Contains(strings.Join(seen, "\n"), want) {
			t.Errorf("no step's World shows %q", want)
		}
	}
}

// fingerprint is summary with the TLS material, which summary leaves out.
func fingerprint(w *World) string {
	var b strings.Builder
	b.WriteString(summary(w))
	for _, s := range w.Services {
		if s.TLS != nil {
			fmt.Fprintf(&b, "%s: ca %x client %x key %x\n", s.Name, sha256.Sum256(s.TLS.CA), sha256.Sum256(s.TLS.ClientCert), sha256.Sum256(s.TLS.ClientKey))
		}
	}
	return b.String()
}
