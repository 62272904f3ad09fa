package run

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/meshext/meshext/controller/xds"
)

// DefaultADSSocket is the unix socket ADS listens on when --ads-listen is
// not given: in StateDir, else in a private directory of this user under
// the temp directory. Either directory is made 0700 and the socket 0600.
func DefaultADSSocket(stateDir string) string {
	if stateDir != "" {
		if abs, err := filepath.Abs(stateDir); err == nil {
			stateDir = abs
		}
		return filepath.Join(stateDir, "ads", "ads.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("meshext-%d", os.Geteuid()), "ads.sock")
}

// checkADS settles how ADS is served: a unix socket, mTLS over TCP (which
// needs the state directory for its CA and names for its certificate), or
// plain TCP when the operator asked for it.
func (c *Config) checkADS() []error {
	if c.ADSListen == "" {
		c.ADSListen = "unix:" + DefaultADSSocket(c.StateDir)
	}
	if path, ok := xds.UnixPath(c.ADSListen); ok {
		var errs []error
		if !filepath.IsAbs(path) {
			errs = append(errs, fmt.Errorf("--ads-listen %q: want unix:/absolute/path", c.ADSListen))
		}
		if c.ADSInsecure {
			errs = append(errs, errors.New("--ads-insecure is for a TCP --ads-listen; a unix socket is always owner-only"))
		}
		if len(c.ADSServerNames) > 0 {
			errs = append(errs, errors.New("--ads-server-names is for a TCP --ads-listen (mTLS)"))
		}
		return errs
	}
	host, _, err := net.SplitHostPort(c.ADSListen)
	if err != nil {
		return []error{fmt.Errorf("--ads-listen %q: want unix:PATH or HOST:PORT: %v", c.ADSListen, err)}
	}
	if c.ADSInsecure {
		return nil
	}
	if c.StateDir == "" {
		return []error{fmt.Errorf("--ads-listen %s is TCP, which needs authentication: Envoys present client certificates "+
			"from meshext's xDS CA (mTLS), and that CA lives in --state-dir. Give --state-dir (and issue each Envoy's "+
			"certificate with 'meshext bootstrap --state-dir'), or listen on a unix socket (the default), or pass "+
			"--ads-insecure to serve plain TCP to anyone who can connect", c.ADSListen)}
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		c.ADSServerNames = append([]string{host}, c.ADSServerNames...)
	}
	if len(c.ADSServerNames) == 0 {
		return []error{fmt.Errorf("--ads-listen %s listens on every address: name the addresses or host names Envoys dial in --ads-server-names (the server certificate covers them)", c.ADSListen)}
	}
	return nil
}

// listenADS binds the ADS endpoint that checkADS settled on.
func (c *Config) listenADS() (*xds.Endpoint, error) {
	if path, ok := xds.UnixPath(c.ADSListen); ok {
		return xds.ListenUnix(path, c.Logger)
	}
	if c.ADSInsecure {
		return xds.ListenInsecure(c.ADSListen)
	}
	ca, created, err := xds.LoadOrCreateCA(c.StateDir)
	if err != nil {
		return nil, fmt.Errorf("xDS CA: %w", err)
	}
	if created {
		c.Logger.Info("xDS CA created; issue Envoy client certificates with 'meshext bootstrap --state-dir'", "dir", xds.CADir(c.StateDir))
	}
	cfg, err := xds.ServerTLS(ca, c.ADSServerNames)
	if err != nil {
		return nil, err
	}
	return xds.ListenMTLS(c.ADSListen, cfg)
}
