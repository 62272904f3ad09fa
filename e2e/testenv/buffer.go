package testenv

import (
	"bytes"
	"sync"
)

// SyncBuffer collects a child process's output (exec.Cmd Stdout/Stderr,
// an Envoy's Log) for failure messages: exec copies into it from its own
// goroutine while the test may read it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
