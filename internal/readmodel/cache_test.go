package readmodel

import (
	"errors"
	"testing"
)

// TestCache: what a cache keeps and serves, a fill racing a change
// included (pure logic; the announcements are tested through the API).
func TestCache(t *testing.T) {
	fresh := true
	c := newCache[string, int](func() bool { return fresh }, 2)
	loads := 0
	load := func(v int, keep bool, err error) func() (int, bool, error) {
		return func() (int, bool, error) { loads++; return v, keep, err }
	}

	if v, _ := c.Load("a", load(1, true, nil)); v != 1 {
		t.Fatalf("first load %d", v)
	}
	if v, _ := c.Load("a", load(2, true, nil)); v != 1 || loads != 1 {
		t.Fatalf("held value: %d after %d loads", v, loads)
	}

	// A change announced while a fill reads Postgres: the fill's value is
	// answered but not kept.
	c.Invalidate("a")
	v, _ := c.Load("a", func() (int, bool, error) { c.Invalidate("a"); return 3, true, nil })
	if _, held := c.Get("a"); v != 3 || held {
		t.Fatalf("a fill that raced a change was kept (%d, held %v)", v, held)
	}
	// The same across a reset.
	mustLoad(t, c, "a", func() (int, bool, error) { c.Reset(); return 4, true, nil })
	if _, held := c.Get("a"); held {
		t.Fatal("a fill that raced a reset was kept")
	}

	// Errors and what the loader says not to keep are not kept.
	if _, err := c.Load("b", load(0, false, errors.New("down"))); err == nil {
		t.Fatal("the loader's error was lost")
	}
	mustLoad(t, c, "b", load(5, false, nil))
	if _, held := c.Get("b"); held {
		t.Fatal("a value not to keep was kept")
	}

	// Not fresh: nothing served from memory, nothing kept.
	mustLoad(t, c, "c", load(6, true, nil))
	fresh = false
	loads = 0
	if v, _ := c.Load("c", load(7, true, nil)); v != 7 || loads != 1 {
		t.Fatalf("not fresh: served %d after %d loads", v, loads)
	}
	fresh = true
	if v, _ := c.Get("c"); v != 6 {
		t.Fatalf("fresh again: %d", v)
	}

	// Bounded: a third key evicts one.
	mustLoad(t, c, "d", load(8, true, nil))
	mustLoad(t, c, "e", load(9, true, nil))
	if n := c.Len(); n != 2 {
		t.Fatalf("%d held, at most 2", n)
	}
	c.InvalidateFunc(func(v int) bool { return v == 9 })
	if _, held := c.Get("e"); held {
		t.Fatal("InvalidateFunc kept a value it matched")
	}
}

// mustLoad loads key into c and fails t on the loader's error.
func mustLoad(t *testing.T, c *Cache[string, int], key string, load func() (int, bool, error)) {
	t.Helper()
	if _, err := c.Load(key, load); err != nil {
		t.Fatal(err)
	}
}
