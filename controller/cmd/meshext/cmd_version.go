package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=..."; else the module version.
var version = ""

func init() {
	register(&command{name: "version", summary: "print the meshext version", run: runVersion})
}

func runVersion(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: meshext version\n\nPrints meshext's version, Go version and the Envoy API it renders for.")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	v := version
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	fmt.Fprintf(os.Stdout, "meshext %s (%s, Envoy API v1.39)\n", v, runtime.Version())
	return 0
}
