package envoyproc

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCPUSplitAndPin(t *testing.T) {
	prev, err := Affinity()
	if err != nil {
		t.Fatal(err)
	}
	envoy, load, ok := CPUSplit()
	if prev.Count() < 2 {
		if ok {
			t.Fatalf("split on %d CPU", prev.Count())
		}
		return
	}
	if !ok || envoy.Count() != 1 || load.Count() != prev.Count()-1 {
		t.Fatalf("split of %d CPUs: envoy %d, load %d, ok %v", prev.Count(), envoy.Count(), load.Count(), ok)
	}
	for c := 0; c < len(prev)*64; c++ {
		if envoy.IsSet(c) && load.IsSet(c) {
			t.Fatalf("CPU %d in both sets", c)
		}
		if (envoy.IsSet(c) || load.IsSet(c)) != prev.IsSet(c) {
			t.Fatalf("CPU %d: split does not cover the original set", c)
		}
	}
	runtime.LockOSThread() // read back on a thread Pin changed
	defer runtime.UnlockOSThread()
	t.Cleanup(func() { _ = Pin(0, prev) })
	if err := Pin(0, load); err != nil {
		t.Fatal(err)
	}
	var now unix.CPUSet
	if err := unix.SchedGetaffinity(0, &now); err != nil {
		t.Fatal(err)
	}
	if now != load {
		t.Fatalf("after Pin: %v CPUs, want the load set (%v)", now.Count(), load.Count())
	}
}
