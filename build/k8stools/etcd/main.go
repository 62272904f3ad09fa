// Command etcd runs a single-member etcd for the test cluster from
// go.etcd.io/etcd/server/v3/embed. It listens on loopback only; with port 0
// the kernel picks the client port and the line
//
//	etcd ready: client-url=http://127.0.0.1:PORT
//
// on stdout says which, once the member serves. SIGTERM or SIGINT stops it.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "member directory (required)")
	client := flag.String("listen-client", "127.0.0.1:0", "loopback host:port for clients; port 0 picks a free one")
	peer := flag.String("listen-peer", "127.0.0.1:0", "loopback host:port for the (unused) peer listener")
	noFsync := flag.Bool("unsafe-no-fsync", false, "skip fsync: faster, loses data on a crash (tests only)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	readyTimeout := flag.Duration("ready-timeout", time.Minute, "give up when the member is not ready by then")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("etcd: -data-dir is required")
	}
	cu, err := loopbackURL(*client)
	if err != nil {
		log.Fatalf("etcd: -listen-client: %v", err)
	}
	pu, err := loopbackURL(*peer)
	if err != nil {
		log.Fatalf("etcd: -listen-peer: %v", err)
	}

	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = *logLevel
	cfg.LogOutputs = []string{"stderr"}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: start: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		log.Fatalf("etcd: %v", err)
	case <-time.After(*readyTimeout):
		e.Server.Stop()
		e.Close()
		log.Fatalf("etcd: not ready after %s", *readyTimeout)
	}
	fmt.Printf("etcd ready: client-url=http://%s\n", e.Clients[0].Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
		e.Close()
	case err := <-e.Err():
		e.Close()
		log.Fatalf("etcd: %v", err)
	}
}

// loopbackURL accepts host:port with a loopback IP: the test cluster's etcd
// has no authentication and must not be reachable from elsewhere.
func loopbackURL(hostport string) (*url.URL, error) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q is not a loopback IP address", host)
	}
	return &url.URL{Scheme: "http", Host: hostport}, nil
}
