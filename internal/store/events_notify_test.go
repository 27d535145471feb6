package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/store"
)

// TestEventsNotifyOncePerTransaction: a transaction writing several events
// of a tenant (a create writes the cluster's phase and its operation)
// announces them with one notification on the events channel, its payload
// the tenant; the next transaction announces its own.
func TestEventsNotifyOncePerTransaction(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+store.EventsChannel); err != nil {
		t.Fatal(err)
	}
	// received collects the notifications that arrive within a second.
	received := func() []string {
		var payloads []string
		for {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			n, err := conn.Conn().WaitForNotification(wctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				return payloads
			}
			if err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, n.Payload)
		}
	}
	for _, name := range []string{"prod", "staging"} {
		if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster(name), b.enqueue); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, `SELECT count(*) FROM events WHERE cluster = $1`, name); n < 2 {
			t.Fatalf("creating %s wrote %d events; the test needs a transaction writing several", name, n)
		}
		got := received()
		if len(got) != 1 || got[0] != b.actor.TenantID.String() {
			t.Errorf("creating %s: notifications %q, want one, the tenant %s", name, got, b.actor.TenantID)
		}
	}
}
