package accesslog

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testnet"
)

// sink collects the lines sent to a loopback TCP listener.
type sink struct {
	addr  string
	lines func() []string
}

func newSink(t *testing.T) *sink {
	t.Helper()
	addr, lines := testnet.LineSink(t)
	return &sink{addr: addr, lines: lines}
}

func (s *sink) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.lines()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink got %d lines, want %d: %q", len(got), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writer opens a FIFO as Envoy does (write-only, append).
func writer(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestRelayForwardsTextAndJSONMessages(t *testing.T) {
	s := newSink(t)
	r := New(nil)
	defer r.Close()
	fifo := filepath.Join(t.TempDir(), "fifos", "default.web.fifo")
	if err := r.Ensure(fifo); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("FIFO %s: %v %v", fifo, st.Mode(), err)
	}
	w := writer(t, fifo)
	fmt.Fprintf(w, `{"address":%q,"message":"GET /a 200\n"}`+"\n", s.addr)
	fmt.Fprintf(w, `{"address":%q,"message":{"code":200,"path":"/b"}}`+"\n", s.addr)
	got := s.wait(t, 2)
	if got[0] != "GET /a 200" || got[1] != `{"code":200,"path":"/b"}` {
		t.Fatalf("sink got %q", got)
	}
	if r.Relayed.Load() != 2 || r.Dropped.Load() != 0 {
		t.Fatalf("relayed %d dropped %d", r.Relayed.Load(), r.Dropped.Load())
	}
}

// A writer that comes and goes (Envoy restarting) does not end the relay,
// and Ensure of the same FIFO again is a no-op.
func TestRelaySurvivesWritersComingAndGoing(t *testing.T) {
	s := newSink(t)
	r := New(nil)
	defer r.Close()
	fifo := filepath.Join(t.TempDir(), "n.fifo")
	for i := range 3 {
		if err := r.Ensure(fifo); err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(fifo, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, `{"address":%q,"message":"line %d\n"}`+"\n", s.addr, i)
		w.Close()
		s.wait(t, i+1)
	}
}

func TestRelayDropsWhatItCannotDeliver(t *testing.T) {
	s := newSink(t)
	r := New(nil)
	defer r.Close()
	fifo := filepath.Join(t.TempDir(), "n.fifo")
	if err := r.Ensure(fifo); err != nil {
		t.Fatal(err)
	}
	w := writer(t, fifo)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	fmt.Fprintln(w, "not json")
	fmt.Fprintln(w, `{"message":"no address"}`)
	fmt.Fprintf(w, `{"address":%q,"message":"to nowhere\n"}`+"\n", deadAddr)
	fmt.Fprintf(w, `{"address":%q,"message":"%s\n"}`+"\n", s.addr, strings.Repeat("x", MaxRecord))
	fmt.Fprintf(w, `{"address":%q,"message":"after all that\n"}`+"\n", s.addr)
	if got := s.wait(t, 1); got[0] != "after all that" {
		t.Fatalf("sink got %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Dropped.Load() != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %d, want 4 (not JSON, no address, unreachable, too long)", r.Dropped.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayLeavesARegularFileAlone(t *testing.T) {
	r := New(nil)
	defer r.Close()
	p := filepath.Join(t.TempDir(), "taken.fifo")
	if err := os.WriteFile(p, []byte("someone's file"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Ensure(p)
	if err == nil || !strings.Contains(err.Error(), "not a FIFO") {
		t.Fatalf("Ensure on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "someone's file" {
		t.Fatalf("file changed: %q", b)
	}
}

// A sink that never reads does not stall the relay: records beyond the
// queue are dropped, and Close returns.
func TestRelayNeverBlocksOnASlowSink(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // accepted, never read
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	r := New(nil)
	fifo := filepath.Join(t.TempDir(), "n.fifo")
	if err := r.Ensure(fifo); err != nil {
		t.Fatal(err)
	}
	w := writer(t, fifo)
	big := strings.Repeat("y", 1<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 4 * QueueLength {
			fmt.Fprintf(w, `{"address":%q,"message":"%s\n"}`+"\n", l.Addr().String(), big)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the writer blocked: the relay stopped reading")
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.Dropped.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing dropped although the sink reads nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2*WriteTimeout + 5*time.Second):
		t.Fatal("Close did not return")
	}
}
