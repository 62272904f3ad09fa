// Command standins runs the loopback stand-ins for tcpbin.com, httpbin.org and
// grpcbin.test.k6.io (package e2e/upstream) until SIGINT or SIGTERM.
//
// It prints one line starting with "ready " on stdout once every listener is
// bound, e.g.
//
//	ready tcpbin.com=127.0.0.11 httpbin.org=127.0.0.12 grpcbin.test.k6.io=127.0.0.13 echo=4242 echo-tls=4243 echo-mtls=4244 http=80 https=443 grpc=9000 grpcs=9001 ca=.run/standins-ca.crt hosts=.run/standins.hosts
//
// The ports printed are the bound ones (so port 0 flags work).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/e2e/upstream"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "standins:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("standins", flag.ContinueOnError)
	def, ports := upstream.DefaultAddrs(), upstream.DefaultPorts()
	tcpbin := fs.String("tcpbin-addr", def[upstream.TCPBin].String(), "loopback address serving tcpbin.com")
	httpbin := fs.String("httpbin-addr", def[upstream.HTTPBin].String(), "loopback address serving httpbin.org")
	grpcbin := fs.String("grpcbin-addr", def[upstream.GRPCBin].String(), "loopback address serving grpcbin.test.k6.io")
	fs.IntVar(&ports.Echo, "echo-port", ports.Echo, "tcpbin.com plain TCP echo port (0: ephemeral)")
	fs.IntVar(&ports.EchoTLS, "echo-tls-port", ports.EchoTLS, "tcpbin.com TLS echo port")
	fs.IntVar(&ports.EchoMTLS, "echo-mtls-port", ports.EchoMTLS, "tcpbin.com mTLS echo port (requires the seed's client certificate)")
	fs.IntVar(&ports.HTTP, "http-port", ports.HTTP, "httpbin.org HTTP port")
	fs.IntVar(&ports.HTTPS, "https-port", ports.HTTPS, "httpbin.org HTTPS port")
	fs.IntVar(&ports.GRPC, "grpc-port", ports.GRPC, "grpcbin.test.k6.io plaintext gRPC port")
	fs.IntVar(&ports.GRPCS, "grpcs-port", ports.GRPCS, "grpcbin.test.k6.io TLS gRPC port")
	caCert := fs.String("ca-cert", "", "use this CA certificate (PEM) instead of generating one; needs -ca-key")
	caKey := fs.String("ca-key", "", "private key (PEM) of -ca-cert")
	caOut := fs.String("ca-out", "", "write the CA certificate (PEM) here, for KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH")
	caKeyOut := fs.String("ca-key-out", "", "also write the CA private key here (mode 0600), so a restart can reuse the CA with -ca-cert/-ca-key")
	hostsOut := fs.String("hosts-out", "", "write an /etc/hosts-format file mapping the three names to their addresses, for --dns-hosts")
	verbose := fs.Bool("v", false, "log refused handshakes and other per-connection events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := upstream.Config{Addrs: map[string]netip.Addr{}, Ports: ports, Logger: log}
	for name, s := range map[string]string{upstream.TCPBin: *tcpbin, upstream.HTTPBin: *httpbin, upstream.GRPCBin: *grpcbin} {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("address for %s: %q is not an IP address", name, s)
		}
		cfg.Addrs[name] = a
	}
	for _, p := range []int{ports.Echo, ports.EchoTLS, ports.EchoMTLS, ports.HTTP, ports.HTTPS, ports.GRPC, ports.GRPCS} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("port %d out of range 0-65535", p)
		}
	}
	switch {
	case (*caCert == "") != (*caKey == ""):
		return errors.New("-ca-cert and -ca-key go together")
	case *caCert != "":
		ca, err := testpki.LoadCA(*caCert, *caKey)
		if err != nil {
			return err
		}
		cfg.CA = ca
	}

	set, err := upstream.Start(cfg)
	if err != nil {
		return err
	}
	defer set.Close()
	if *caOut != "" {
		if err := set.CA.WriteCertPEM(*caOut); err != nil {
			return fmt.Errorf("-ca-out: %w", err)
		}
	}
	if *caKeyOut != "" {
		if err := set.CA.WriteKeyPEM(*caKeyOut); err != nil {
			return fmt.Errorf("-ca-key-out: %w", err)
		}
	}
	if *hostsOut != "" {
		if err := os.MkdirAll(filepath.Dir(*hostsOut), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(*hostsOut, set.HostsFile(), 0o644); err != nil {
			return fmt.Errorf("-hosts-out: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Println(readyLine(set, *caOut, *hostsOut))
	<-ctx.Done()
	log.Info("stopping stand-ins")
	if err := set.Close(); err != nil {
		return err
	}
	log.Info("stand-ins stopped")
	return nil
}

func readyLine(set *upstream.Set, caOut, hostsOut string) string {
	f := []string{"ready"}
	for _, n := range []string{upstream.TCPBin, upstream.HTTPBin, upstream.GRPCBin} {
		f = append(f, n+"="+set.Addrs[n].String())
	}
	for _, p := range []struct {
		k string
		s *upstream.Server
	}{{"echo", set.Echo}, {"echo-tls", set.EchoTLS}, {"echo-mtls", set.EchoMTLS}, {"http", set.HTTP}, {"https", set.HTTPS}, {"grpc", set.GRPC}, {"grpcs", set.GRPCS}} {
		f = append(f, fmt.Sprintf("%s=%d", p.k, upstream.Port(p.s)))
	}
	if caOut != "" {
		f = append(f, "ca="+caOut)
	}
	if hostsOut != "" {
		f = append(f, "hosts="+hostsOut)
	}
	return strings.Join(f, " ")
}
