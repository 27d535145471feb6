package readmodel

import "sync"

// Cache maps keys to values read from Postgres, dropping each key when the
// change feed reports a change to it. A value is served only while the
// model is fresh (its feed not lagging); a value read from Postgres is kept
// only if no change to its key was reported while it was being read, so a
// read that raced a write never leaves the old value behind.
type Cache[K comparable, V any] struct {
	fresh func() bool
	max   int

	mu      sync.RWMutex
	entries map[K]V
	// fills are the reads from Postgres under way, per key: a change to
	// the key (or a reset) bumps gen, and a fill that began under an older
	// gen is not kept.
	fills map[K]*fill
}

type fill struct {
	n   int    // fills of this key under way
	gen uint64 // bumped by each change reported meanwhile
}

// newCache returns a cache serving values while fresh reports true,
// holding at most max of them (one more evicts one at random).
func newCache[K comparable, V any](fresh func() bool, max int) *Cache[K, V] {
	return &Cache[K, V]{fresh: fresh, max: max, entries: map[K]V{}, fills: map[K]*fill{}}
}

// Get returns k's value if it is held and the model is fresh.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	var zero V
	if !c.fresh() {
		return zero, false
	}
	c.mu.RLock()
	v, ok := c.entries[k]
	c.mu.RUnlock()
	return v, ok
}

// Load returns k's value, from memory or else from load, which also says
// whether what it returned may be kept (a not-found, say, is not). While
// the model is not fresh, every call loads.
func (c *Cache[K, V]) Load(k K, load func() (V, bool, error)) (V, error) {
	if v, ok := c.Get(k); ok {
		return v, nil
	}
	if !c.fresh() {
		v, _, err := load()
		return v, err
	}
	c.mu.Lock()
	f := c.fills[k]
	if f == nil {
		f = &fill{}
		c.fills[k] = f
	}
	f.n++
	gen := f.gen
	c.mu.Unlock()

	v, keep, err := load()

	fresh := c.fresh()
	c.mu.Lock()
	if keep && err == nil && f.gen == gen && fresh {
		if _, held := c.entries[k]; !held && len(c.entries) >= c.max {
			for old := range c.entries { // map order: a random victim
				delete(c.entries, old)
				break
			}
		}
		c.entries[k] = v
	}
	if f.n--; f.n == 0 {
		delete(c.fills, k)
	}
	c.mu.Unlock()
	return v, err
}

// Invalidate drops k: a change to it was reported or made here.
func (c *Cache[K, V]) Invalidate(k K) {
	c.mu.Lock()
	delete(c.entries, k)
	if f := c.fills[k]; f != nil {
		f.gen++
	}
	c.mu.Unlock()
}

// InvalidateFunc drops every value drop reports true for, and keeps none
// of the fills under way (their values are not known yet).
func (c *Cache[K, V]) InvalidateFunc(drop func(V) bool) {
	c.mu.Lock()
	for k, v := range c.entries {
		if drop(v) {
			delete(c.entries, k)
		}
	}
	for _, f := range c.fills {
		f.gen++
	}
	c.mu.Unlock()
}

// Reset drops everything: changes may have gone unheard.
func (c *Cache[K, V]) Reset() {
	c.mu.Lock()
	c.entries = map[K]V{}
	for _, f := range c.fills {
		f.gen++
	}
	c.mu.Unlock()
}

// Len is how many values are held.
func (c *Cache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
