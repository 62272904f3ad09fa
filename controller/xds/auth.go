package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshext/meshext/controller/pki"
)

// Who may talk to the xDS server, and as which node:
//
//   - unix socket (the default): the socket is 0600 in a 0700 directory, and
//     every connection's peer uid (SO_PEERCRED) must be this process's or
//     root's. Such a peer can read our files anyway, so it may ask for any node.
//   - mTLS over TCP: the client certificate must chain to the xDS CA and
//     carry the SPIFFE ID spiffe://meshext-xds/node/<node id>; every request
//     of the connection must name exactly that node.
//   - plain TCP only with --ads-insecure: anyone who connects gets any node.
//
// On every stream (ADS and the per-type services, SotW and delta) the first
// request fixes the node; a request naming another node, or a node the
// peer's identity does not allow, ends the stream with PermissionDenied
// before anything is sent.

// TrustDomain is the SPIFFE trust domain of xDS client and server certificates.
const TrustDomain = "meshext-xds"

// CADirName is the directory of the xDS CA inside meshext run's state directory.
const CADirName = "xds-ca"

// Lifetimes of the certificates of the xDS CA.
const (
	// ServerCertLifetime: the server certificate lives in memory and is
	// reissued after two thirds of it.
	ServerCertLifetime = 30 * 24 * time.Hour
	// DefaultClientCertLifetime: `meshext bootstrap` writes the client
	// certificate to files Envoy reads at start; renew by running it again.
	DefaultClientCertLifetime = 365 * 24 * time.Hour
)

const nodeIDPrefix = "spiffe://" + TrustDomain + "/node/"

// CADir is where the xDS CA lives in stateDir.
func CADir(stateDir string) string { return filepath.Join(stateDir, CADirName) }

// LoadOrCreateCA loads the xDS CA kept in stateDir, making it on first use.
func LoadOrCreateCA(stateDir string) (ca *pki.CA, created bool, err error) {
	td, err := pki.SPIFFEID(TrustDomain)
	if err != nil {
		return nil, false, err
	}
	return pki.LoadOrCreateCA(CADir(stateDir), pki.CAOptions{
		Subject: pkix.Name{CommonName: "meshext xDS CA", Organization: []string{"meshext"}},
		URIs:    []*url.URL{td},
	})
}

// NodeSPIFFEID is the identity a node's xDS client certificate carries.
func NodeSPIFFEID(node string) (string, error) {
	u, err := pki.SPIFFEID(TrustDomain, "node", node)
	if err != nil {
		return "", fmt.Errorf("node id %q cannot be an xDS client identity: %w", node, err)
	}
	return u.String(), nil
}

// nodeOf is the node id an identity may ask for ("" when it names none).
func nodeOf(id pki.Identity) string {
	node, ok := strings.CutPrefix(id.SPIFFEID, nodeIDPrefix)
	if !ok || node == "" || strings.Contains(node, "/") {
		return ""
	}
	return node
}

// IssueClientCert issues node's xDS client certificate (client auth only).
func IssueClientCert(ca *pki.CA, node string, lifetime time.Duration) (*pki.KeyPair, error) {
	id, err := NodeSPIFFEID(node)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(id)
	if err != nil {
		return nil, err
	}
	if lifetime == 0 {
		lifetime = DefaultClientCertLifetime
	}
	return ca.Issue(pki.LeafOptions{
		CommonName:  node,
		URIs:        []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Validity:    pki.Validity{Lifetime: lifetime},
	})
}

// ServerTLS is the TLS configuration of an mTLS xDS server: a server
// certificate from ca for names (DNS names or IP addresses, what Envoys
// dial), reissued in memory before it expires, and client certificates
// required and verified against ca.
func ServerTLS(ca *pki.CA, names []string) (*tls.Config, error) {
	if len(names) == 0 {
		return nil, errors.New("the xDS server certificate needs at least one name or address")
	}
	td, err := pki.SPIFFEID(TrustDomain, "control-plane")
	if err != nil {
		return nil, err
	}
	get, err := pki.ServingCertificate(ca, names, pki.LeafOptions{URIs: []*url.URL{td}, Validity: pki.Validity{Lifetime: ServerCertLifetime}})
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      ca.Pool(),
		GetCertificate: get,
	}, nil
}

