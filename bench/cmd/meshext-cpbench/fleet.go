package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/envoyproc"
)

// FleetResult is what `meshext-cpbench fleet` prints.
type FleetResult struct {
	N      int  `json:"n"`      // MeshExternalServices (every node gets all)
	Nodes  int  `json:"nodes"`  // Dataplanes = xDS nodes
	Envoys int  `json:"envoys"` // of them real Envoy processes; the rest are gRPC clients
	Delta  bool `json:"delta"`  // incremental xDS for every node
	// InitialMS: meshext run start → every node has ACKed its first CDS.
	InitialMS float64 `json:"initial_ms"`
	// ChangeMS: a one-MES edit → the last node has ACKed the new CDS
	// (Envoys: their cds update_success moved).
	ChangeMS      []float64 `json:"change_ms"`
	ChangeFirstMS []float64 `json:"change_first_ms"` // → the first node
	// ControllerCPUInitialS: meshext run's user+system CPU until InitialMS.
	ControllerCPUInitialS float64 `json:"controller_cpu_initial_s"`
	// ControllerCPUChangeMS: its CPU per change, from the edit until every node ACKed.
	ControllerCPUChangeMS []float64 `json:"controller_cpu_change_ms"`
	ControllerRSSMB       float64   `json:"controller_rss_mb"`  // at the end
	ControllerPeakMB      float64   `json:"controller_peak_mb"` // VmHWM
	EnvoyRSSMB            float64   `json:"envoy_rss_mb"`       // mean of the real Envoys
	Rejected              int       `json:"rejected"`           // NACKs the clients sent + Envoy update_rejected
}

// fleetNodeID is the xDS node id of the i-th Dataplane.
func fleetNodeID(i int) string { return names.NodeID("default", fmt.Sprintf("dp-%03d", i)) }

// writeDataplanes adds nodes Dataplanes to the resource directory.
func writeDataplanes(dir string, nodes int) error {
	var b strings.Builder
	for i := range nodes {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "type: Dataplane\nname: dp-%03d\nmesh: default\nnetworking:\n  address: 127.0.0.1\n", i)
	}
	return os.WriteFile(filepath.Join(dir, "01-dataplanes.yaml"), []byte(b.String()), 0o644)
}

// fleetNode counts the CDS responses one node has applied and ACKed.
type fleetNode struct {
	mu      sync.Mutex
	acked   int       // CDS responses ACKed
	last    time.Time // of the last ACK
	nacked  int
	changed chan struct{} // closed and replaced on every CDS ACK
}

func newFleetNode() *fleetNode { return &fleetNode{changed: make(chan struct{})} }

func (n *fleetNode) ack(ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !ok {
		n.nacked++
		return
	}
	n.acked++
	n.last = time.Now()
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *fleetNode) state() (int, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.acked, n.changed
}

// secretNames are the SDS secrets a cluster references, as Envoy would
// subscribe to them.
func secretNames(c *clusterv3.Cluster) []string {
	ts := c.GetTransportSocket().GetTypedConfig()
	if ts == nil {
		return nil
	}
	var up tlsv3.UpstreamTlsContext
	if err := ts.UnmarshalTo(&up); err != nil {
		return nil
	}
	ctx := up.GetCommonTlsContext()
	var out []string
	for _, s := range ctx.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, s.GetName())
	}
	if s := ctx.GetValidationContextSdsSecretConfig(); s != nil {
		out = append(out, s.GetName())
	}
	if s := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); s != nil {
		out = append(out, s.GetName())
	}
	return out
}

// decodeAll unmarshals every resource, as Envoy parses what it applies; a
// resource that does not parse is a NACK.
func decodeAll(typeURL string, items []*anypb.Any) (secrets []string, ok bool) {
	seen := map[string]bool{}
	for _, a := range items {
		switch typeURL {
		case resourcev3.ClusterType:
			var c clusterv3.Cluster
			if a.UnmarshalTo(&c) != nil {
				return nil, false
			}
			for _, s := range secretNames(&c) {
				if !seen[s] {
					seen[s] = true
					secrets = append(secrets, s)
				}
			}
		case resourcev3.ListenerType:
			var l listenerv3.Listener
			if a.UnmarshalTo(&l) != nil {
				return nil, false
			}
		case resourcev3.SecretType:
			var s tlsv3.Secret
			if a.UnmarshalTo(&s) != nil {
				return nil, false
			}
		}
	}
	slices.Sort(secrets)
	return secrets, true
}

