package readmodel

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/dbtest"
)

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// TestModel: an announcement drops its entry; a lost LISTEN connection
// sends every read to Postgres and, once back, drops what was held.
func TestModel(t *testing.T) {
	pool := dbtest.NewPool(t)
	m := New(pool, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
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
	if _, err := pool.Exec(context.Background(), `SELECT pg_notify($1, $2)`, Channel, "c:"+tenant.String()+":prod"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the announced entry dropped", func() bool { return !held(key) })
	if !held(other) {
		t.Fatal("another tenant's cluster of that name was dropped")
	}

	if _, err := pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+Channel+`'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "not fresh without its connection", func() bool { return !m.Fresh() })
	if held(other) {
		t.Fatal("served from memory while not listening")
	}
	waitFor(t, "fresh again", m.Fresh)
	if held(other) {
		t.Fatal("kept what it held across a lost connection")
	}
}
