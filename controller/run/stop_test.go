package run

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestStopDuringStuckRead stands for a read that never returns (a hung
// network file system; FIFOs no longer block): a stop request still ends
// Run within ShutdownTimeout, whether the read is stuck in a later reload
// or in the first one.
func TestStopDuringStuckRead(t *testing.T) {
	t.Parallel()
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	newStuckRunner := func(t *testing.T, okReads int32) (*Runner, string) {
		dir := t.TempDir()
		dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
		r, err := New(Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir(), Logger: testLogger(t), Debounce: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var reads atomic.Int32
		r.pipe.read = func(dir string, max int64) (*input, error) {
			if reads.Add(1) > okReads {
				<-stuck
			}
			return readInput(dir, max)
		}
		return r, dir
	}

	t.Run("in a reload", func(t *testing.T) {
		r, dir := newStuckRunner(t, 1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		dropWrite(t, dir, "b.yaml", tcpMES("mes-b", 4001, 9002))
		time.Sleep(300 * time.Millisecond) // the reload is now stuck
		cancel()
		done := make(chan error, 1)
		go func() { done <- r.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "a reload is still running") {
				t.Fatalf("Wait = %v, want the stuck reload named", err)
			}
		case <-time.After(ShutdownTimeout + 3*time.Second):
			t.Fatalf("Run did not stop within %v of the stop request", ShutdownTimeout+3*time.Second)
		}
	})

	t.Run("in the first load", func(t *testing.T) {
		r, _ := newStuckRunner(t, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Start(ctx) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "stopped before the first config was delivered") {
				t.Fatalf("Start = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Start did not return after its context ended")
		}
	})
}
