package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/pki"
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
	xdsFormat := fs.String("xds-format", "json", "meshext run's --xds-format (--xds file): json, or pb for cds.pb and lds.pb")
	fs.StringVar(&o.ADSAddress, "ads-address", "", "ADS server, meshext run's --ads-listen (--xds ads): unix:PATH, or HOST:PORT (mTLS)")
	stateDir := fs.String("state-dir", "", "meshext run's --state-dir: its xDS CA issues this node's client certificate (--ads-address HOST:PORT)")
	certDir := fs.String("cert-dir", "", "where the node's xDS client certificate and key (0600) and the xDS CA go (default: the directory of --out)")
	serverName := fs.String("ads-server-name", "", "DNS name or IP the ADS server certificate must carry (default: the --ads-address host)")
	certValidity := fs.Duration("cert-validity", xds.DefaultClientCertLifetime, "lifetime of the node's xDS client certificate; run this command again to renew it")
	fs.BoolVar(&o.ADSInsecure, "ads-insecure", false, "plain TCP without authentication, for a meshext run --ads-insecure")
	fs.BoolVar(&o.Delta, "delta", false, "use incremental (delta) ADS instead of state of the world (--xds ads)")
	fs.StringVar(&o.NodeID, "node", render.DefaultNodeID, "Envoy node id: a Dataplane's <mesh>.<name>, a ZoneEgress's .<name>, or default")
	zoneEgress := fs.String("zone-egress", "", "bootstrap the ZoneEgress of this name: node id .<name> (give its networking.admin.port as --admin-port)")
	adminPort := fs.Uint("admin-port", render.DefaultAdminPort, "Envoy admin port (on --admin-address)")
	fs.StringVar(&o.AdminAddress, "admin-address", "127.0.0.1", "Envoy admin IP address")
	fs.StringVar(&o.UpstreamDNS, "upstream-dns", "", "IP:PORT resolver Envoy uses by default (e.g. meshext run's --dns-listen)")
	out := fs.String("out", "-", "output file (.yaml/.yml = YAML, else JSON); - = stdout as YAML")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext bootstrap --xds file --xds-dir DIR [--node ID] [--admin-port N] --out FILE
       meshext bootstrap --xds ads --ads-address unix:PATH [--delta] [--node ID] [--admin-port N] --out FILE
       meshext bootstrap --xds ads --ads-address HOST:PORT --state-dir DIR [--cert-dir DIR] [--delta] [--node ID] --out FILE

Writes the Envoy bootstrap that connects an Envoy to 'meshext run':
  --xds file  CDS and LDS from DIR/<node>/cds.json and lds.json, reloaded when
              meshext renames a new version in; secrets from DIR/sds/.
  --xds ads   one ADS gRPC stream (CDS, LDS, SDS) to meshext run's --ads-listen:
              unix:PATH  the owner-only socket (Envoy runs as the same user or root);
              HOST:PORT  mTLS: this command issues the node's client certificate
                         (SPIFFE ID spiffe://meshext-xds/node/<node>) from the xDS CA
                         in --state-dir and writes it, its key and the CA to --cert-dir.
The node id must match what meshext renders: a Dataplane's "<mesh>.<name>",
a ZoneEgress's ".<name>" (--zone-egress NAME), or "default" when there are
no Dataplanes. Examples of each shape are in envoy/.

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
	if *zoneEgress != "" {
		if o.NodeID != render.DefaultNodeID {
			fmt.Fprintln(stderr, "meshext bootstrap: --zone-egress and --node are exclusive")
			return 2
		}
		o.NodeID = names.ZoneEgressNodeID(*zoneEgress)
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
		f, err := xds.ParseFormat(*xdsFormat)
		if err != nil {
			fmt.Fprintf(stderr, "meshext bootstrap: --xds-format: %v\n", err)
			return 2
		}
		o.FileFormat = f
	case render.XDSADS:
		if *xdsDir != "" {
			fmt.Fprintln(stderr, "meshext bootstrap: --xds-dir is for --xds file")
			return 2
		}
		if _, unix := xds.UnixPath(o.ADSAddress); !unix && !o.ADSInsecure && o.ADSAddress != "" {
			files, err := issueXDSClientCert(o.NodeID, *stateDir, *certDir, *out, *certValidity, stderr)
			if err != nil {
				fmt.Fprintf(stderr, "meshext bootstrap: %v\n", err)
				return 2
			}
			files.ServerName = *serverName
			o.ADSTLS = files
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

// issueXDSClientCert issues node's xDS client certificate from the CA in
// stateDir and writes it, its key and the CA certificate into certDir
// (default: the directory of out), the certificate and key 0600.
func issueXDSClientCert(node, stateDir, certDir, out string, validity time.Duration, stderr io.Writer) (*render.ADSTLS, error) {
	if stateDir == "" {
		return nil, errors.New("--ads-address HOST:PORT is mTLS: give --state-dir (meshext run's) so this node's client certificate " +
			"is issued from its xDS CA, or use the unix socket, or --ads-insecure for a meshext run --ads-insecure")
	}
	if certDir == "" {
		if out == "-" {
			return nil, errors.New("--cert-dir is required when the bootstrap goes to stdout")
		}
		certDir = filepath.Dir(out)
	}
	certDir, err := filepath.Abs(certDir)
	if err != nil {
		return nil, err
	}
	ca, created, err := xds.LoadOrCreateCA(stateDir)
	if err != nil {
		return nil, fmt.Errorf("xDS CA: %w", err)
	}
	kp, err := xds.IssueClientCert(ca, node, validity)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(certDir, pki.PrivateDirMode); err != nil {
		return nil, err
	}
	// names.PathElement: a ZoneEgress's ".<name>" must not make hidden files.
	files := &render.ADSTLS{
		CertFile: filepath.Join(certDir, names.PathElement(node)+"-xds-client.crt"),
		KeyFile:  filepath.Join(certDir, names.PathElement(node)+"-xds-client.key"),
		CAFile:   filepath.Join(certDir, "xds-ca.crt"),
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{files.KeyFile, kp.KeyPEM, pki.KeyFileMode}, {files.CertFile, kp.CertPEM, pki.KeyFileMode}, {files.CAFile, ca.CertPEM, pki.CertFileMode}} {
		if err := pki.WriteFileAtomic(f.path, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	if created {
		fmt.Fprintf(stderr, "meshext bootstrap: created the xDS CA in %s\n", xds.CADir(stateDir))
	}
	fmt.Fprintf(stderr, "meshext bootstrap: node %s's xDS client certificate, valid until %s: %s (key %s, CA %s)\n",
		node, kp.Cert.NotAfter.UTC().Format(time.RFC3339), files.CertFile, files.KeyFile, files.CAFile)
	return files, nil
}
