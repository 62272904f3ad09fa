package run

import (
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/meshext/meshext/controller/xds"
)

// TestDropDirSpecialFiles puts everything that is not a readable resource
// file into a live drop directory (a FIFO, a symlink to /dev/zero, a
// directory and a unix socket named *.yaml, a file over the size limit)
// while edits keep arriving: each is reported with its file in /status, the
// edits are served, a good file replaced by a FIFO keeps its last good
// version, and the runner stops promptly.
func TestDropDirSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir(), StatusListen: "127.0.0.1:0", MaxFileSize: 64 << 10})
	waitStatus(t, r, 5*time.Second, "mes-a served", func(s *Status) bool { return service(s, "mes-a") != nil })

	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	dropWrite(t, dir, "b.yaml", tcpMES("mes-b", 4001, 9002))
	waitStatus(t, r, 5*time.Second, "FIFO reported, mes-b served", func(s *Status) bool {
		return service(s, "mes-b") != nil && hasProblem(s, "fifo.yaml:0: cannot read: not a regular file: it is a named pipe (FIFO)")
	})

	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(dir, "sock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	dropWrite(t, dir, "big.yaml", tcpMES("mes-big", 4002, 9003)+"# "+strings.Repeat("x", 64<<10)+"\n")
	dropWrite(t, dir, "c.yaml", tcpMES("mes-c", 4003, 9004))
	st := waitStatus(t, r, 5*time.Second, "every special file reported, mes-c served", func(s *Status) bool {
		return service(s, "mes-c") != nil &&
			hasProblem(s, "zero.yaml:0: cannot read: not a regular file: it is a character device") &&
			hasProblem(s, "dir.yaml:0: cannot read: not a regular file: it is a directory") &&
			hasProblem(s, "sock.yaml:0: cannot read: not a regular file: it is a unix socket") &&
			hasProblem(s, "big.yaml:0: cannot read: file too large:") && hasProblem(s, "over the 64KiB limit (--max-file-size)")
	})
	if service(st, "mes-big") != nil {
		t.Fatalf("the oversized file was read")
	}
	for _, name := range []string{"mes-a", "mes-b"} {
		if service(st, name) == nil {
			t.Fatalf("%s no longer served", name)
		}
	}

	// A good file replaced by a FIFO keeps serving what it last held.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "a.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	dropWrite(t, dir, "d.yaml", tcpMES("mes-d", 4004, 9005))
	st = waitStatus(t, r, 5*time.Second, "a.yaml reported, mes-d served", func(s *Status) bool {
		return service(s, "mes-d") != nil && hasProblem(s, "a.yaml:0: cannot read: not a regular file: it is a named pipe (FIFO)")
	})
	if a := service(st, "mes-a"); a == nil || a.Port != 4000 {
		t.Fatalf("mes-a should keep its last good version: %+v", a)
	}
	if !hasNote(st, "a.yaml: cannot be read; serving its last good version") {
		t.Errorf("no note about a.yaml's last good version: %v", st.RenderErrors)
	}
}

func hasNote(s *Status, substr string) bool {
	for _, n := range s.RenderErrors {
		if strings.Contains(n, substr) {
			return true
		}
	}
	return false
}

// TestDNSHostsSpecialFile gives --dns-hosts the same rules as the drop
// directory: a FIFO is refused at start, and one swapped in later is
// reported while the old entries stay and the runner still stops cleanly.
func TestDNSHostsSpecialFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "hosts")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir(), DNSListen: "127.0.0.1:0", DNSHosts: fifo})
	if err == nil || !strings.Contains(err.Error(), "not a regular file: it is a named pipe (FIFO)") {
		t.Fatalf("New with a FIFO as hosts file = %v", err)
	}

	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.21 tcpbin.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir(), DNSListen: "127.0.0.1:0", DNSHosts: hosts})
	if err := os.Remove(hosts); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(hosts, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the hosts watch reloads (and must not block)
	if got := dnsLookup(t, r.DNSAddr(), "tcpbin.com."); got != "127.0.0.21" {
		t.Fatalf("tcpbin.com = %q, want the previous hosts entry", got)
	}
	// startRunner's cleanup checks that Wait returns nil in time.
}

