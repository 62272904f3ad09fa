// Package cthread keeps the Go scheduler quiet when C threads (Envoy's
// workers) call into a Go shared library many thousands of times a second.
//
// The Go runtime judges a P's progress by its schedtick, which advances only
// when the scheduler runs a goroutine. A callback from a C thread runs on
// the thread's own locked goroutine and never passes the scheduler, so a
// busy Envoy worker's P looks stuck. After 10 ms sysmon starts "preempting"
// it: on every 20 µs tick that finds the worker in C between two callbacks
// it takes the P away and hands it to another thread (a futex wake-up and a
// context switch on the worker's CPU); the next callback then re-acquires a
// P on the slow path. In a one-worker Envoy with an empty Go module we
// measured 0.4-0.8 context switches per request and a quarter of the
// throughput lost to this alone.
//
// Tick yields once every Interval per P. The yield goes through the
// scheduler, so schedtick advances, sysmon sees progress, leaves the P with
// its worker and backs off to its 10 ms sleep.
package cthread

import (
	"runtime"
	"sync"
	"time"
)

// Interval is how often each P yields: half the runtime's 10 ms
// preemption threshold, so sysmon sees schedtick move between any two of
// its looks even when it sleeps its longest. A yield costs two thread
// hand-offs, so 200 per second per worker are noise.
const Interval = 5 * time.Millisecond

var epoch = time.Now()

// now and yield are variables for the unit tests.
var (
	now   = func() time.Duration { return time.Since(epoch) }
	yield = runtime.Gosched
)

// perP is reached through a sync.Pool because a pool's fast path is the
// current P's private slot: the Get and Put of one call see the same
// object, so each P keeps its own last-yield time without locks or thread
// ids. A garbage collection may drop it; the fresh one yields once.
type perP struct{ lastYield time.Duration }

var states = sync.Pool{New: func() any { return &perP{lastYield: -Interval} }}

// Tick yields the calling goroutine when this P has not yielded for
// Interval. Call it once per request from a callback entered from a C
// thread; it costs a pool round trip and a clock read.
func Tick() {
	s := states.Get().(*perP)
	t := now()
	if t-s.lastYield < Interval {
		states.Put(s)
		return
	}
	s.lastYield = t
	states.Put(s)
	yield()
}