// sotwClient is one node on a state-of-the-world ADS stream, as Envoy does
// it: CDS and LDS wildcard, SDS for the secrets its clusters name, each
// response ACKed (or NACKed) with its version and nonce.
func sotwClient(ctx context.Context, conn *grpc.ClientConn, id string, n *fleetNode) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: id, Cluster: "fleet"}
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return err
		}
	}
	var sdsNames []string
	var sdsVersion, sdsNonce string
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		secrets, ok := decodeAll(resp.GetTypeUrl(), resp.GetResources())
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}
		if !ok {
			// A NACK names the version it still holds.
			req.VersionInfo = ""
			req.ErrorDetail = &statuspb.Status{Code: 3, Message: "resource does not parse"}
		}
		if resp.GetTypeUrl() == resourcev3.SecretType {
			req.ResourceNames = sdsNames
			sdsVersion, sdsNonce = req.VersionInfo, resp.GetNonce()
		}
		if err := stream.Send(req); err != nil {
			return err
		}
		if resp.GetTypeUrl() == resourcev3.ClusterType {
			n.ack(ok)
			if ok && !slices.Equal(secrets, sdsNames) {
				sdsNames = secrets
				if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType,
					ResourceNames: sdsNames, VersionInfo: sdsVersion, ResponseNonce: sdsNonce}); err != nil {
					return err
				}
			}
		}
	}
}

// deltaClient is sotwClient over incremental xDS: wildcard CDS and LDS,
// SDS subscriptions added and removed as the clusters change.
func deltaClient(ctx context.Context, conn *grpc.ClientConn, id string, n *fleetNode) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: id, Cluster: "fleet"}
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return err
		}
	}
	clusterSecrets := map[string][]string{} // cluster -> secrets it names
	subscribed := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		ok := true
		for _, r := range resp.GetResources() {
			secrets, good := decodeAll(resp.GetTypeUrl(), []*anypb.Any{r.GetResource()})
			ok = ok && good
			if resp.GetTypeUrl() == resourcev3.ClusterType {
				clusterSecrets[r.GetName()] = secrets
			}
		}
		if resp.GetTypeUrl() == resourcev3.ClusterType {
			for _, name := range resp.GetRemovedResources() {
				delete(clusterSecrets, name)
			}
		}
		ackReq := &discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if !ok {
			ackReq.ErrorDetail = &statuspb.Status{Code: 3, Message: "resource does not parse"}
		}
		if err := stream.Send(ackReq); err != nil {
			return err
		}
		if resp.GetTypeUrl() != resourcev3.ClusterType {
			continue
		}
		n.ack(ok)
		want := map[string]bool{}
		for _, ss := range clusterSecrets {
			for _, s := range ss {
				want[s] = true
			}
		}
		var sub, unsub []string
		for s := range want {
			if !subscribed[s] {
				sub = append(sub, s)
			}
		}
		for s := range subscribed {
			if !want[s] {
				unsub = append(unsub, s)
			}
		}
		if len(sub)+len(unsub) == 0 {
			continue
		}
		subscribed = want
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType,
			ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
			return err
		}
	}
}

// fleetEnvoy is a real Envoy node; its CDS ACKs are its update_success stat.
type fleetEnvoy struct {
	e  *envoyproc.Proc
	fn *fleetNode
}

func statInt(e *envoyproc.Proc, name string) int {
	v, _ := strconv.Atoi(strings.TrimSpace(e.StatValue(name)))
	return v
}

func typedInt(e *envoyproc.Proc, typ, name string) int {
	v, _ := strconv.Atoi(typedStat(e, typ, name))
	return v
}

