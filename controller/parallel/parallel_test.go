package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
)

func TestForEachRunsEveryIndexOnce(t *testing.T) {
	for _, procs := range []int{1, 2, 4} {
		old := runtime.GOMAXPROCS(procs)
		for _, n := range []int{0, 1, 2, 3, 1000} {
			seen := make([]int32, n)
			var calls atomic.Int32
			ForEach(n, func(i int) {
				atomic.AddInt32(&seen[i], 1)
				calls.Add(1)
			})
			if int(calls.Load()) != n {
				t.Fatalf("procs=%d n=%d: %d calls", procs, n, calls.Load())
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("procs=%d n=%d: index %d ran %d times", procs, n, i, c)
				}
			}
		}
		runtime.GOMAXPROCS(old)
	}
}
