// Package envoytest runs a real Envoy with the meshext filter for tests and
// benchmarks: a static bootstrap on loopback with ephemeral ports, clusters
// pointing at test upstreams, and the HTTP listener delivered through a
// watched LDS file so the filter config can change without a restart.
//
// It is a library (not _test code) so the benchmark harness can drive the
// same setup; see Start and cmd/meshext-filterbench.
package envoytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
)

// Flavor selects which filter the listener runs.
type Flavor int

const (
	// NoFilter: the same listener and routes, no meshext filter; requests
	// carry the cluster header themselves (the baseline for benchmarks).
	NoFilter Flavor = iota
	// DynamicModule: stock Envoy's envoy.filters.http.dynamic_modules with libmeshext.so.
	DynamicModule
	// NoopModule: the same module, but its do-nothing "meshext-noop" filter
	// (the cost of any Go dynamic module, for benchmarks).
	NoopModule
)

// Cluster is one upstream the listener can route to.
type Cluster struct {
	Name  string
	Addr  string // host:port on loopback
	HTTP2 bool   // h2c upstream (gRPC)
}

// Options configures Start.
type Options struct {
	Envoy     string // Envoy binary
	ModuleDir string // directory holding libmeshext.so (DynamicModule)
	Flavor    Flavor
	// FilterConfig is the meshext filter JSON (egress.FilterConfig).
	FilterConfig []byte
	// HTTPFilter, when set, replaces the whole rendered filter entry (a
	// protojson HttpFilter, e.g. from xdsfilter.DynamicModule).
	HTTPFilter json.RawMessage
	// VirtualHosts, when set, replace the single cluster_header route
	// (protojson VirtualHosts, e.g. from rbac.VirtualHosts).
	VirtualHosts []json.RawMessage
	Clusters     []Cluster
	// ClusterHeader is the header routes take the cluster from.
	ClusterHeader string
	Concurrency   int       // Envoy worker threads; 0 = 1
	Log           io.Writer // Envoy's stderr; nil = discard
	// MTLS, when set, makes the listener terminate TLS and require client
	// certificates signed by CAFile (source identity from the URI SAN).
	MTLS *MTLS
	// AccessLog, when set, is a file Envoy appends one line per request to:
	// "<code> <meshext:action> <meshext:mes> <meshext:policy> <meshext:source>".
	AccessLog string
	LogLevel  string // default "warning"
}

// MTLS names the listener's certificate files (PEM).
type MTLS struct{ CertFile, KeyFile, CAFile string }

// Instance is a running Envoy.
type Instance struct {
	// Listener is the HTTP listener's host:port.
	Listener string
	// Admin is the admin interface's host:port.
	Admin string
	// Listeners maps every bound listener's name to its host:port.
	Listeners map[string]string

	opts    Options
	name    string   // the Start listener
	waitFor []string // StartStatic listeners
	dir     string
	proc    *envoyproc.Proc
	version int
}

// Start writes a bootstrap into dir (which must exist and be private to
// this instance), starts Envoy and waits (bounded) until the listener is
// up. Stop it with Stop.
func Start(ctx context.Context, dir string, o Options) (*Instance, error) {
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.LogLevel == "" {
		o.LogLevel = "warning"
	}
	if o.ClusterHeader == "" {
		o.ClusterHeader = "x-meshext-cluster"
	}
	in := &Instance{opts: o, dir: dir}
	ldsDir := filepath.Join(dir, "lds")
	if err := os.MkdirAll(ldsDir, 0o755); err != nil {
		return nil, err
	}
	if err := in.writeLDS(o.FilterConfig); err != nil {
		return nil, err
	}
	boot, err := json.MarshalIndent(in.bootstrap(), "", " ")
	if err != nil {
		return nil, err
	}
	in.name = "meshext"
	if err := in.run(ctx, boot); err != nil {
		return nil, err
	}
	return in, nil
}

