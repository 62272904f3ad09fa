package xds

import (
	"fmt"
	"path/filepath"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Route tables (RDS) in files:
//
//	<Dir>/<node>/rds/<route>.json  DiscoveryResponse of one RouteConfiguration (0644)
//
// One file per table: Envoy's path subscription for RDS takes exactly one
// RouteConfiguration, the one its listener names. A table's file is written
// before a listener naming it and removed after the last one stops.

const routeDirName = "rds"

// RouteDir is the directory of a node's route files.
func RouteDir(dir, node string) string { return filepath.Join(NodeDir(dir, node), routeDirName) }

// RoutePath is the JSON file of one route table of a node (Format.RoutePath
// for others).
func RoutePath(dir, node, route string) string { return FormatJSON.RoutePath(dir, node, route) }

func relRoute(nodeDir, file string) string { return nodeDir + "/" + routeDirName + "/" + file }

// isRouteFile reports whether a manifest path is a route file, and of which node directory.
func isRouteFile(rel string) (nodeDir, file string, ok bool) {
	parts := strings.Split(rel, "/")
	if len(parts) != 3 || parts[1] != routeDirName || !(strings.HasSuffix(parts[2], ".json") || strings.HasSuffix(parts[2], ".pb")) {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// wantedRoutes are a node's route files by file name, with their content hash.
func wantedRoutes(res *Resources, f Format) (map[string]wantedRoute, error) {
	want := make(map[string]wantedRoute, len(res.Routes))
	for _, rc := range res.Routes {
		h, err := hashOf(rc)
		if err != nil {
			return nil, err
		}
		file := f.fileName(rc.GetName())
		if old, ok := want[file]; ok {
			return nil, fmt.Errorf("route tables %q and %q would share file %s", old.route.GetName(), rc.GetName(), file)
		}
		want[file] = wantedRoute{route: rc, hash: h}
	}
	return want, nil
}

type wantedRoute struct {
	route *routev3.RouteConfiguration
	hash  string
}

// routesChanged reports whether any route file must be written or removed.
func routesChanged(prev map[string]string, want map[string]wantedRoute) bool {
	if len(prev) != len(want) {
		return true
	}
	for file, wr := range want {
		if h, ok := prev[file]; !ok || h != wr.hash {
			return true
		}
	}
	return false
}
