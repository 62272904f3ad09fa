package envoyproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// CPUSplit gives Envoy the last CPU of this process's set and the load
// generators (this process, upstreams, wrk) the others, so a one-worker
// Envoy is the saturated part and throughput shows its own cost. ok is
// false with fewer than two CPUs.
func CPUSplit() (envoy, load unix.CPUSet, ok bool) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil || all.Count() < 2 {
		return envoy, load, false
	}
	last := -1
	for c := 0; c < len(all)*64; c++ {
		if all.IsSet(c) {
			last = c
		}
	}
	load = all
	load.Clear(last)
	envoy.Set(last)
	return envoy, load, true
}

// Pin sets the CPU affinity of every thread of pid (0 = this process).
// Threads created later inherit it from their creator, and so do children
// started afterwards.
func Pin(pid int, set unix.CPUSet) error {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(filepath.Base(t.Name()))
		if err != nil {
			continue
		}
		// A thread may exit between the listing and here.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin thread %d: %w", tid, err)
		}
	}
	return nil
}

// Affinity reads this process's CPU set, for restoring it afterwards.
func Affinity() (unix.CPUSet, error) {
	var s unix.CPUSet
	err := unix.SchedGetaffinity(0, &s)
	return s, err
}
