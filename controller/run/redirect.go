package run

import (
	"context"
	"net/netip"
	"os"
	"time"

	"github.com/meshext/meshext/bpf"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/render"
)

// RedirectSyncInterval is how often attachments made by `meshext redirect
// attach` are looked for and brought in step, besides every reload.
const RedirectSyncInterval = time.Second

// redirectTargets is, per eBPF attachment name, the transparent listener
// its VIP range must reach: an attachment is named by the Dataplane's node
// id ("<mesh>.<name>") or its name, or "default" when there are no
// Dataplanes. A name that could mean two Dataplanes (the same name in two
// meshes, or a name equal to another's node id) maps to 0 (ambiguous): such
// an attachment is never pointed at either one's Envoy. The attachment's DNS target is the
// embedded DNS server.
func redirectTargets(w *model.World) map[string]uint16 {
	out := map[string]uint16{}
	if len(w.Dataplanes) == 0 {
		out[render.DefaultNodeID] = render.DefaultRedirectPortOutbound
	}
	claimed := map[string]int{} // attachment name -> Dataplanes it could mean
	for _, dp := range w.Dataplanes {
		claimed[render.NodeID(dp)]++
		claimed[dp.Name]++
	}
	for _, dp := range w.Dataplanes {
		port := uint16(render.DefaultRedirectPortOutbound)
		if tp := dp.Networking.TransparentProxying; tp != nil && tp.RedirectPortOutbound > 0 {
			port = uint16(tp.RedirectPortOutbound)
		}
		for _, name := range []string{render.NodeID(dp), dp.Name} {
			if claimed[name] > 1 {
				out[name] = ambiguousRedirect
			} else {
				out[name] = port
			}
		}
	}
	return out
}

// ambiguousRedirect marks an attachment name that several Dataplanes share.
const ambiguousRedirect = 0

// syncRedirects writes the VIP range -> transparent listener route and the
// DNS target into every attachment pinned under cfg.RedirectBPFFS that names
// a Dataplane, so an attachment follows the config without being re-made.
// Attachments of unknown names are left alone.
func (r *Runner) syncRedirects() {
	r.mu.Lock()
	targets, cidr := r.redirectTargets, r.redirectCIDR
	r.mu.Unlock()
	if r.cfg.RedirectBPFFS == "" || targets == nil {
		return
	}
	var dnsTarget netip.AddrPort
	if a := r.DNSAddr(); a != "" {
		dnsTarget, _ = netip.ParseAddrPort(a)
	}
	for name, port := range targets {
		if _, err := os.Stat(bpf.PinDir(r.cfg.RedirectBPFFS, name)); err != nil {
			continue // not attached
		}
		if port == ambiguousRedirect {
			if r.redirectWarned.CompareAndSwap(false, true) {
				r.log.Warn("eBPF redirect not updated: Dataplanes of several meshes have this name; attach it as <mesh>.<name>", "dataplane", name)
			}
			continue
		}
		want := []bpf.VIPRoute{{CIDR: cidr, Proxy: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)}}
		if err := r.applyRedirect(name, want, dnsTarget); err != nil {
			r.log.Warn("eBPF redirect not updated", "dataplane", name, "error", err)
		}
	}
}

func (r *Runner) applyRedirect(name string, vips []bpf.VIPRoute, dnsTarget netip.AddrPort) error {
	red, err := bpf.Open(r.cfg.RedirectBPFFS, name)
	if err != nil {
		return err
	}
	defer red.Close()
	cur, err := red.Config()
	if err != nil {
		return err
	}
	changed := false
	if len(cur.VIPs) != 1 || cur.VIPs[0] != vips[0] {
		if err := red.SetVIPs(vips); err != nil {
			return err
		}
		changed = true
	}
	if dnsTarget.IsValid() && cur.DNS != dnsTarget {
		if err := red.SetDNS(dnsTarget); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		r.log.Info("eBPF redirect updated", "dataplane", name, "vips", vips[0].String(), "dns", dnsTarget.String())
	}
	return nil
}

// watchRedirects re-syncs on a timer, so an attachment made after the last
// reload is brought in step within RedirectSyncInterval.
func (r *Runner) watchRedirects(ctx context.Context) error {
	t := time.NewTicker(RedirectSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.syncRedirects()
		}
	}
}
