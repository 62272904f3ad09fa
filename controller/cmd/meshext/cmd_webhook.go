package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/meshext/meshext/controller/webhook"
)

func init() {
	register(&command{name: "webhook", summary: "Kubernetes validating admission webhook: kubectl apply of an invalid Kuma resource fails with Kuma's messages", run: runWebhook})
}

func runWebhook(args []string) int {
	if len(args) > 0 && args[0] == "config" {
		return webhookConfigMain(args[1:], os.Stdout, os.Stderr)
	}
	return webhookMain(args, os.Stderr)
}

func webhookMain(args []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "HTTPS address the API server calls (path "+webhook.Path+")")
	stateDir := fs.String("state-dir", "", "directory holding the webhook's CA in "+webhook.CADirName+"/ (made on first use; required)")
	names := fs.String("server-names", "", "comma-separated DNS names and IPs the API server dials (the serving certificate's; default the --listen host)")
	zone := fs.String("zone", "default", "local zone name, as meshext run's --zone")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext webhook --state-dir DIR [--listen HOST:PORT] [--server-names NAMES]
       meshext webhook config --state-dir DIR (--url URL | --service NAMESPACE/NAME[:PORT])

Serves a validating admission webhook over TLS for every Kuma kind meshext
reads: a create or update is checked as 'meshext validate' and 'meshext run
--source kubernetes' check it, and refused with Kuma's messages
("spec.match.port: must be in inclusive range [1, 65535]"). The serving
certificate comes from a CA kept in DIR/`+webhook.CADirName+` (made on first use,
key 0600); 'meshext webhook config' prints the ValidatingWebhookConfiguration
that trusts it (kubectl apply -f -). Several replicas share one CA by sharing
that directory (a Secret). SIGINT/SIGTERM stop it.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *stateDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "meshext webhook: --state-dir is required, and no arguments")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "meshext webhook: --log-level %q: %v\n", *logLevel, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "meshext webhook: --listen %q: %v\n", *listen, err)
		return 2
	}
	sans := splitList(*names)
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		sans = append(sans, host)
	}
	ca, err := webhook.LoadOrCreateCA(*stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "meshext webhook: CA: %v\n", err)
		return 1
	}
	tc, err := webhook.TLSConfig(ca, sans)
	if err != nil {
		fmt.Fprintf(stderr, "meshext webhook: %v\n", err)
		return 2
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "meshext webhook: %v\n", err)
		return 1
	}
	log.Info("meshext webhook serving", "address", lis.Addr().String(), "path", webhook.Path, "names", sans)
	if err := webhook.Serve(ctx, lis, tc, &webhook.Handler{Zone: *zone, Log: log}, log); err != nil {
		fmt.Fprintf(stderr, "meshext webhook: %v\n", err)
		return 1
	}
	return 0
}

func webhookConfigMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("webhook config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "", "the webhook's state directory (its CA is made there when missing; required)")
	url := fs.String("url", "", "URL the API server calls, https://HOST:PORT"+webhook.Path)
	service := fs.String("service", "", "Service the API server calls instead: NAMESPACE/NAME[:PORT] (port default 443)")
	failOpen := fs.Bool("fail-open", false, "failurePolicy Ignore: let requests through while the webhook is down (default: refuse them)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *stateDir == "" || (*url == "") == (*service == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "meshext webhook config: --state-dir and one of --url or --service are required")
		return 2
	}
	cc := webhook.ClientConfig{URL: *url, FailOpenOnTimeouts: *failOpen}
	if *service != "" {
		ns, rest, ok := strings.Cut(*service, "/")
		name, port, hasPort := strings.Cut(rest, ":")
		if !ok || ns == "" || name == "" {
			fmt.Fprintf(stderr, "meshext webhook config: --service %q: want NAMESPACE/NAME[:PORT]\n", *service)
			return 2
		}
		cc.ServiceNamespace, cc.ServiceName = ns, name
		if hasPort {
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil || p == 0 {
				fmt.Fprintf(stderr, "meshext webhook config: --service %q: bad port\n", *service)
				return 2
			}
			cc.ServicePort = int32(p)
		}
	}
	ca, err := webhook.LoadOrCreateCA(*stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "meshext webhook config: CA: %v\n", err)
		return 1
	}
	out, err := webhook.Configuration(cc, ca.CertPEM)
	if err != nil {
		fmt.Fprintf(stderr, "meshext webhook config: %v\n", err)
		return 2
	}
	_, _ = stdout.Write(out)
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
