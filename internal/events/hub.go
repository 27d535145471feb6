// Package events wakes the service's event streams: the replica's change
// feed (internal/changes) hands the hub every tenant with newly committed
// events (any replica or worker may have written them; the events triggers
// record "e:<tenant>" in the change log, migration 00080) and the hub wakes
// that tenant's streams. A wake-up carries no data: each stream then reads
// the events after the last one it sent from Postgres, at its own pace, so
// a slow client never holds up the others or the writers, and a stream
// resumed by Last-Event-ID loses none and repeats none.
package events

import (
	"strings"
	"sync"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/changes"
)

// Hub fans the change feed's wake-ups out to subscribers.
type Hub struct {
	mu   sync.Mutex
	subs map[uuid.UUID]map[chan struct{}]struct{}
}

// NewHub returns a hub; pass its Apply to the replica's change feed.
func NewHub() *Hub {
	return &Hub{subs: map[uuid.UUID]map[chan struct{}]struct{}{}}
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

// wakeAll wakes every subscriber: when changes may have been missed.
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

// Apply wakes the streams of the tenants a batch of the change feed says
// have new events ("e:<tenant id>"), or every stream when changes may have
// been missed.
func (h *Hub) Apply(b changes.Batch) {
	if b.Lost {
		h.wakeAll()
		return
	}
	for _, k := range b.Keys {
		tenant, ok := strings.CutPrefix(k, "e:")
		if !ok {
			continue // the read model's
		}
		if id, err := uuid.Parse(tenant); err == nil {
			h.wake(id)
		}
	}
}
