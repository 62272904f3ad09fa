package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshext/meshext/controller/accesslog"
	"github.com/meshext/meshext/controller/render"
)

func init() {
	register(&command{name: "access-log-relay", summary: "relay MeshAccessLog Tcp-backend records from Envoys to their TCP sinks",
		run: func(args []string) int { return runAccessLogRelay(context.Background(), args, os.Stdout, os.Stderr) }})
}

// runAccessLogRelay is what `meshext run` does for its own nodes, for
// Envoys fed by `meshext render` or by a remote `meshext run` over ADS: it
// makes each node's FIFO and relays its records until interrupted.
func runAccessLogRelay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("access-log-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("fifo-dir", "", "FIFO directory, the --access-log-fifo-dir the config was rendered with (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext access-log-relay --fifo-dir DIR NODE-ID...

Envoy cannot write access-log lines to a TCP socket. A MeshAccessLog Tcp
backend is rendered as records written to a FIFO per node,
DIR/<node-id>.fifo; this command (run next to the Envoys, before they
start) reads them and sends each message to its backend's address, until
interrupted. 'meshext run' does the same for the nodes it renders.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "meshext access-log-relay: --fifo-dir and at least one NODE-ID are required")
		fs.Usage()
		return 2
	}
	abs := absOrEmpty(*dir)
	relay := accesslog.New(slog.New(slog.NewTextHandler(stderr, nil)))
	var fifos []string
	for _, id := range fs.Args() {
		fifos = append(fifos, render.AccessLogFIFO(abs, id))
	}
	if err := relay.Ensure(fifos...); err != nil {
		fmt.Fprintf(stderr, "meshext access-log-relay: %v\n", err)
		relay.Close()
		return 1
	}
	for _, f := range fifos {
		fmt.Fprintf(stdout, "relaying %s\n", f)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	relay.Close()
	fmt.Fprintf(stdout, "relayed %d records, dropped %d\n", relay.Relayed.Load(), relay.Dropped.Load())
	return 0
}
