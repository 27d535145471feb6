package readmodel

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/changes"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/store"
)

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// TestModel: a change committed to the change log drops its entry; a feed
// that stops looking sends every read to Postgres, and one that starts
// again (its first look: changes may have been missed) drops what was held.
func TestModel(t *testing.T) {
	pool := dbtest.NewPool(t)
	logger := slog.New(slog.DiscardHandler)
	m := New(logger)
	run := func() (stop func()) {
		feed := changes.NewFeed(store.New(pool, logger), logger, m.Apply)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = feed.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	t.Cleanup(func() { stop() })
	waitFor(t, "fresh", m.Fresh)

	tenant := uuid.New()
	key := ClusterKey{Tenant: tenant, Name: "prod"}
	keep := func() ([]byte, bool, error) { return []byte("status"), true, nil }
	held := func(k ClusterKey) bool { _, ok := m.Statuses.Get(k); return ok }
	other := ClusterKey{Tenant: uuid.New(), Name: "prod"}
	for _, k := range []ClusterKey{key, other} {
		if _, err := m.Statuses.Load(k, keep); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(context.Background(), `SELECT lok8s_announce($1)`, "c:"+tenant.String()+":prod"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed entry dropped", func() bool { return !held(key) })
	if !held(other) {
		t.Fatal("another tenant's cluster of that name was dropped")
	}

	stop()
	waitFor(t, "not fresh without its feed", func() bool { return !m.Fresh() })
	if held(other) {
		t.Fatal("served from memory while its feed was not looking")
	}
	stop = run()
	waitFor(t, "fresh again", m.Fresh)
	if held(other) {
		t.Fatal("kept what it held across a feed's first look")
	}
}