// dnsLookup returns the first A record the server at addr answers for name.
func dnsLookup(t *testing.T, addr, name string) string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	c := &mdns.Client{Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	for _, rr := range resp.Answer {
		if a, ok := rr.(*mdns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// TestDropDirRemovedAndRecreated removes the drop directory, brings it back
// (recreated in place, renamed over from a sibling, and as a swapped symlink)
// and checks that the last good config serves during each gap, /status
// reports the gap, and updates flow again once the directory is back.
func TestDropDirRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	dir := filepath.Join(parent, "drop")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
	out := t.TempDir()
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: out, StatusListen: "127.0.0.1:0"})
	waitStatus(t, r, 5*time.Second, "mes-a served", func(s *Status) bool {
		return service(s, "mes-a") != nil && s.Source.Status == SourceReady
	})
	cds := xds.CDSPath(out, "default")

	gap := func(step string) {
		t.Helper()
		st := waitStatus(t, r, 5*time.Second, step+": gap reported", func(s *Status) bool { return s.Source.Status == SourceMissing })
		if !strings.Contains(st.Source.Message, "drop directory "+dir+" missing since ") || st.Source.Since.IsZero() {
			t.Fatalf("%s: source %+v", step, st.Source)
		}
		if service(st, "mes-a") == nil || !strings.Contains(readFile(t, cds), "default_mes-a_") {
			t.Fatalf("%s: mes-a must keep being served during the gap", step)
		}
	}
	fill := func(d string, names ...string) {
		t.Helper()
		dropWrite(t, d, "gen.yaml", generatorYAML)
		for i, n := range names {
			dropWrite(t, d, n+".yaml", tcpMES(n, 4000+i, 9001+i))
		}
	}
	back := func(step string, want ...string) {
		t.Helper()
		waitStatus(t, r, 10*time.Second, step+": back", func(s *Status) bool {
			if s.Source.Status != SourceReady || s.Error != "" || len(s.Services) != len(want) {
				return false
			}
			for _, n := range want {
				if service(s, n) == nil {
					return false
				}
			}
			return true
		})
	}

	// Removed, then recreated in place.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	gap("removed")
	if err := os.Mkdir(filepath.Join(parent, ".staging"), 0o755); err != nil {
		t.Fatal(err)
	}
	fill(filepath.Join(parent, ".staging"), "mes-a", "mes-b")
	if err := os.Rename(filepath.Join(parent, ".staging"), dir); err != nil {
		t.Fatal(err)
	}
	back("renamed into place", "mes-a", "mes-b")
	dropWrite(t, dir, "c.yaml", tcpMES("mes-c", 4010, 9010))
	back("edit after rename", "mes-a", "mes-b", "mes-c")

	// Renamed away, then recreated with mkdir and files written into it.
	if err := os.Rename(dir, filepath.Join(parent, "old")); err != nil {
		t.Fatal(err)
	}
	gap("renamed away")
	dropWrite(t, filepath.Join(parent, "old"), "x.yaml", tcpMES("mes-x", 4020, 9020)) // no longer ours
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fill(dir, "mes-a", "mes-d")
	back("recreated", "mes-a", "mes-d")

	// Replaced by a symlink to a versioned directory, then the link swapped.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	gap("removed again")
	for _, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(parent, v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fill(filepath.Join(parent, "v1"), "mes-a", "mes-v1")
	fill(filepath.Join(parent, "v2"), "mes-a", "mes-v2")
	if err := os.Symlink("v1", dir); err != nil {
		t.Fatal(err)
	}
	back("symlink to v1", "mes-a", "mes-v1")
	dropWrite(t, filepath.Join(parent, "v1"), "e.yaml", tcpMES("mes-e", 4030, 9030))
	back("edit behind the symlink", "mes-a", "mes-v1", "mes-e")
	if err := os.Symlink("v2", filepath.Join(parent, ".drop.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(parent, ".drop.tmp"), dir); err != nil {
		t.Fatal(err)
	}
	back("symlink swapped to v2", "mes-a", "mes-v2")
}

// TestDNSHostsDirRecreated removes the hosts file's directory and brings it
// back with new entries: the old entries answer meanwhile, the new ones once
// it is back (the directory's watch is set again).
func TestDNSHostsDirRecreated(t *testing.T) {
	t.Parallel()
	hostsDir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(hostsDir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.21 tcpbin.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := startRunner(t, Config{Dir: t.TempDir(), XDS: XDSFile, XDSDir: t.TempDir(), DNSListen: "127.0.0.1:0", DNSHosts: hosts})
	if err := os.RemoveAll(hostsDir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := dnsLookup(t, r.DNSAddr(), "tcpbin.com."); got != "127.0.0.21" {
		t.Fatalf("while the hosts file is gone: tcpbin.com = %q, want the previous entry", got)
	}
	if err := os.Mkdir(hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, []byte("127.0.0.22 tcpbin.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); dnsLookup(t, r.DNSAddr(), "tcpbin.com.") != "127.0.0.22"; {
		if time.Now().After(deadline) {
			t.Fatalf("the recreated hosts file was not read within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadInputHashesEachFileOnce: readInput's per-file sums are the files'
// content hashes (parseChanged trusts them instead of hashing again), and
// the directory's sum moves with any content, name or read problem, even an
// edit that keeps a file's length.
func TestReadInputHashesEachFileOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "a: 1\n")
	write("b.yaml", "b: 2\n")
	read := func() *input {
		t.Helper()
		in, err := readInput(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	first := read()
	if len(first.files) != 2 || len(first.sums) != 2 {
		t.Fatalf("files %v, sums for %d", first.files, len(first.sums))
	}
	for _, f := range first.files {
		if first.sums[f] != sha256.Sum256(first.data[f]) {
			t.Errorf("%s: sum is not the content's hash", f)
		}
	}
	if again := read(); again.sum != first.sum {
		t.Error("the same directory read twice has two sums")
	}
	write("b.yaml", "b: 3\n") // same length
	edited := read()
	if edited.sum == first.sum {
		t.Error("an edit of the same length left the directory's sum")
	}
	if edited.sums[filepath.Join(dir, "a.yaml")] != first.sums[filepath.Join(dir, "a.yaml")] {
		t.Error("an untouched file's sum moved")
	}
	if err := os.Rename(filepath.Join(dir, "b.yaml"), filepath.Join(dir, "c.yaml")); err != nil {
		t.Fatal(err)
	}
	if renamed := read(); renamed.sum == edited.sum {
		t.Error("a rename left the directory's sum")
	}
}