// StartStatic runs Envoy on a caller-made bootstrap (JSON) and waits until
// every listener in names is bound; Listeners maps name to host:port. Set
// the bootstrap's admin address to 127.0.0.1:0; listeners may use port 0.
func StartStatic(ctx context.Context, dir, envoy string, bootstrap []byte, names []string, log io.Writer) (*Instance, error) {
	in := &Instance{opts: Options{Envoy: envoy, Log: log, Concurrency: 1, LogLevel: "warning"}, dir: dir}
	in.waitFor = names
	if err := in.run(ctx, bootstrap); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Instance) run(ctx context.Context, boot []byte) error {
	o := in.opts
	bootPath := filepath.Join(in.dir, "bootstrap.json")
	if err := os.WriteFile(bootPath, boot, 0o644); err != nil {
		return err
	}
	env := []string{"GODEBUG=cgocheck=0"}
	if o.ModuleDir != "" {
		env = append(env, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH="+o.ModuleDir)
	}
	p, err := envoyproc.Start(envoyproc.Options{
		Bin: o.Envoy, Config: bootPath, WorkDir: in.dir,
		Concurrency: o.Concurrency, LogLevel: o.LogLevel,
		Args: []string{"--file-flush-interval-msec", "100", "--log-format", "[%Y-%m-%d %T.%e][%l] %v"},
		Env:  env, Log: o.Log, Context: ctx,
		// Ready once the awaited listeners are bound.
		Ready: func(p *envoyproc.Proc) bool { in.proc = p; in.Admin = p.Admin; return in.ready(ctx) },
	})
	if err != nil {
		return err
	}
	in.proc, in.Admin = p, p.Admin
	return nil
}

// ready fills Listeners (and Listener) once every awaited listener is bound.
func (in *Instance) ready(ctx context.Context) bool {
	addrs, err := in.proc.Listeners(ctx)
	if err != nil {
		return false
	}
	names := in.waitFor
	if in.name != "" {
		names = []string{in.name}
	}
	for _, n := range names {
		if addrs[n] == "" {
			return false
		}
	}
	in.Listeners = addrs
	if in.name != "" {
		in.Listener = addrs[in.name]
	}
	return true
}

// exited returns an error when Envoy has already exited.
func (in *Instance) exited() error {
	if in.proc.Alive() {
		return nil
	}
	return fmt.Errorf("envoy exited: %s", in.proc.Tail(2000))
}

// PID is Envoy's process id.
func (in *Instance) PID() int { return in.proc.Pid() }

// Alive reports whether Envoy is still running.
func (in *Instance) Alive() bool { return in.proc.Alive() }

// Stop kills Envoy and waits for it (bounded).
func (in *Instance) Stop() {
	if in.proc != nil {
		in.proc.Kill()
	}
}

// UpdateFilterConfig rewrites the LDS file with a new filter config and
// waits (bounded) until Envoy has applied it, without restarting Envoy.
func (in *Instance) UpdateFilterConfig(ctx context.Context, cfg []byte) error {
	before, err := in.Stat(ctx, "listener_manager.lds.update_success")
	if err != nil {
		return err
	}
	rejectedBefore, err := in.Stat(ctx, "listener_manager.lds.update_rejected")
	if err != nil {
		return err
	}
	if err := in.writeLDS(cfg); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := in.exited(); err != nil {
			return err
		}
		if rej, err := in.Stat(ctx, "listener_manager.lds.update_rejected"); err == nil && rej > rejectedBefore {
			return fmt.Errorf("LDS update rejected by Envoy")
		}
		n, err := in.Stat(ctx, "listener_manager.lds.update_success")
		if err == nil && n > before {
			// A changed filter chain is drained and replaced; re-read the port.
			if in.ready(ctx) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("LDS update not applied within 20s")
}

// Stat reads one counter or gauge from the admin interface.
func (in *Instance) Stat(ctx context.Context, name string) (int64, error) {
	return in.proc.StatInt(ctx, name)
}

// Stats returns the admin /stats text filtered by a regex.
func (in *Instance) Stats(ctx context.Context, filter string) (string, error) {
	return in.proc.GetContext(ctx, "/stats?filter="+filter)
}

type obj = map[string]any

func (in *Instance) bootstrap() obj {
	var clusters []any
	for _, c := range in.opts.Clusters {
		host, port, _ := strings.Cut(c.Addr, ":")
		p, _ := strconv.Atoi(port)
		cl := obj{
			"name":            c.Name,
			"type":            "STATIC",
			"connect_timeout": "2s",
			"load_assignment": obj{"cluster_name": c.Name, "endpoints": []any{obj{"lb_endpoints": []any{
				obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": p}}}},
			}}}},
		}
		if c.HTTP2 {
			cl["typed_extension_protocol_options"] = obj{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": obj{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": obj{"http2_protocol_options": obj{}},
			}}
		}
		clusters = append(clusters, cl)
	}
	return obj{
		"node":             obj{"id": "meshext-envoytest", "cluster": "meshext"},
		"admin":            obj{"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}}},
		"static_resources": obj{"clusters": clusters},
		"dynamic_resources": obj{"lds_config": obj{
			"resource_api_version": "V3",
			"path_config_source": obj{
				"path":              filepath.Join(in.dir, "lds", "lds.json"),
				"watched_directory": obj{"path": filepath.Join(in.dir, "lds")},
			},
		}},
	}
}

// writeLDS writes the listener atomically (temp file in the same
// directory, then rename) as Envoy's file subscription requires.
func (in *Instance) writeLDS(filterConfig []byte) error {
	in.version++
	var filters []any
	switch {
	case in.opts.HTTPFilter != nil:
		filters = append(filters, in.opts.HTTPFilter)
	case in.opts.Flavor == DynamicModule:
		filters = append(filters, DynamicModuleFilter(filterConfig))
	case in.opts.Flavor == NoopModule:
		f := DynamicModuleFilter(nil)
		f["typed_config"].(obj)["filter_name"] = "meshext-noop"
		filters = append(filters, f)
	}
	filters = append(filters, obj{"name": "envoy.filters.http.router", "typed_config": obj{
		"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
	hcm := obj{
		"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix": "meshext",
		"codec_type":  "AUTO",
		"route_config": obj{"name": "meshext", "virtual_hosts": []any{obj{
			"name": "all", "domains": []any{"*"},
			"routes": []any{obj{"match": obj{"prefix": "/"}, "route": obj{"cluster_header": in.opts.ClusterHeader, "timeout": "10s"},
				// Routing has read the header by the time this applies; it must
				// not reach the external service.
				"request_headers_to_remove": []any{in.opts.ClusterHeader}}},
		}}},
		"http_filters": filters,
		// As meshext renders it: an x-request-id only where a log writes it.
		"generate_request_id": in.opts.AccessLog != "",
	}
	if in.opts.VirtualHosts != nil {
		hcm["route_config"] = obj{"name": "meshext", "virtual_hosts": in.opts.VirtualHosts}
		hcm["strip_trailing_host_dot"] = true
	}
	if in.opts.AccessLog != "" {
		hcm["access_log"] = []any{obj{"name": "envoy.access_loggers.file", "typed_config": obj{
			"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
			"path":  in.opts.AccessLog,
			"log_format": obj{"text_format_source": obj{"inline_string": "%RESPONSE_CODE% %DYNAMIC_METADATA(meshext:action)% " +
				"%DYNAMIC_METADATA(meshext:mes)% %DYNAMIC_METADATA(meshext:policy)% %DYNAMIC_METADATA(meshext:source)%\n"}},
		}}}
	}
	chain := obj{"filters": []any{obj{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}}}
	if m := in.opts.MTLS; m != nil {
		chain["transport_socket"] = obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
			"@type":                      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
			"require_client_certificate": true,
			"common_tls_context": obj{
				"alpn_protocols":     []any{"h2", "http/1.1"},
				"tls_certificates":   []any{obj{"certificate_chain": obj{"filename": m.CertFile}, "private_key": obj{"filename": m.KeyFile}}},
				"validation_context": obj{"trusted_ca": obj{"filename": m.CAFile}},
			},
		}}
	}
	listener := obj{
		"@type":         "type.googleapis.com/envoy.config.listener.v3.Listener",
		"name":          "meshext",
		"address":       obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
		"filter_chains": []any{chain},
	}
	doc, err := json.MarshalIndent(obj{"version_info": strconv.Itoa(in.version), "resources": []any{listener}}, "", " ")
	if err != nil {
		return err
	}
	dir := filepath.Join(in.dir, "lds")
	tmp, err := os.CreateTemp(dir, ".lds-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(doc); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, "lds.json"))
}

// DynamicModuleFilter is the HTTP filter entry (JSON shape of
// envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter) for
// the meshext module with the given filter config.
func DynamicModuleFilter(filterConfig []byte) map[string]any {
	return obj{
		"name": "envoy.filters.http.dynamic_modules",
		"typed_config": obj{
			"@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
			// Loads ${ENVOY_DYNAMIC_MODULES_SEARCH_PATH}/libmeshext.so; a Go
			// runtime cannot be unloaded, so the module must never be closed.
			"dynamic_module_config": obj{"name": "meshext", "do_not_close": true},
			"filter_name":           "meshext",
			"filter_config": obj{
				"@type": "type.googleapis.com/google.protobuf.StringValue",
				"value": string(filterConfig),
			},
		},
	}
}

// BuildModule compiles libmeshext.so into dir with the go tool goBin
// ("go" when empty) from the module rooted at repoRoot.
func BuildModule(ctx context.Context, goBin, repoRoot, dir string) (string, error) {
	abi, err := SDKABIDir(ctx, goBin, repoRoot)
	if err != nil {
		return "", err
	}
	return buildCShared(ctx, goBin, repoRoot, filepath.Join(dir, "libmeshext.so"), "dynmod", "./plugin/cmd/libmeshext", "CGO_CFLAGS=-I"+abi)
}

// BuildGolangLibrary compiles libmeshext-golang.so, the filter for the
// contrib flavor (`make plugin-golang`), into dir.
func BuildGolangLibrary(ctx context.Context, goBin, repoRoot, dir string) (string, error) {
	return buildCShared(ctx, goBin, repoRoot, filepath.Join(dir, "libmeshext-golang.so"), "so", "./plugin/cmd/libmeshext-golang")
}

func buildCShared(ctx context.Context, goBin, repoRoot, out, tag, pkg string, env ...string) (string, error) {
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildmode=c-shared", "-tags", tag, "-o", out, pkg)
	cmd.Dir = repoRoot
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=1"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", filepath.Base(out), err, b)
	}
	return out, nil
}

// DynamicModulesSDK is the Go module (pinned in go.mod) whose abi/abi.h
// describes the dynamic-module ABI of the Envoy we run.
const DynamicModulesSDK = "github.com/envoyproxy/envoy/source/extensions/dynamic_modules"

// ContribSDK is the Go module (pinned in go.mod) holding Envoy's contrib Go
// filter, its Go SDK and the C headers of its ABI (contrib/golang).
const ContribSDK = "github.com/envoyproxy/envoy"

// SDKABIDir is the directory holding the pinned SDK's abi.h, downloaded
// into the module cache if needed.
func SDKABIDir(ctx context.Context, goBin, repoRoot string) (string, error) {
	dir, err := ModuleDir(ctx, goBin, repoRoot, DynamicModulesSDK)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "abi"), nil
}

// ModuleDir is the module cache directory of a module pinned in go.mod,
// downloaded if needed.
func ModuleDir(ctx context.Context, goBin, repoRoot, module string) (string, error) {
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", module)
	cmd.Dir = repoRoot
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(b, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no module directory in %q", module, b)
	}
	return m.Dir, nil
}

// BuildCReference compiles testdata/cref/meshext_ref.c (a C module making
// the meshext filter's calls into Envoy, see there) as libmeshext.so into
// dir with the C compiler cc ("cc" when empty). lean builds it without the
// decision metadata, like a denyMetadataOnly config.
func BuildCReference(ctx context.Context, cc, goBin, repoRoot, dir string, lean bool) (string, error) {
	if cc == "" {
		cc = "cc"
	}
	if goBin == "" {
		goBin = "go"
	}
	abi, err := SDKABIDir(ctx, goBin, repoRoot)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "libmeshext.so")
	args := []string{"-O2", "-shared", "-fPIC", "-I", abi,
		// Envoy's callbacks are resolved when Envoy loads the module.
		"-Wl,--unresolved-symbols=ignore-all", "-o", out,
		filepath.Join(repoRoot, "plugin", "envoytest", "testdata", "cref", "meshext_ref.c")}
	if lean {
		args = append([]string{"-DMESHEXT_REF_LEAN"}, args...)
	}
	if b, err := exec.CommandContext(ctx, cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build C reference module: %v\n%s", err, b)
	}
	return out, nil
}
