package core

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkMemoryLatency chases pointers through a random cycle over
// size bytes, one 64-byte line per hop, so every load waits for the one
// before: ns/op is the latency of one dependent load from wherever a
// working set of that size lives (L2, L3, DRAM, plus TLB misses). It is
// the floor under a lookup that must touch cold lines one after another.
func BenchmarkMemoryLatency(b *testing.B) {
	for _, mib := range []int{1, 4, 8, 16, 32, 64, 256} {
		b.Run(fmt.Sprintf("size=%dMiB", mib), func(b *testing.B) {
			const words = 8 // one cache line of uint64
			lines := mib << 20 / 64
			mem := make([]uint64, lines*words)
			// Sattolo's algorithm: a random permutation that is one cycle.
			perm := make([]uint32, lines)
			for i := range perm {
				perm[i] = uint32(i)
			}
			r := rand.New(rand.NewPCG(1, 2))
			for i := lines - 1; i > 0; i-- {
				j := r.IntN(i)
				perm[i], perm[j] = perm[j], perm[i]
			}
			for i, next := range perm {
				mem[i*words] = uint64(next) * words
			}
			p := uint64(0)
			for b.Loop() {
				p = mem[p]
			}
			if p >= uint64(len(mem)) {
				b.Fatal("bad index")
			}
		})
	}
}
