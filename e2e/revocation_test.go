package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshext/meshext/controller/names"
)

// revocationBound is how long after Envoy applied a route update the next
// request on an open connection may still see the old decision.
const revocationBound = time.Second

// TestRevocationOnOpenConnections: access to a MeshExternalService is
// decided when rendering (no authorization filter on the workload's
// listeners), and the decision travels in the route table Envoy gets by
// RDS. So a MeshTrafficPermission written while a keep-alive HTTP/1.1
// connection and an HTTP/2 gRPC connection are open denies the next
// request on each of them within a second of Envoy applying the update,
// without closing either, and removing it grants access again the same
// way. Envoy drains replaced listeners for an hour here, so a listener
// drain cannot be what answers: by file drops and over ADS (state of the
// world and delta).
func TestRevocationOnOpenConnections(t *testing.T) {
	_, caFile, hostsFile := standIns(t)
	for _, c := range []struct {
		name       string
		ads, delta bool
	}{{"xds=file", false, false}, {"xds=ads", true, false}, {"xds=ads-delta", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			revocation(t, caFile, hostsFile, c.ads, c.delta)
		})
	}
}

func revocation(t *testing.T, caFile, hostsFile string, ads, delta bool) {
	drop := authzDropDir(t)
	m := startMesh(t, drop, meshOpts{nodeID: authzNodeID, hostsFile: hostsFile, systemCA: caFile, ads: ads, delta: delta,
		envoyArgs: []string{"--drain-time-s", "3600"}})
	for _, a := range []string{authzGRPC, authzKeepAlive} {
		m.waitListener(t, a)
	}
	lds, err := os.ReadFile(filepath.Join(m.xds, authzNodeID, "lds.json"))
	if !ads {
		require.NoError(t, err)
		assert.NotContains(t, string(lds), "envoy.filters.http.dynamic_modules", "no authorization filter where access is decided at render time")
	}

	// The clusters (and HCM stat prefixes and route tables) of the two services.
	httpCluster := "default_mes-keepalive__default_extsvc_80"
	grpcCluster := names.LegacyDestination("default", "mes-grpc", "kuma-system", "default", names.ExtSvcShortName, 9000)
	rdsApplied := func(cluster string) int {
		return m.counter(t, "http."+cluster+".rds."+cluster+".update_success")
	}

	// One keep-alive HTTP/1.1 connection: every request after the first
	// must reuse it, and Envoy must count one downstream connection.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	httpCx := "listener.outbound_" + httpCluster + ".downstream_cx_total"
	first := true
	get := func() (int, string) {
		t.Helper()
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+authzKeepAlive+"/get", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.True(t, first || reused, "the HTTP client opened a new connection")
		first = false
		require.Equal(t, 1, m.counter(t, httpCx), "Envoy accepted another connection on the keep-alive listener")
		return resp.StatusCode, string(b)
	}

	// One HTTP/2 connection for gRPC, never re-dialed.
	cc, err := grpc.NewClient("passthrough:///"+authzGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	grpcCx := "listener.outbound_" + grpcCluster + ".downstream_cx_total"
	health := healthpb.NewHealthClient(cc)
	check := func() error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		require.Equal(t, connectivity.Ready, cc.GetState(), "gRPC connection state")
		require.Equal(t, 1, m.counter(t, grpcCx), "Envoy accepted another connection on the gRPC listener")
		return err
	}

	code, body := get()
	require.Equal(t, 200, code, body)
	require.NoError(t, check())

	// awaitApplied waits (bounded) until Envoy applied a route update of
	// both tables, then returns when that was seen.
	awaitApplied := func(what string, httpBefore, grpcBefore int) time.Time {
		t.Helper()
		eventually(t, 20*time.Second, "Envoy applies the route tables "+what, func() error {
			if h, g := rdsApplied(httpCluster), rdsApplied(grpcCluster); h <= httpBefore || g <= grpcBefore {
				return fmt.Errorf("rds update_success http %d->%d grpc %d->%d", httpBefore, h, grpcBefore, g)
			}
			return nil
		})
		return time.Now()
	}
	// within polls cond on the open connections until it holds, at most
	// revocationBound after applied.
	within := func(what string, applied time.Time, cond func() error) {
		t.Helper()
		var err error
		for err = cond(); err != nil && time.Since(applied) < revocationBound; err = cond() {
			time.Sleep(50 * time.Millisecond)
		}
		require.NoError(t, err, "%s within %v of Envoy applying the update", what, revocationBound)
		t.Logf("%s %v after Envoy applied the route update", what, time.Since(applied).Round(time.Millisecond))
	}

	h0, g0 := rdsApplied(httpCluster), rdsApplied(grpcCluster)
	writeFile(t, filepath.Join(drop, "mtp.yaml"), denyAuthzWeb)
	applied := awaitApplied("after the Deny policy", h0, g0)
	within("revoked: 403 and gRPC 7 on the open connections", applied, func() error {
		if code, body := get(); code != 403 {
			return fmt.Errorf("HTTP %d %s", code, body)
		}
		if err := check(); status.Code(err) != codes.PermissionDenied {
			return fmt.Errorf("gRPC: %v", err)
		}
		return nil
	})
	code, body = get()
	assert.Equal(t, 403, code)
	assert.Contains(t, body, `access to MeshExternalService "mes-keepalive" in mesh "default" from "authz-web" denied by MeshTrafficPermission "deny-authz-web"`)
	err = check()
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), `denied by MeshTrafficPermission "deny-authz-web"`)
	h1, g1 := rdsApplied(httpCluster), rdsApplied(grpcCluster)
	require.NoError(t, os.Remove(filepath.Join(drop, "mtp.yaml")))
	applied = awaitApplied("after the Deny policy is removed", h1, g1)
	within("granted: 200 and gRPC OK on the same connections", applied, func() error {
		if code, body := get(); code != 200 {
			return fmt.Errorf("HTTP %d %s", code, strings.TrimSpace(body))
		}
		return check()
	})
}
