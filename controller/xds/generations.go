package xds

import "sync"

// generations remembers a value per key for the current generation and the
// last one: a key asked for (get) or kept (put) in a generation lives into
// the next, and turn lets go of what neither generation used. Keys are
// rendered messages by identity: render hands the same message again for a
// service it did not re-render, and never modifies one it handed over.
// The zero value is ready; safe for concurrent use.
type generations[K comparable, V any] struct {
	mu         sync.Mutex
	last, next map[K]V
}

// get is k's value from this generation or the last (then kept in this one).
func (g *generations[K, V]) get(k K) (V, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.next[k]
	if !ok {
		if v, ok = g.last[k]; ok {
			g.keep(k, v)
		}
	}
	return v, ok
}

// put keeps k's value in this generation.
func (g *generations[K, V]) put(k K, v V) {
	g.mu.Lock()
	g.keep(k, v)
	g.mu.Unlock()
}

func (g *generations[K, V]) keep(k K, v V) {
	if g.next == nil {
		g.next = map[K]V{}
	}
	g.next[k] = v
}

// turn ends a generation.
func (g *generations[K, V]) turn() {
	g.mu.Lock()
	g.last, g.next = g.next, nil
	g.mu.Unlock()
}