// fleet runs one `meshext run --xds ads` for nodes nodes over its unix
// socket (peer credentials: this user), envoys of them real Envoys, and
// times each edit until every node has ACKed it.
func fleet(n, nodes, envoys int, dir, envoyBin, meshext string, changes int, debounce time.Duration, delta bool) (*FleetResult, error) {
	if envoys > nodes {
		envoys = nodes
	}
	resDir := filepath.Join(dir, "resources")
	if _, err := generate(resDir, n); err != nil {
		return nil, err
	}
	if err := writeDataplanes(resDir, nodes); err != nil {
		return nil, err
	}
	r := &FleetResult{N: n, Nodes: nodes, Envoys: envoys, Delta: delta}
	status, err := envoyproc.FreePort()
	if err != nil {
		return r, err
	}
	sock := filepath.Join(abs(dir), "ads", "ads.sock")
	ads := "unix:" + sock
	logf, err := os.Create(filepath.Join(dir, "meshext-run.log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	state := make([]*fleetNode, nodes)
	for i := range state {
		state[i] = newFleetNode()
	}
	// Bootstraps for the real Envoys first: Envoy start-up is not meshext's time.
	boots := make([]string, envoys)
	for i := range envoys {
		admin, err := envoyproc.FreePort()
		if err != nil {
			return r, err
		}
		boots[i] = filepath.Join(dir, fmt.Sprintf("bootstrap-%03d.json", i))
		if err := adsBootstrap(meshext, ads, fleetNodeID(i), admin, boots[i], delta); err != nil {
			return r, err
		}
	}

	t0 := time.Now()
	cmd := exec.Command(meshext, append([]string{"run", "--dir", resDir, "--xds", "ads", "--ads-listen", ads,
		"--status-listen", fmt.Sprintf("127.0.0.1:%d", status), "--debounce", debounce.String(), "--log-level", runLogLevel},
		pluginArgs(meshext, "")...)...)
	exited, stop, err := startProcess(cmd, logf)
	if err != nil {
		return r, err
	}
	defer stop()
	pid := cmd.Process.Pid
	cpu0 := procCPU(pid)
	err = whileRunning(exited, logf.Name(), 10*time.Millisecond, 60*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	}, "meshext run made no ADS socket")
	if err != nil {
		return r, err
	}

	// The gRPC clients share one connection each, like one Envoy each.
	errc := make(chan error, nodes)
	for i := envoys; i < nodes; i++ {
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return r, err
		}
		defer conn.Close()
		client := sotwClient
		if delta {
			client = deltaClient
		}
		go func(i int) {
			if err := client(ctx, conn, fleetNodeID(i), state[i]); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("node %s: %w", fleetNodeID(i), err)
			}
		}(i)
	}
	var procs []*fleetEnvoy
	for i := range envoys {
		opts := envoyproc.Pinned(envoyBin, boots[i], dir, fmt.Sprintf("fleet-envoy-%03d", i), nil)
		opts.ReadyTimeout = 180 * time.Second
		e, err := envoyproc.Start(opts)
		if err != nil {
			return r, err
		}
		defer e.Stop()
		procs = append(procs, &fleetEnvoy{e: e, fn: state[i]})
	}
	// Envoys report ACKs through their admin stats; poll them.
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	for _, p := range procs {
		go func(p *fleetEnvoy) {
			seen := 0
			for pollCtx.Err() == nil {
				if v := typedInt(p.e, "Counters", "cluster_manager.cds.update_success"); v > seen {
					for ; seen < v; seen++ {
						p.fn.ack(true)
					}
				}
				// 10 ms: ten Envoys' admin polled faster would load the 2 cores.
				time.Sleep(10 * time.Millisecond)
			}
		}(p)
	}

	// waitAll waits until every node has ACKed past from; first and last
	// are when the first and the last of them did, after t0.
	waitAll := func(t0 time.Time, from []int, limit time.Duration) (first, last time.Duration, err error) {
		deadline := time.After(limit)
		for i, fn := range state {
			for {
				acked, ch := fn.state()
				if acked > from[i] {
					break
				}
				select {
				case <-ch:
				case err := <-errc:
					return 0, 0, err
				case <-exited:
					return 0, 0, fmt.Errorf("meshext run exited: %s", envoyproc.Tail(logf.Name(), 400))
				case <-deadline:
					return 0, 0, fmt.Errorf("node %s did not ACK a new CDS within %s", fleetNodeID(i), limit)
				}
			}
		}
		first = time.Duration(1<<63 - 1)
		for _, fn := range state {
			fn.mu.Lock()
			d := fn.last.Sub(t0)
			fn.mu.Unlock()
			first, last = min(first, d), max(last, d)
		}
		return first, last, nil
	}
	zero := make([]int, nodes)
	if _, _, err := waitAll(t0, zero, 180*time.Second); err != nil {
		return r, err
	}
	r.InitialMS = ms(time.Since(t0))
	r.ControllerCPUInitialS = (procCPU(pid) - cpu0).Seconds()
	// Let the initial SDS exchanges settle before the first edit.
	time.Sleep(time.Second)
	for k := range changes {
		from := make([]int, nodes)
		for i, fn := range state {
			from[i], _ = fn.state()
		}
		i := (k*7919 + 13) % n
		c0, e0 := procCPU(pid), time.Now()
		if _, err := editOne(resDir, i, 63000+k); err != nil {
			return r, err
		}
		first, last, err := waitAll(e0, from, 60*time.Second)
		if err != nil {
			return r, err
		}
		r.ChangeFirstMS = append(r.ChangeFirstMS, ms(first))
		r.ChangeMS = append(r.ChangeMS, ms(last))
		r.ControllerCPUChangeMS = append(r.ControllerCPUChangeMS, ms(procCPU(pid)-c0))
	}
	r.ControllerRSSMB = envoyproc.RSSMB(pid)
	r.ControllerPeakMB = procHWMMB(pid)
	for _, fn := range state {
		fn.mu.Lock()
		r.Rejected += fn.nacked
		fn.mu.Unlock()
	}
	for _, p := range procs {
		r.EnvoyRSSMB += envoyproc.RSSMB(p.e.Pid()) / float64(len(procs))
		r.Rejected += statInt(p.e, "cluster_manager.cds.update_rejected") + statInt(p.e, "listener_manager.lds.update_rejected")
	}
	return r, nil
}

// procCPU is a process's user+system CPU time from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// procHWMMB is a process's peak RSS (VmHWM).
func procHWMMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
