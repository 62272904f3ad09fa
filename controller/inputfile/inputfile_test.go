package inputfile

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestReadRefusesSpecialFiles puts every kind of non-regular file where a
// resource file is expected: each is refused at once, saying what it is, and
// none is opened (a FIFO without a writer would block a plain open forever).
func TestReadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.yaml")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock.yaml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct{ path, want string }{
		{fifo, "not a regular file: it is a named pipe (FIFO)"},
		{zero, "not a regular file: it is a character device"},
		{sub, "not a regular file: it is a directory"},
		{sock, "not a regular file: it is a unix socket"},
	} {
		done := make(chan error, 1)
		go func() { _, err := Read(tc.path, 0); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) || err.Error() != tc.want {
				t.Errorf("Read(%s) = %v, want %q", filepath.Base(tc.path), err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Read(%s) blocked", filepath.Base(tc.path))
		}
	}
}

func TestReadSizeLimitAndSymlinks(t *testing.T) {
	dir := t.TempDir()
	content := bytes.Repeat([]byte("a: b\n"), 1000)
	file := filepath.Join(dir, "a.yaml")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("a.yaml", link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		got, err := Read(p, int64(len(content)))
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("Read(%s) at exactly the limit: %d bytes, %v", filepath.Base(p), len(got), err)
		}
	}
	_, err := Read(file, int64(len(content))-1)
	if !errors.Is(err, ErrTooLarge) || err.Error() != "file too large: 5000B, over the 4999B limit" {
		t.Fatalf("one byte over the limit: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing.yaml"), 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	dangling := filepath.Join(dir, "dangling.yaml")
	if err := os.Symlink("nowhere.yaml", dangling); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dangling, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dangling symlink: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "16MiB": 16 << 20, "16M": 16 << 20, "512KiB": 512 << 10,
		"1gb": 1 << 30, "100B": 100, " 2 MiB ": 2 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "MiB", "1.5MiB", "16TiB", "99999999999GiB"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
	for n, want := range map[int64]string{16 << 20: "16MiB", 1536: "1536B", 2048: "2KiB", 1 << 30: "1GiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
