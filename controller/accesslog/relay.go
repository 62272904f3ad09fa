// Package accesslog relays MeshAccessLog records of Tcp backends from
// Envoy to their TCP sinks. Envoy has no logger that writes lines to a TCP
// socket; as in Kuma (where kuma-dp relays them), each Envoy writes its
// records, one JSON object per line {"address": "HOST:PORT", "message":
// ...}, to a FIFO of its own, and the relay sends each message to its
// address: a string as written, an object as one line of JSON.
//
// The relay opens each FIFO read-write, so it never blocks on open and
// never sees end-of-file while Envoys come and go, and Envoy's open of the
// FIFO never blocks either. A slow or absent sink never stalls Envoy:
// each address has a bounded queue, and records that do not fit, or whose
// sink cannot be reached, are dropped and counted.
package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits of the relay.
const (
	// MaxRecord is the longest record read; longer ones are dropped.
	MaxRecord = 64 << 10
	// QueueLength is how many records wait for one address.
	QueueLength = 4096
	// DialTimeout and WriteTimeout bound each connection attempt and write.
	DialTimeout  = 5 * time.Second
	WriteTimeout = 5 * time.Second
	// RetryAfter is how long a sink that failed is not dialled again.
	RetryAfter = time.Second
)

// Relay reads FIFOs and forwards their records. Its methods are safe for
// concurrent use.
type Relay struct {
	log *slog.Logger

	mu      sync.Mutex
	fifos   map[string]*os.File
	senders map[string]*sender
	closed  bool
	done    chan struct{} // closed by Close: senders stop at once
	wg      sync.WaitGroup

	// Relayed and Dropped count records.
	Relayed, Dropped atomic.Int64
}

// New returns a relay that logs through log (nil = slog.Default()).
func New(log *slog.Logger) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{log: log, fifos: map[string]*os.File{}, senders: map[string]*sender{}, done: make(chan struct{})}
}

// Ensure makes each path a FIFO (mode 0600, created with its directory
// when missing) that the relay reads, before any Envoy is told to write to
// it. Paths already read are left alone; a regular file at a path is an
// error (it is not replaced).
func (r *Relay) Ensure(paths ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("access-log relay closed")
	}
	var errs []error
	for _, p := range paths {
		if _, ok := r.fifos[p]; ok {
			continue
		}
		f, err := openFIFO(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.fifos[p] = f
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.read(p, f)
		}()
	}
	return errors.Join(errs...)
}

func openFIFO(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("access-log FIFO %s: %w", p, err)
	}
	st, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := syscall.Mkfifo(p, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("access-log FIFO %s: %w", p, err)
		}
	case err != nil:
		return nil, fmt.Errorf("access-log FIFO %s: %w", p, err)
	case st.Mode()&os.ModeNamedPipe == 0:
		return nil, fmt.Errorf("access-log FIFO %s: exists and is not a FIFO (left alone)", p)
	}
	// Read-write: open does not wait for a writer, and reads never see
	// end-of-file when the last writer goes.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("access-log FIFO %s: %w", p, err)
	}
	return f, nil
}

// record is what Envoy writes per access.
type record struct {
	Address string          `json:"address"`
	Message json.RawMessage `json:"message"`
}

func (r *Relay) read(path string, f *os.File) {
	br := bufio.NewReaderSize(f, 16<<10)
	for {
		line, err := readLine(br)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				r.log.Warn("access-log relay: reading stopped", "fifo", path, "error", err)
			}
			return
		}
		if line == nil {
			r.Dropped.Add(1) // too long
			continue
		}
		var rec record
		if err := json.Unmarshal(line, &rec); err != nil || rec.Address == "" {
			r.Dropped.Add(1)
			continue
		}
		msg, ok := message(rec.Message)
		if !ok {
			r.Dropped.Add(1)
			continue
		}
		r.sender(rec.Address).enqueue(msg)
	}
}

// readLine reads one line; nil (and no error) for a line over MaxRecord,
// which is skipped whole.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > MaxRecord {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, nil
			}
			return bytes.TrimSpace(buf), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// message is the bytes a sink gets: a string as is, anything else as one
// line of JSON.
func message(raw json.RawMessage) ([]byte, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false
		}
		return []byte(s), true
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, false
	}
	buf.WriteByte('\n')
	return buf.Bytes(), true
}

func (r *Relay) sender(addr string) *sender {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.senders[addr]
	if s == nil {
		s = &sender{addr: addr, queue: make(chan []byte, QueueLength), relay: r}
		r.senders[addr] = s
		if !r.closed {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				s.run()
			}()
		}
	}
	return s
}

// Close stops reading and sending (queued records are dropped) and waits
// until every goroutine ended: at most one write timeout. The FIFOs stay
// (an Envoy may still hold one open).
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.done)
	for _, f := range r.fifos {
		f.Close()
	}
	for _, s := range r.senders {
		close(s.queue)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// sender writes one address's records over one connection.
type sender struct {
	addr  string
	queue chan []byte
	relay *Relay
}

func (s *sender) enqueue(msg []byte) {
	s.relay.mu.Lock()
	defer s.relay.mu.Unlock()
	if s.relay.closed {
		s.relay.Dropped.Add(1)
		return
	}
	select {
	case s.queue <- msg:
	default:
		s.relay.Dropped.Add(1)
	}
}

func (s *sender) run() {
	var conn net.Conn
	var failedAt time.Time
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for msg := range s.queue {
		select {
		case <-s.relay.done:
			return
		default:
		}
		if conn == nil {
			if !failedAt.IsZero() && time.Since(failedAt) < RetryAfter {
				s.relay.Dropped.Add(1)
				continue
			}
			c, err := net.DialTimeout("tcp", s.addr, DialTimeout)
			if err != nil {
				if failedAt.IsZero() {
					s.relay.log.Warn("access-log relay: cannot reach a Tcp backend; dropping its records until it answers", "address", s.addr, "error", err)
				}
				failedAt = time.Now()
				s.relay.Dropped.Add(1)
				continue
			}
			conn, failedAt = c, time.Time{}
		}
		conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
		if _, err := conn.Write(msg); err != nil {
			conn.Close()
			conn, failedAt = nil, time.Now()
			s.relay.Dropped.Add(1)
			continue
		}
		s.relay.Relayed.Add(1)
	}
}
