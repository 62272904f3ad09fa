package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/xds"
)

func init() {
	register(&command{name: "bootstrap", summary: "write the Envoy bootstrap for meshext run's file drops or ADS", run: runBootstrap})
}

func runBootstrap(args []string) int { return bootstrapMain(args, os.Stdout, os.Stderr) }

func bootstrapMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o render.BootstrapOptions
	fs.StringVar(&o.XDS, "xds", "", "how Envoy gets config: file or ads (required)")
	xdsDir := fs.String("xds-dir", "", "meshext run's --xds-dir (--xds file); Envoy reads <dir>/<node>/cds.json and lds.json")
	fs.StringVar(&o.ADSAddress, "ads-address", "", "ADS server HOST:PORT, meshext run's --ads-listen (--xds ads)")
	fs.BoolVar(&o.Delta, "delta", false, "use incremental (delta) ADS instead of state of the world (--xds ads)")
	fs.StringVar(&o.NodeID, "node", render.DefaultNodeID, "Envoy node id: a Dataplane's <mesh>.<name>, or default")
	adminPort := fs.Uint("admin-port", render.DefaultAdminPort, "Envoy admin port (on --admin-address)")
	fs.StringVar(&o.AdminAddress, "admin-address", "127.0.0.1", "Envoy admin IP address")
	fs.StringVar(&o.UpstreamDNS, "upstream-dns", "", "IP:PORT resolver Envoy uses by default (e.g. meshext run's --dns-listen)")
	out := fs.String("out", "-", "output file (.yaml/.yml = YAML, else JSON); - = stdout as YAML")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext bootstrap --xds file --xds-dir DIR [--node ID] [--admin-port N] --out FILE
       meshext bootstrap --xds ads --ads-address HOST:PORT [--delta] [--node ID] [--admin-port N] --out FILE

Writes the Envoy bootstrap that connects an Envoy to 'meshext run':
  --xds file  CDS and LDS from DIR/<node>/cds.json and lds.json, reloaded when
              meshext renames a new version in; secrets from DIR/sds/.
  --xds ads   one ADS gRPC stream (CDS, LDS, SDS) to HOST:PORT.
The node id must match what meshext renders: a Dataplane's "<mesh>.<name>",
or "default" when there are no Dataplanes. Examples of each shape are in envoy/.

Flags:`)
		fs.PrintDefaults()
	}
	pos, code := parseInterspersed(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "meshext bootstrap: unexpected arguments %q\n", pos)
		return 2
	}
	if *adminPort == 0 || *adminPort > 65535 {
		fmt.Fprintf(stderr, "meshext bootstrap: --admin-port %d out of range\n", *adminPort)
		return 2
	}
	o.AdminPort = uint32(*adminPort)
	switch o.XDS {
	case render.XDSFile:
		if *xdsDir == "" {
			fmt.Fprintln(stderr, "meshext bootstrap: --xds file needs --xds-dir")
			return 2
		}
		abs, err := filepath.Abs(*xdsDir)
		if err != nil {
			fmt.Fprintf(stderr, "meshext bootstrap: %v\n", err)
			return 2
		}
		o.XDSDir = xds.NodeDir(abs, o.NodeID)
	case render.XDSADS:
		if *xdsDir != "" {
			fmt.Fprintln(stderr, "meshext bootstrap: --xds-dir is for --xds file")
			return 2
		}
	case "":
		fmt.Fprintln(stderr, "meshext bootstrap: --xds file|ads is required")
		fs.Usage()
		return 2
	}
	b, err := render.Bootstrap(o)
	if err != nil {
		fmt.Fprintf(stderr, "meshext bootstrap: %v\n", err)
		return 2
	}
	data, err := encodeBootstrap(b, *out)
	if err != nil {
		fmt.Fprintf(stderr, "meshext bootstrap: %v\n", err)
		return 2
	}
	if *out == "-" {
		stdout.Write(data)
		return 0
	}
	if err := writeFileAtomic(*out, data, 0o644); err != nil {
		fmt.Fprintf(stderr, "meshext bootstrap: %v\n", err)
		return 2
	}
	return 0
}

func encodeBootstrap(b proto.Message, out string) ([]byte, error) {
	if out == "-" || strings.HasSuffix(out, ".yaml") || strings.HasSuffix(out, ".yml") {
		return render.YAML(b)
	}
	return render.CanonicalJSON(b)
}
