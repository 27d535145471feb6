// Package events wakes the service's event streams: one LISTEN connection
// per service instance receives Postgres's NOTIFY for every new event (any
// instance may have written it) and wakes the streams of that tenant. A
// wake-up carries no data: each stream then reads the events after the last
// one it sent from Postgres, at its own pace, so a slow client never holds
// up the others or the writers, and a stream resumed by Last-Event-ID loses
// none and repeats none.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"lok8s.dev/provisioner/internal/store"
)

// Hub fans NOTIFY wake-ups out to subscribers.
type Hub struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	mu   sync.Mutex
	subs map[uuid.UUID]map[chan struct{}]struct{}
}

// NewHub returns a hub listening on pool's database once Run runs.
func NewHub(pool *pgxpool.Pool, logger *slog.Logger) *Hub {
	return &Hub{pool: pool, logger: logger, subs: map[uuid.UUID]map[chan struct{}]struct{}{}}
}

// Subscribe returns a channel that receives a wake-up (coalesced: at most
// one pending) whenever the tenant has a new event, and a function that
// ends the subscription.
func (h *Hub) Subscribe(tenantID uuid.UUID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[tenantID] == nil {
		h.subs[tenantID] = map[chan struct{}]struct{}{}
	}
	h.subs[tenantID][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[tenantID], ch)
		if len(h.subs[tenantID]) == 0 {
			delete(h.subs, tenantID)
		}
		h.mu.Unlock()
	}
}

// wake wakes the tenant's subscribers without ever blocking.
func (h *Hub) wake(tenantID uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[tenantID] {
		select {
		case ch <- struct{}{}:
		default: // already has a wake-up pending
		}
	}
}

// wakeAll wakes every subscriber: after a lost connection, when
// notifications may have been missed.
func (h *Hub) wakeAll() {
	h.mu.Lock()
	tenants := make([]uuid.UUID, 0, len(h.subs))
	for t := range h.subs {
		tenants = append(tenants, t)
	}
	h.mu.Unlock()
	for _, t := range tenants {
		h.wake(t)
	}
}

// Run listens until ctx ends, reconnecting after errors.
func (h *Hub) Run(ctx context.Context) error {
	for {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return nil //nolint:nilerr // ctx ended: stopping is how Run ends, not a failure
		}
		h.logger.WarnContext(ctx, "event listener lost its connection; reconnecting", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		h.wakeAll()
	}
}

func (h *Hub) listen(ctx context.Context) error {
	pooled, err := h.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	// The connection will LISTEN: take it out of the pool for good.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+store.EventsChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		tenant, _, _ := strings.Cut(n.Payload, ":")
		if id, err := uuid.Parse(tenant); err == nil {
			h.wake(id)
		}
	}
}
