package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/policy"
)

// policyView is what a group of proxies does with one service's traffic:
// every effective policy value and the policy (to[] item) that set it,
// as `kumactl inspect dataplane --type=policies` shows it for Kuma.
type policyView struct {
	// Proxies are the Envoy node ids that share this effective config.
	Proxies   []string          `json:"proxies"`
	Effective *policy.Effective `json:"effective"`
}

// policyViews groups the proxies that reach s by identical effective
// config, in node order. In an mTLS mesh those are the workloads (without
// the cluster-side kinds) and the zone's egresses (those kinds, MeshTimeout
// and MeshAccessLog), as rendered.
func policyViews(w *model.World, s *model.Service) []policyView {
	if w.Policies == nil || s.Resource == nil {
		return nil
	}
	viaEgress := w.MTLS[s.Mesh] != nil
	var proxies []policy.Proxy
	for _, p := range policy.Proxies(w.Dataplanes) {
		if viaEgress && p.Dataplane == nil {
			continue // the default node has no identity: it serves no mTLS mesh
		}
		p.ViaEgress = viaEgress
		proxies = append(proxies, p)
	}
	if viaEgress {
		proxies = append(proxies, policy.EgressProxies(w.ZoneEgresses)...)
	}
	var out []policyView
	index := map[string]int{}
	for _, p := range proxies {
		eff := w.Policies.For(p, s.Resource)
		if eff == nil || (len(eff.Confs) == 0 && len(eff.HTTPRules) == 0) {
			continue // nothing to show: Envoy's and meshext's own defaults apply
		}
		b, err := json.Marshal(eff)
		if err != nil {
			b = []byte(p.ID) // cannot happen; keep the proxy on its own
		}
		if i, ok := index[string(b)]; ok {
			out[i].Proxies = append(out[i].Proxies, p.ID)
			continue
		}
		index[string(b)] = len(out)
		out = append(out, policyView{Proxies: []string{p.ID}, Effective: eff})
	}
	return out
}

func writePolicyViews(out io.Writer, views []policyView) {
	if len(views) > 0 {
		fmt.Fprintf(out, "  Policies:   %s\n", policiesNote)
	}
	for _, v := range views {
		fmt.Fprintf(out, "    on %s\n", strings.Join(v.Proxies, ", "))
		v.Effective.Write(out, "      ")
	}
}
