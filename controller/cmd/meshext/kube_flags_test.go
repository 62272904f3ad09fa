package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRunSourceFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(bad, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--source", "kubernetes", "--dir", t.TempDir()}, 2, "--dir and --source kubernetes exclude each other"},
		{[]string{"--dir", t.TempDir(), "--kubeconfig", bad}, 2, "--kubeconfig and --leader-* need --source kubernetes"},
		{[]string{"--source", "etcd"}, 2, `--source "etcd": want file or kubernetes`},
		{[]string{"--source", "kubernetes", "--kubeconfig", bad, "--status-listen", ""}, 1, "kubeconfig " + bad},
		{[]string{"--source", "kubernetes", "--cidr", "242.0.0.1/8", "--status-listen", ""}, 1, "MeshExternalServiceCIDR is invalid"},
	} {
		var stderr bytes.Buffer
		code := runMain(tc.args, &stderr)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, stderr.String())
		assert.Contains(t, stderr.String(), tc.want, "%v", tc.args)
	}
}
