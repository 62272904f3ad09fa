package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// gRPC settings as in go-control-plane's example server: Envoy multiplexes
// every xDS stream over one connection, so the stream limit must be far above
// gRPC's default, and keepalive detects dead proxies.
const (
	grpcKeepaliveTime        = 30 * time.Second
	grpcKeepaliveTimeout     = 5 * time.Second
	grpcKeepaliveMinTime     = 30 * time.Second
	grpcMaxConcurrentStreams = 1000000
	// ShutdownGrace bounds how long Serve waits for open streams on shutdown.
	ShutdownGrace = 2 * time.Second
)

// Server is an ADS (and plain CDS/LDS/SDS) management server, SotW and
// delta, serving one snapshot per Envoy node id.
type Server struct {
	log   *slog.Logger
	cache *typeSplitCache
	xds   serverv3.Server
	guard *guard

	mu    sync.Mutex
	nodes map[string]bool
	// hashes are the resources' hashes from the last Update, by identity.
	hashes hashMemo
	// rds are the route tables the listeners' HCMs name, by identity.
	rds rdsMemo
}

// NewServer makes a server; nodes get configuration once Update names them.
func NewServer(ctx context.Context, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, nodes: map[string]bool{}, guard: newGuard(log)}
	s.cache = newTypeSplitCache(cacheLogger{log})
	s.xds = serverv3.NewServer(ctx, s.cache, s.callbacks())
	return s
}

// UseHashes gives Update a source of resource hashes it would otherwise
// compute (hashOf, by identity: for example Validator.Hash of the
// Validator that sanitized the resources). Call it before the first Update.
func (s *Server) UseHashes(known func(proto.Message) (string, bool)) {
	s.mu.Lock()
	s.hashes.known = known
	s.mu.Unlock()
}

