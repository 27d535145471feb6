package store_test

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/store"
)

// TestWritesSendNoNotify: a write (a create writes events and changes what
// the read model keeps; a revoke changes a token) sends no NOTIFY: a
// notifying transaction takes Postgres's cluster-wide notify lock at
// commit. Instead it records its changes in the change log, each key once.
func TestWritesSendNoNotify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// The channels the writers notified on before migration 00080.
	for _, channel := range []string{"lok8s_events", "lok8s_reads"} {
		if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
			t.Fatal(err)
		}
	}
	_, cursor, _, err := b.store.Changes(ctx, store.ChangeCursor{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM events WHERE cluster = 'prod'`); n < 2 {
		t.Fatalf("creating prod wrote %d events; the test needs a transaction writing several", n)
	}
	token, err := b.store.CreateToken(ctx, b.actor.TenantID, "ci", []byte("hash-ci"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store.RevokeToken(ctx, b.actor, b.actor.TenantID, token); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if n, err := conn.Conn().WaitForNotification(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a write notified: %+v (%v)", n, err)
	}

	keys, _, lost, err := b.store.Changes(ctx, cursor)
	if err != nil || lost {
		t.Fatalf("Changes: %v (lost %v)", err, lost)
	}
	tenant := b.actor.TenantID.String()
	want := []string{"c:" + tenant + ":prod", "e:" + tenant, "t:" + hex.EncodeToString([]byte("hash-ci"))}
	slices.Sort(keys)
	if !slices.Equal(keys, want) {
		t.Fatalf("changes %q, want %q", keys, want)
	}
	if n := b.count(t, `SELECT count(*) FROM changes WHERE key = $1`, "e:"+tenant); n != 1 {
		t.Errorf("the create's events recorded %d change rows, want 1", n)
	}
}

// TestChangesByCommit: a reader of the change log gets each committed
// transaction's keys once, at its first look after the commit, including a
// transaction that commits after a later one; it learns when rows it had
// not read were pruned.
func TestChangesByCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	announce := func(key string) func() {
		t.Helper()
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		if _, err := tx.Exec(ctx, `SELECT lok8s_announce($1)`, key); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	look := func(cursor store.ChangeCursor, want ...string) store.ChangeCursor {
		t.Helper()
		keys, next, lost, err := b.store.Changes(ctx, cursor)
		if err != nil || lost {
			t.Fatalf("Changes: %v (lost %v)", err, lost)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Fatalf("changes %q, want %q", keys, want)
		}
		return next
	}

	keys, cursor, lost, err := b.store.Changes(ctx, store.ChangeCursor{})
	if err != nil || !lost || len(keys) != 0 {
		t.Fatalf("first look: %q, lost %v, %v; want nothing, lost", keys, lost, err)
	}
	commitEarlier := announce("c:earlier") // its id is below later's
	commitLater := announce("c:later")
	commitLater()
	cursor = look(cursor, "c:later")
	commitEarlier()
	cursor = look(cursor, "c:earlier")
	cursor = look(cursor)

	// Pruning: the first run only notes the xmin, the second prunes below it.
	if _, err := b.store.PruneChanges(ctx); err != nil {
		t.Fatal(err)
	}
	announce("c:kept")()
	if _, err := b.store.PruneChanges(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM changes WHERE tx < (SELECT pruned_below FROM change_retention)`); n != 0 {
		t.Errorf("%d rows below the pruned bound", n)
	}
	if n := b.count(t, `SELECT count(*) FROM changes WHERE key = 'c:kept'`); n != 1 {
		t.Errorf("a change committed after the first run was pruned")
	}
	cursor = look(cursor, "c:kept")
	// A reader whose cursor is older than what was pruned.
	announce("c:late")()
	if _, err := b.pool.Exec(ctx, `UPDATE change_retention SET pruned_below = pg_snapshot_xmax(pg_current_snapshot())`); err != nil {
		t.Fatal(err)
	}
	if keys, _, lost, err := b.store.Changes(ctx, cursor); err != nil || !lost || len(keys) != 0 {
		t.Fatalf("after pruning past the cursor: %q, lost %v, %v; want nothing, lost", keys, lost, err)
	}
}
