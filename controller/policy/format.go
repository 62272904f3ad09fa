package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
)

// DefaultProxyID is the Envoy node id when there are no Dataplanes
// (controller/render's DefaultNodeID).
const DefaultProxyID = "default"

// Proxies lists the proxies render builds nodes for: one per Dataplane
// (id "<mesh>.<name>", as render.NodeID), or the default node.
func Proxies(dps []*resource.Dataplane) []Proxy {
	if len(dps) == 0 {
		return []Proxy{{ID: DefaultProxyID}}
	}
	out := make([]Proxy, 0, len(dps))
	for _, dp := range dps {
		out = append(out, Proxy{ID: dp.Mesh + "." + dp.Name, Dataplane: dp})
	}
	return out
}

// EgressProxies lists the ZoneEgress proxies render builds nodes for (id
// ".<name>", names.ZoneEgressNodeID).
func EgressProxies(zes []*resource.ZoneEgress) []Proxy {
	out := make([]Proxy, 0, len(zes))
	for _, z := range zes {
		out = append(out, Proxy{ID: names.ZoneEgressNodeID(z.Name), ZoneEgress: z})
	}
	return out
}

// Write prints e for people, one value per line with the policy that set
// it, indented by indent:
//
//	MeshTimeout
//	  http.requestTimeout: 2s  (MeshTimeout slow-api to[0], policies.yaml:3)
func (e *Effective) Write(w io.Writer, indent string) {
	if e == nil {
		return
	}
	empty := true
	for _, k := range ConfKinds {
		c := e.Confs[k]
		if c == nil {
			continue
		}
		empty = false
		writeConf(w, indent, c)
	}
	if len(e.HTTPRules) > 0 {
		empty = false
		fmt.Fprintf(w, "%s%s\n", indent, resource.KindMeshHTTPRoute)
		for i, r := range e.HTTPRules {
			m, _ := json.Marshal(r.Matches)
			fmt.Fprintf(w, "%s  rule %d: matches %s  (%s)\n", indent, i+1, m, originText(r.Origin))
			for _, f := range r.Fields {
				fmt.Fprintf(w, "%s    %s: %s  (%s)\n", indent, f.Path, FormatValue(f.Value), originText(f.Origin))
			}
			if r.Conf.BackendRefs == nil {
				fmt.Fprintf(w, "%s    backendRefs: none, to the MeshExternalService itself\n", indent)
			}
		}
	}
	for _, key := range sortedRouteKeys(e.RouteConfs) {
		fmt.Fprintf(w, "%son the routes of MeshHTTPRoute %s\n", indent, key.Name)
		for _, k := range ConfKinds {
			if c := e.RouteConfs[key][k]; c != nil {
				writeConf(w, indent+"  ", c)
			}
		}
	}
	if empty {
		fmt.Fprintf(w, "%s(no policy applies)\n", indent)
	}
}

func writeConf(w io.Writer, indent string, c *Conf) {
	fmt.Fprintf(w, "%s%s\n", indent, c.Kind)
	for _, f := range c.Fields {
		fmt.Fprintf(w, "%s  %s: %s  (%s)\n", indent, f.Path, FormatValue(f.Value), originText(f.Origin))
	}
}

func originText(o Origin) string {
	return o.String() + ", " + o.Source
}

func sortedRouteKeys(m map[RouteKey]map[resource.Kind]*Conf) []RouteKey {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b RouteKey) int {
		return cmp.Or(cmp.Compare(a.Mesh, b.Mesh), cmp.Compare(a.Name, b.Name))
	})
	return keys
}
