package xds

import (
	"context"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// typeSplitCache serves the wildcard types (clusters, listeners) from a
// snapshot cache in ADS mode, which answers the watches of one update in
// xDS order (clusters before the listeners that use them), and the types
// Envoy asks for by name (secrets, route tables) from a plain one, which
// answers whatever subset of names a request lists.
//
// One ADS-mode cache for everything is not enough: it answers a named
// request only when the request lists every resource of that type in the
// snapshot. Envoy asks for its secrets in steps (a ZoneEgress first names the
// upstream clusters' secrets, and its listener's mesh CA and identity only
// once those clusters are warm), so that rule held the second step back
// until Envoy's 15 s initial-fetch timeout.
type typeSplitCache struct {
	ordered cachev3.SnapshotCache // clusters and listeners
	named   cachev3.SnapshotCache // secrets and route tables
}

var _ cachev3.Cache = (*typeSplitCache)(nil)

func newTypeSplitCache(log cacheLogger) *typeSplitCache {
	return &typeSplitCache{
		ordered: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, log),
		named:   cachev3.NewSnapshotCache(false, cachev3.IDHash{}, log),
	}
}

// namedType reports whether Envoy requests resources of typeURL by name.
func namedType(typeURL string) bool {
	return typeURL == resourcev3.SecretType || typeURL == resourcev3.RouteType
}

func (c *typeSplitCache) pick(typeURL string) cachev3.SnapshotCache {
	if namedType(typeURL) {
		return c.named
	}
	return c.ordered
}

// SetSnapshot installs snap in both caches; each serves only its own types.
func (c *typeSplitCache) SetSnapshot(ctx context.Context, node string, snap cachev3.ResourceSnapshot) error {
	// The named types first: a cluster or listener that needs a new secret
	// or route table then finds it waiting when Envoy asks.
	if err := c.named.SetSnapshot(ctx, node, snap); err != nil {
		return err
	}
	return c.ordered.SetSnapshot(ctx, node, snap)
}

func (c *typeSplitCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	return c.pick(req.GetTypeUrl()).CreateWatch(req, sub, out)
}

func (c *typeSplitCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	return c.pick(req.GetTypeUrl()).CreateDeltaWatch(req, sub, out)
}

func (c *typeSplitCache) Fetch(ctx context.Context, req *cachev3.Request) (cachev3.Response, error) {
	return c.pick(req.GetTypeUrl()).Fetch(ctx, req)
}
