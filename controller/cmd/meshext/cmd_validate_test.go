package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/e2e/testenv"
)

// buildValidateTestBinary builds the real binary once per test into a temp dir.
func buildValidateTestBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshext")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func runValidateBinary(t *testing.T, bin, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
	}
	return o.String(), e.String(), code
}

// validateViolationLine is FILE:LINE: KIND MESH/NAME: FIELD.PATH: message.
var validateViolationLine = regexp.MustCompile(`^[^:]+:\d+: \w+ [^/ ]+/[^: ]+: [^:]+: .+$`)

func TestValidateCommand(t *testing.T) {
	bin := buildValidateTestBinary(t)
	root := testenv.RepoRoot()

	t.Run("examples are valid", func(t *testing.T) {
		stdout, stderr, code := runValidateBinary(t, bin, root, "validate", "examples/")
		assert.Equal(t, 0, code, "stderr: %s", stderr)
		assert.Equal(t, "examples/: 17 resources valid\n"+
			"plus Kuma's default policies: MeshTimeout default/mesh-timeout-all-default, "+
			"MeshCircuitBreaker default/mesh-circuit-breaker-all-default, MeshRetry default/mesh-retry-all-default\n", stdout)
	})

	t.Run("violations give exit 1 and one line each", func(t *testing.T) {
		dir := t.TempDir()
		bad := filepath.Join(dir, "bad.yaml")
		require.NoError(t, os.WriteFile(bad, []byte(`type: MeshExternalService
name: broken
mesh: default
spec:
  match:
    port: 0
    protocol: udp
  endpoints:
    - address: example.com
      port: https
    - address: unix://relative.sock
---
type: Dataplane
name: dp
mesh: default
networking:
  address: 127.0.0.1
  outbound:
    - port: 8080
      backendRef: {kind: MeshExternalService, name: a}
    - port: 8080
      backendRef: {kind: MeshExternalService, name: b}
`), 0o644))
		stdout, stderr, code := runValidateBinary(t, bin, dir, "validate", "bad.yaml")
		assert.Equal(t, 1, code)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		assert.Equal(t, []string{
			"bad.yaml:6: MeshExternalService default/broken: spec.match.port: port must be a valid (1-65535)",
			`bad.yaml:7: MeshExternalService default/broken: spec.match.protocol: "protocol" must be one of ["tcp", "grpc", "http", "http2"]`,
			// The parser's error hides the validator's "port must be a valid" on the same field.
			"bad.yaml:10: MeshExternalService default/broken: spec.endpoints[0].port: cannot unmarshal !!str `https` into int64",
			"bad.yaml:11: MeshExternalService default/broken: spec.endpoints[1].address: unix socket path must be an absolute file path (unix:///path/to/socket)",
			"bad.yaml:21: Dataplane default/dp: networking.outbound[1].port: port 8080 on 127.0.0.1 is already used by networking.outbound[0]",
		}, lines)
		for _, l := range lines {
			assert.Regexp(t, validateViolationLine, l)
		}
		assert.Contains(t, stderr, "5 problems; 0 of 2 resources valid")
	})

	t.Run("unparseable YAML gives FILE:LINE", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("type: Mesh\nname: default\nrouting:\n  x: [\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("type: Mesh\nname: other\n"), 0o644))
		stdout, _, code := runValidateBinary(t, bin, dir, "validate", ".")
		assert.Equal(t, 1, code)
		assert.Regexp(t, `^a\.yaml:\d+: invalid YAML: `, stdout)
		assert.Equal(t, 1, strings.Count(stdout, "\n"), "the good file adds no lines")
	})

	t.Run("special and oversized files are per-file problems", func(t *testing.T) {
		// A symlink to /dev/zero used to exhaust memory and a FIFO to block for good.
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("type: Mesh\nname: default\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "big.yaml"), []byte("type: Mesh\nname: big\n#"+strings.Repeat("x", 2000)+"\n"), 0o644))
		require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")))
		require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644))
		require.NoError(t, os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "dir.yaml", "inside.yaml"), []byte("type: Mesh\nname: inside\n"), 0o644))
		stdout, stderr, code := runValidateBinary(t, bin, dir, "validate", "--max-file-size", "1KiB", ".")
		assert.Equal(t, 1, code)
		assert.Equal(t, []string{
			"big.yaml:0: cannot read: file too large: 2023B, over the 1KiB limit (--max-file-size)",
			"dir.yaml:0: cannot read: not a regular file: it is a directory",
			"fifo.yaml:0: cannot read: not a regular file: it is a named pipe (FIFO)",
			"zero.yaml:0: cannot read: not a regular file: it is a character device",
		}, strings.Split(strings.TrimSpace(stdout), "\n"))
		assert.Contains(t, stderr, "4 problems; 1 of 1 resources valid")
	})

	t.Run("usage errors give exit 2", func(t *testing.T) {
		_, stderr, code := runValidateBinary(t, bin, root, "validate")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "Usage: meshext validate")
		_, stderr, code = runValidateBinary(t, bin, root, "validate", "--no-such-flag", "examples/")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "no-such-flag")
		_, stderr, code = runValidateBinary(t, bin, root, "validate", "does/not/exist")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "does/not/exist")
	})

	t.Run("help", func(t *testing.T) {
		_, stderr, code := runValidateBinary(t, bin, root, "validate", "--help")
		assert.Equal(t, 0, code)
		assert.Contains(t, stderr, "FILE:LINE: KIND MESH/NAME: FIELD.PATH: message")
		stdout, _, code := runValidateBinary(t, bin, root, "--help")
		assert.Equal(t, 0, code)
		assert.Contains(t, stdout, "validate")
	})

	t.Run("zone flag", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "z.yaml"), []byte(`type: MeshExternalService
name: pinned
labels:
  kuma.io/zone: east
spec:
  match: {port: 80}
  endpoints: [{address: 1.1.1.1, port: 80}]
`), 0o644))
		stdout, _, code := runValidateBinary(t, bin, dir, "validate", "z.yaml")
		assert.Equal(t, 1, code)
		assert.Contains(t, stdout, `z.yaml:4: MeshExternalService default/pinned: labels["kuma.io/zone"]: kuma.io/zone label should have default value`)
		_, _, code = runValidateBinary(t, bin, dir, "validate", "--zone", "east", "z.yaml")
		assert.Equal(t, 0, code)
	})
}
