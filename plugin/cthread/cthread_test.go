package cthread

import (
	"runtime"
	"testing"
	"time"
)

// fake swaps the clock and the yield for the test and pins the goroutine
// to one P so the pool hands back the same per-P state.
func fake(t *testing.T) (clock *time.Duration, yields *int) {
	t.Helper()
	var c time.Duration = time.Hour
	n := 0
	oldNow, oldYield := now, yield
	now = func() time.Duration { return c }
	yield = func() { n++ }
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { now, yield = oldNow, oldYield; runtime.GOMAXPROCS(prev) })
	return &c, &n
}

func TestTickYieldsOncePerInterval(t *testing.T) {
	clock, yields := fake(t)
	Tick()
	if *yields != 1 {
		t.Fatalf("first tick: %d yields, want 1", *yields)
	}
	for i := 0; i < 1000; i++ {
		*clock += Interval / 1000 / 2
		Tick()
	}
	if *yields != 1 {
		t.Fatalf("within one interval: %d yields, want 1", *yields)
	}
	*clock += Interval
	Tick()
	if *yields != 2 {
		t.Fatalf("after an interval: %d yields, want 2", *yields)
	}
}

func TestIntervalBelowPreemptionThreshold(t *testing.T) {
	// The runtime retakes a P whose schedtick has not moved for 10 ms.
	if Interval*2 > 10*time.Millisecond {
		t.Fatalf("Interval %v: sysmon could see a stale schedtick", Interval)
	}
}

func BenchmarkTick(b *testing.B) {
	for b.Loop() {
		Tick()
	}
}

func TestProcs(t *testing.T) {
	for _, c := range []struct {
		args []string
		cpus int
		want int
	}{
		{[]string{"envoy", "-c", "b.yaml"}, 4, 5},
		{[]string{"envoy", "--concurrency", "1", "-c", "b.yaml"}, 4, 2},
		{[]string{"envoy", "--concurrency=3"}, 8, 4},
		{[]string{"envoy", "--concurrency", "0"}, 2, 3},    // 0 is not a worker count Envoy takes; fall back
		{[]string{"envoy", "--concurrency", "many"}, 2, 3}, // unparsable: Envoy's default
		{[]string{"envoy", "--concurrency"}, 2, 3},         // flag without value
		{[]string{"envoy", "--concurrency-x", "9"}, 1, 2},  // another flag
		{nil, 0, 2},
	} {
		if got := Procs(c.args, c.cpus); got != c.want {
			t.Errorf("Procs(%q, %d) = %d, want %d", c.args, c.cpus, got, c.want)
		}
	}
}
