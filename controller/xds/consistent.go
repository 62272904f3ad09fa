package xds

import (
	"fmt"
	"slices"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// consistent is go-control-plane's Snapshot.Consistent for what meshext
// serves: the route tables the listeners name over RDS are exactly the
// snapshot's (meshext renders no EDS clusters, the other reference it
// checks). Snapshot.Consistent unpacks every filter chain's
// HttpConnectionManager on every Update, 10k of them at 10k services; here
// the name each HCM names is remembered by the Any's identity (rds), and
// render hands the same Any again for a service it did not re-render; the
// names a whole listener names by the listener's identity, which render
// keeps while none of its chains changed.
func consistent(res *Resources, rds *rdsMemo) error {
	named := map[string]bool{}
	for _, l := range res.Listeners {
		if err := listenerRoutes(l, rds, named); err != nil {
			return fmt.Errorf("listener %s: %w", l.GetName(), err)
		}
	}
	have := make(map[string]bool, len(res.Routes))
	for _, r := range res.Routes {
		have[r.GetName()] = true
	}
	var missing, unnamed []string
	for n := range named {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	for n := range have {
		if !named[n] {
			unnamed = append(unnamed, n)
		}
	}
	if len(missing) > 0 || len(unnamed) > 0 {
		slices.Sort(missing)
		slices.Sort(unnamed)
		return fmt.Errorf("inconsistent route tables: named by a listener but not served: [%s]; served but named by no listener: [%s]",
			strings.Join(missing, " "), strings.Join(unnamed, " "))
	}
	return nil
}

func listenerRoutes(l *listenerv3.Listener, rds *rdsMemo, named map[string]bool) error {
	if rds != nil {
		// 10k chains at 10k services, not walked again.
		if names, ok := rds.listeners.get(l); ok {
			for _, n := range names {
				named[n] = true
			}
			return nil
		}
	}
	// mine are l's own names (named holds the other listeners' too).
	var mine []string
	seen := map[string]bool{}
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clip(chains), d)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			a := f.GetTypedConfig()
			if a == nil {
				continue
			}
			name, err := rds.routeOf(a)
			if err != nil {
				return fmt.Errorf("filter %s: %w", f.GetName(), err)
			}
			if name != "" && !seen[name] {
				seen[name] = true
				mine = append(mine, name)
			}
		}
	}
	if rds != nil {
		rds.listeners.put(l, mine)
	}
	for _, n := range mine {
		named[n] = true
	}
	return nil
}

// rdsMemo remembers the route table an HttpConnectionManager Any names over
// RDS ("" for none), by identity, for one generation as hashMemo does. A nil
// *rdsMemo remembers nothing. Safe for concurrent use.
type rdsMemo struct {
	names generations[*anypb.Any, string]
	// listeners are the tables each listener names, by identity.
	listeners generations[*listenerv3.Listener, []string]
}

var hcmTypeURL = "type.googleapis.com/" + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())

func (m *rdsMemo) routeOf(a *anypb.Any) (string, error) {
	if a.GetTypeUrl() != hcmTypeURL {
		return "", nil
	}
	if m != nil {
		if name, ok := m.names.get(a); ok {
			return name, nil
		}
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := a.UnmarshalTo(hcm); err != nil {
		return "", err
	}
	name := hcm.GetRds().GetRouteConfigName()
	if m != nil {
		m.names.put(a, name)
	}
	return name, nil
}

// turn ends a generation: names not asked for since the last turn are let go.
func (m *rdsMemo) turn() { m.names.turn(); m.listeners.turn() }
