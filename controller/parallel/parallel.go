// Package parallel spreads independent pieces of one job over every core:
// parsing the files of a drop directory, marshalling the resources of a
// large DiscoveryResponse file. At 10k services those are seconds on one
// core; callers keep their serial order by writing each result into its own
// slot and using the slots in order afterwards.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// ForEach runs f(i) for every i in [0, n) on up to GOMAXPROCS goroutines
// and returns when all are done. f must touch no shared state except its
// own index's slot and what it locks (controller/render's caches).
func ForEach(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}