// Endpoint is a bound listener of the xDS server with the way it
// authenticates Envoys.
type Endpoint struct {
	lis   net.Listener
	creds credentials.TransportCredentials // nil: plain TCP
	kind  string
}

// Endpoint kinds.
const (
	EndpointUnix     = "unix"
	EndpointMTLS     = "mtls"
	EndpointInsecure = "insecure"
)

// Addr is the address Envoys dial: unix:PATH, or HOST:PORT.
func (e *Endpoint) Addr() string {
	if e.kind == EndpointUnix {
		return "unix:" + e.lis.Addr().String()
	}
	return e.lis.Addr().String()
}

// Kind is EndpointUnix, EndpointMTLS or EndpointInsecure.
func (e *Endpoint) Kind() string { return e.kind }

// Listener is the bound listener.
func (e *Endpoint) Listener() net.Listener { return e.lis }

// Close closes the listener (a unix socket file is removed).
func (e *Endpoint) Close() error { return e.lis.Close() }

// UnixPath returns the socket path of a "unix:PATH" (or "unix://PATH")
// address, and whether addr is one.
func UnixPath(addr string) (string, bool) {
	rest, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return "", false
	}
	if p, ok := strings.CutPrefix(rest, "//"); ok {
		rest = p
	}
	return rest, true
}

