package e2e

import (
	"os"
	"testing"

	"github.com/meshext/meshext/bpf/bpftest"
)

// As root the whole suite runs in a fresh network namespace with only
// loopback (bpftest re-executes the test binary): the stand-ins' fixed ports
// (80, 443, 4242, ...) cannot clash with a `make run` on the host, and no
// packet can leave the machine even when a redirect or resolver misbehaves.
func TestMain(m *testing.M) { os.Exit(bpftest.Run(m)) }
