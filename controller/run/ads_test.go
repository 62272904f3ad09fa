package run

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
)

func TestADSListenChoices(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		// Plain TCP is refused unless asked for: mTLS needs the CA's state directory.
		{Config{Dir: "d", XDS: XDSADS, ADSListen: "127.0.0.1:0"}, "pass --ads-insecure to serve plain TCP"},
		{Config{Dir: "d", XDS: XDSBoth, XDSDir: "/x", ADSListen: "127.0.0.1:0"}, "needs authentication"},
		{Config{Dir: "d", XDS: XDSADS, ADSListen: "0.0.0.0:18000", StateDir: state}, "--ads-server-names"},
		{Config{Dir: "d", XDS: XDSADS, ADSInsecure: true}, "--ads-insecure is for a TCP --ads-listen"},
		{Config{Dir: "d", XDS: XDSADS, ADSListen: "unix:rel.sock"}, "absolute"},
		{Config{Dir: "d", XDS: XDSADS, ADSServerNames: []string{"x"}}, "--ads-server-names is for a TCP"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}

	ok := func(cfg Config) Config {
		t.Helper()
		if err := cfg.check(); err != nil {
			t.Fatalf("check(%+v): %v", cfg, err)
		}
		return cfg
	}
	if c := ok(Config{Dir: "d", XDS: XDSADS, StateDir: state}); c.ADSListen != "unix:"+filepath.Join(state, "ads", "ads.sock") {
		t.Errorf("default ADS socket with a state dir: %q", c.ADSListen)
	}
	if c := ok(Config{Dir: "d", XDS: XDSADS}); !strings.HasPrefix(c.ADSListen, "unix:"+os.TempDir()) {
		t.Errorf("default ADS socket without a state dir: %q", c.ADSListen)
	}
	if c := ok(Config{Dir: "d", XDS: XDSADS, ADSListen: "127.0.0.1:0", StateDir: state, ADSServerNames: []string{"cp.example"}}); strings.Join(c.ADSServerNames, ",") != "127.0.0.1,cp.example" {
		t.Errorf("server names: %v", c.ADSServerNames)
	}
	ok(Config{Dir: "d", XDS: XDSADS, ADSListen: "127.0.0.1:0", ADSInsecure: true})
}

// With --ads-insecure the server says at start what that means.
func TestADSInsecureWarns(t *testing.T) {
	t.Parallel()
	var log testenv.SyncBuffer
	r, _ := startRunner(t, Config{Dir: t.TempDir(), XDS: XDSADS, ADSListen: "127.0.0.1:0", ADSInsecure: true,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	const want = `level=WARN msg="ADS server accepts plain TCP without authentication`
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about --ads-insecure at start:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(r.ADSAddr(), "127.0.0.1:") {
		t.Errorf("ADSAddr %q", r.ADSAddr())
	}
}