// ListenUnix binds a unix socket at path, mode 0600, in a directory made
// private (0700, ours). A stale socket left by a process that died is
// replaced; one that still answers is an error.
func ListenUnix(path string, log *slog.Logger) (*Endpoint, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("ADS unix socket %q: want an absolute path", path)
	}
	if err := pki.EnsurePrivateDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("ADS unix socket directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("ADS unix socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("ADS unix socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The directory is private, so nobody could connect before the chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Endpoint{lis: lis, creds: &peerCredentials{log: log}, kind: EndpointUnix}, nil
}

// ListenMTLS binds addr (HOST:PORT) for mTLS with cfg (see ServerTLS).
func ListenMTLS(addr string, cfg *tls.Config) (*Endpoint, error) {
	if cfg == nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		return nil, errors.New("ADS mTLS: the TLS configuration must require and verify client certificates")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Endpoint{lis: lis, creds: credentials.NewTLS(cfg), kind: EndpointMTLS}, nil
}

// ListenInsecure binds addr (HOST:PORT) for plain gRPC without any
// authentication: whoever connects may ask for any node's config and secrets.
func ListenInsecure(addr string) (*Endpoint, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Endpoint{lis: lis, kind: EndpointInsecure}, nil
}

// UnixPeer is the AuthInfo of a unix-socket connection: the peer process's
// credentials as the kernel reports them (SO_PEERCRED), not as it claims.
type UnixPeer struct {
	PID      int32
	UID, GID uint32
}

// AuthType implements credentials.AuthInfo.
func (UnixPeer) AuthType() string { return "unix-peercred" }

// uidAllowed: our own uid, or root, which can read our files anyway.
func uidAllowed(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// peerCredentials is a gRPC server "handshake" for unix sockets: it reads
// the peer's uid from the kernel and refuses any other user than ours or
// root, as a second wall behind the socket's file permissions.
type peerCredentials struct{ log *slog.Logger }

func (c *peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("xDS: unix peer credentials on a %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, nil, err
	}
	if cerr != nil {
		return nil, nil, fmt.Errorf("xDS: SO_PEERCRED: %w", cerr)
	}
	if !uidAllowed(cred.Uid) {
		c.log.Warn("xDS connection refused: the peer process runs as another user", "uid", cred.Uid, "pid", cred.Pid)
		return nil, nil, fmt.Errorf("xDS: peer uid %d is neither %d nor root", cred.Uid, os.Geteuid())
	}
	return conn, UnixPeer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

func (c *peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("xDS: unix peer credentials are server-side only")
}

func (c *peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}
func (c *peerCredentials) Clone() credentials.TransportCredentials {
	return &peerCredentials{log: c.log}
}
func (c *peerCredentials) OverrideServerName(string) error { return nil }

// streamAuth is what one stream may ask for.
type streamAuth struct {
	peer string // for logs
	// allowed is the only node id the peer's identity permits ("" = any).
	allowed string
	// node is the node id the stream's first request named.
	node string
}

// guard checks every stream and request of one Server.
type guard struct {
	log *slog.Logger

	mu        sync.Mutex
	anonymous bool // an insecure endpoint is served
	sotw      map[int64]*streamAuth
	delta     map[int64]*streamAuth // the delta server numbers its streams separately
}

func newGuard(log *slog.Logger) *guard {
	return &guard{log: log, sotw: map[int64]*streamAuth{}, delta: map[int64]*streamAuth{}}
}

func denied(format string, a ...any) error {
	return status.Errorf(codes.PermissionDenied, format, a...)
}

// authorizePeer reads the verified identity of the stream's peer and says
// which node it may ask for ("" = any).
func (g *guard) authorizePeer(ctx context.Context) (*streamAuth, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, denied("xDS: no peer information")
	}
	a := &streamAuth{peer: p.Addr.String()}
	switch info := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		id, err := pki.PeerIdentity(info.State)
		if err != nil {
			return nil, denied("xDS: %v", err)
		}
		node := nodeOf(id)
		if node == "" {
			return nil, denied("xDS: certificate identity %q is not an xDS node identity (%s<node id>)", id, nodeIDPrefix)
		}
		a.allowed, a.peer = node, id.String()
	case UnixPeer:
		if !uidAllowed(info.UID) {
			return nil, denied("xDS: peer uid %d is not allowed", info.UID)
		}
		a.peer = fmt.Sprintf("unix peer uid %d pid %d", info.UID, info.PID)
	case nil:
		g.mu.Lock()
		anon := g.anonymous
		g.mu.Unlock()
		if !anon {
			return nil, denied("xDS: unauthenticated peer")
		}
	default:
		return nil, denied("xDS: unsupported authentication %q", info.AuthType())
	}
	return a, nil
}

func (g *guard) open(streams map[int64]*streamAuth, ctx context.Context, id int64) error {
	a, err := g.authorizePeer(ctx)
	if err != nil {
		g.log.Warn("xDS stream refused", "stream", id, "error", err)
		return err
	}
	g.mu.Lock()
	streams[id] = a
	g.mu.Unlock()
	return nil
}

func (g *guard) closed(streams map[int64]*streamAuth, id int64) {
	g.mu.Lock()
	delete(streams, id)
	g.mu.Unlock()
}

// request lets a request through when its node is the one the stream's
// peer may ask for. node is nil when the request carries none (only later
// requests of a stream may omit it); a node with an empty id is refused.
func (g *guard) request(streams map[int64]*streamAuth, id int64, node *corev3.Node, typeURL string) error {
	nodeID := node.GetId()
	g.mu.Lock()
	a := streams[id]
	var err error
	switch {
	case a == nil:
		err = denied("xDS: stream %d was not authorized", id)
	case node == nil && a.node == "":
		err = denied("xDS: the first request of a stream must name its node")
	case node == nil:
	case nodeID == "":
		err = denied("xDS: empty node id")
	case a.allowed != "" && nodeID != a.allowed:
		err = denied("xDS: %s may only ask for node %q, not %q", a.peer, a.allowed, nodeID)
	case a.node != "" && nodeID != a.node:
		err = denied("xDS: a stream of node %q asked for node %q", a.node, nodeID)
	default:
		a.node = nodeID
	}
	g.mu.Unlock()
	if err != nil {
		g.log.Warn("xDS request refused; stream closed", "stream", id, "node", nodeID, "type", typeURL, "error", status.Convert(err).Message())
	}
	return err
}

// fetch checks a unary Fetch* call, which has no stream.
func (g *guard) fetch(ctx context.Context, req *discoveryv3.DiscoveryRequest) error {
	a, err := g.authorizePeer(ctx)
	if err == nil {
		streams := map[int64]*streamAuth{0: a}
		err = g.request(streams, 0, req.GetNode(), req.GetTypeUrl())
	} else {
		g.log.Warn("xDS fetch refused", "error", err)
	}
	return err
}