// Update installs a snapshot per node. Nodes absent from nodes that had a
// snapshot get an empty one. Each type has its own content version, so
// Envoy's cds/lds version_text changes only when that type changed.
func (s *Server) Update(ctx context.Context, nodes map[string]*Resources) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.hashes.turn()
	defer s.rds.turn()
	var errs []error
	for node := range s.nodes {
		if _, ok := nodes[node]; !ok {
			if err := s.set(ctx, node, &Resources{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for node, res := range nodes {
		if res == nil {
			res = &Resources{}
		}
		if err := s.set(ctx, node, res); err != nil {
			errs = append(errs, err)
			continue
		}
		s.nodes[node] = true
	}
	return errors.Join(errs...)
}

func (s *Server) set(ctx context.Context, node string, res *Resources) error {
	snap, err := snapshotWith(res, s.hashes.hash, &s.rds)
	if err != nil {
		return fmt.Errorf("node %q: %w", node, err)
	}
	return s.cache.SetSnapshot(ctx, node, snap)
}

// Snapshot builds a consistent snapshot of res with per-type content versions.
func Snapshot(res *Resources) (*cachev3.Snapshot, error) {
	return snapshotWith(res, hashOf, nil)
}

// snapshotWith is Snapshot with each resource's hash from hash (safe for
// concurrent use). The same
// hashes are the per-resource versions of delta xDS: go-control-plane would
// otherwise marshal and hash every resource again on each SetSnapshot.
func snapshotWith(res *Resources, hash func(proto.Message) (string, error), rds *rdsMemo) (*cachev3.Snapshot, error) {
	if err := checkResources(res); err != nil {
		return nil, err
	}
	snap := &cachev3.Snapshot{VersionMap: map[string]map[string]string{}}
	for i := range snap.Resources {
		typeURL, err := cachev3.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			return nil, err
		}
		snap.VersionMap[typeURL] = map[string]string{}
	}
	// Each type's version, and each resource's hash as its delta version.
	version := func(typeURL string, es []namedHash) string {
		vm := snap.VersionMap[typeURL]
		for _, e := range es {
			vm[e.name] = e.hash
		}
		return versionFrom(es)
	}
	ch, err := hashAll(res.Clusters, hash)
	if err != nil {
		return nil, err
	}
	lh, err := hashAll(res.Listeners, hash)
	if err != nil {
		return nil, err
	}
	rh, err := hashAll(res.Routes, hash)
	if err != nil {
		return nil, err
	}
	sh, err := hashAll(res.Secrets, hash)
	if err != nil {
		return nil, err
	}
	cv, lv := version(resourcev3.ClusterType, ch), version(resourcev3.ListenerType, lh)
	rv, sv := version(resourcev3.RouteType, rh), version(resourcev3.SecretType, sh)
	snap.Resources[types.Cluster] = cachev3.NewResources(cv, toResources(res.Clusters))
	snap.Resources[types.Listener] = cachev3.NewResources(lv, toResources(res.Listeners))
	snap.Resources[types.Route] = cachev3.NewResources(rv, toResources(res.Routes))
	snap.Resources[types.Secret] = cachev3.NewResources(sv, toResources(res.Secrets))
	if err := consistent(res, rds); err != nil {
		return nil, err
	}
	return snap, nil
}

func toResources[T types.Resource](items []T) []types.Resource {
	out := make([]types.Resource, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out
}

// Serve runs the gRPC server on ep until ctx ends, then stops it,
// waiting at most ShutdownGrace for open streams. ep says how Envoys are
// authenticated (see auth.go); every stream is checked against it.
func (s *Server) Serve(ctx context.Context, ep *Endpoint) error {
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(grpcMaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: grpcKeepaliveTime, Timeout: grpcKeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcKeepaliveMinTime, PermitWithoutStream: true}),
		// A TLS or peer-credential handshake that stalls must not hold a connection slot.
		grpc.ConnectionTimeout(10 * time.Second),
	}
	if ep.creds != nil {
		opts = append(opts, grpc.Creds(ep.creds))
	} else {
		s.guard.mu.Lock()
		s.guard.anonymous = true
		s.guard.mu.Unlock()
		s.log.Warn("ADS server accepts plain TCP without authentication (--ads-insecure): anyone who can connect gets any node's config and private keys", "addr", ep.Addr())
	}
	g := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	secretservice.RegisterSecretDiscoveryServiceServer(g, s.xds)

	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		// xDS streams never end by themselves: GracefulStop would wait
		// forever, so it gets a deadline before the hard Stop.
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(ShutdownGrace):
			g.Stop()
		}
	}()
	s.log.Info("ADS server listening", "addr", ep.Addr(), "auth", ep.Kind())
	err := g.Serve(ep.lis)
	<-done
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// callbacks authorize every stream when it opens and every request on it
// (see guard), then note what an operator needs to see.
func (s *Server) callbacks() serverv3.CallbackFuncs {
	g := s.guard
	return serverv3.CallbackFuncs{
		StreamOpenFunc:        func(ctx context.Context, id int64, _ string) error { return g.open(g.sotw, ctx, id) },
		StreamClosedFunc:      func(id int64, _ *corev3.Node) { g.closed(g.sotw, id) },
		DeltaStreamOpenFunc:   func(ctx context.Context, id int64, _ string) error { return g.open(g.delta, ctx, id) },
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) { g.closed(g.delta, id) },
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			if err := g.request(g.sotw, id, req.GetNode(), req.GetTypeUrl()); err != nil {
				return err
			}
			s.noteRequest(id, req.GetNode().GetId(), req.GetTypeUrl(), req.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			if err := g.request(g.delta, id, req.GetNode(), req.GetTypeUrl()); err != nil {
				return err
			}
			s.noteRequest(id, req.GetNode().GetId(), req.GetTypeUrl(), req.GetErrorDetail().GetMessage())
			return nil
		},
		FetchRequestFunc: g.fetch,
	}
}

// noteRequest logs NACKs (Envoy rejected what we sent) and nodes we have no
// configuration for, the two things an operator needs to see.
func (s *Server) noteRequest(stream int64, node, typeURL, nack string) {
	if nack != "" {
		s.log.Warn("Envoy rejected configuration", "node", node, "type", typeURL, "stream", stream, "error", nack)
	}
	if node == "" {
		return
	}
	s.mu.Lock()
	known := s.nodes[node]
	s.mu.Unlock()
	if !known {
		s.log.Warn("xDS request from unknown node id; it gets nothing until a Dataplane names it", "node", node, "type", typeURL)
	}
}

// cacheLogger routes go-control-plane's logs to slog, its chatty info at debug.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(f string, a ...any) { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Infof(f string, a ...any)  { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Warnf(f string, a ...any)  { c.l.Warn(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }
