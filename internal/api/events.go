package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/store"
)

// EventsHub wakes event streams when their tenant has new events.
type EventsHub interface {
	Subscribe(tenantID uuid.UUID) (wake <-chan struct{}, cancel func())
}

// StreamObserver is told what the event streams do.
type StreamObserver interface {
	// StreamOpened: a stream started; closed is called when it ends.
	StreamOpened() (closed func())
	// EventDelivered: an event created while its stream was open was
	// written to it lag after its creation.
	EventDelivered(lag time.Duration)
}

// Defaults of the event streams.
const (
	DefaultHeartbeat = 15 * time.Second
	// streamBatch is how many events a stream reads from Postgres at once.
	streamBatch = 500
	// streamWriteTimeout ends a stream whose client does not take its data:
	// it resumes by Last-Event-ID, and meanwhile holds nothing up.
	streamWriteTimeout = 10 * time.Second
	// xminPoll is how often a replica looks whether the oldest
	// transaction in flight has ended, while a stream holds events back.
	xminPoll = 10 * time.Millisecond
)

// streamAllEvents is GET /v1/events: every event of the caller's tenant.
func (s *Server) streamAllEvents(w http.ResponseWriter, r *http.Request) {
	s.streamEvents(w, r, "")
}

// streamClusterEvents is GET /v1/clusters/{name}/events.
func (s *Server) streamClusterEvents(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.clusterWithOperation(r); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.streamEvents(w, r, chi.URLParam(r, "name"))
}

// GapEvent is the event a stream sends first when the client resumes from
// an id whose successors were pruned.
const GapEvent = "stream.gap"

// streamEvents writes the tenant's events (of one cluster when cluster is
// set) as Server-Sent Events: those after Last-Event-ID first, then each new
// one as it commits, with comment heartbeats in between. The order is the
// store's (store.Position): an event comes once every transaction before
// its own has ended, so resuming after an id misses none.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, cluster string) {
	if s.Events == nil {
		s.writeProblem(w, r, &service.Error{Status: http.StatusServiceUnavailable, Slug: "not-ready", Title: "Not ready",
			Detail: "event streams are not enabled on this server"})
		return
	}
	tenant := principal(r.Context()).TenantID
	// Subscribe before reading, so nothing committed in between is missed.
	wake, cancel := s.Events.Subscribe(tenant)
	defer cancel()

	var last, pruned store.Position
	var seen map[int64]bool // committed before the stream started
	if v := strings.TrimSpace(r.Header.Get("Last-Event-ID")); v != "" {
		if v != FromStart {
			p, ok := decodeEventID(s.Keyring, tenant, v)
			if !ok {
				s.writeProblem(w, r, errEventID)
				return
			}
			last = p
		}
		var err error
		if pruned, err = s.store.PrunedThrough(r.Context()); err != nil {
			s.writeProblem(w, r, err)
			return
		}
	} else {
		p, ids, err := s.store.StreamStart(r.Context(), tenant)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		last, seen = p, make(map[int64]bool, len(ids))
		for _, id := range ids {
			seen[id] = true
		}
	}

	rc := http.NewResponseController(w)
	// A stream outlives the server's read timeout (meant for slow
	// request bodies): without this the connection's background read
	// would time out and end the stream.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.writeProblem(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// Delivery lag is that of events created while the stream is open:
	// those replayed from before (Last-Event-ID) are history, not lag.
	opened := time.Now()
	if s.Streams != nil {
		defer s.Streams.StreamOpened()()
	}
	write := func(chunk string) error {
		if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := fmt.Fprint(w, chunk); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write(": stream of lok8s events\n\n"); err != nil {
		return
	}
	if last.Before(pruned) {
		// Events after last are gone (older than the retention): say so,
		// so the client reads the current state instead of trusting it has
		// seen every change. No id: the client's Last-Event-ID stays.
		gap, _ := json.Marshal(map[string]any{"type": GapEvent,
			"message": "events after the given id were pruned (older than the retention): read the current state"})
		if err := write("event: " + GapEvent + "\ndata: " + string(gap) + "\n\n"); err != nil {
			return
		}
	}
	heartbeat := time.NewTicker(s.Heartbeat)
	defer heartbeat.Stop()
	for {
		events, heldBehind, err := s.store.EventsAfter(r.Context(), tenant, cluster, last, streamBatch)
		if err != nil {
			if r.Context().Err() == nil {
				s.logger.ErrorContext(r.Context(), "event stream: read events", "error", err, "request_id", requestID(r.Context()))
			}
			return
		}
		for _, e := range events {
			if seen[e.ID] {
				delete(seen, e.ID)
				last = e.Position
				continue
			}
			frame, err := eventFrame(s.Keyring, tenant, e, seesInternals(r))
			if err != nil {
				s.logger.ErrorContext(r.Context(), "event stream: encode event", "error", err, "event", e.ID)
				return
			}
			if err := write(frame); err != nil {
				return // the client left or is too slow: it resumes by Last-Event-ID
			}
			if s.Streams != nil && !e.At.Before(opened) {
				s.Streams.EventDelivered(max(time.Since(e.At), 0))
			}
			last = e.Position
		}
		if len(events) == streamBatch {
			continue
		}
		// Events held back wait for a transaction that may end without a
		// NOTIFY (aborted, or one that wrote no event): look again once
		// the oldest transaction in flight has ended.
		var again <-chan struct{}
		if heldBehind != 0 {
			again = s.xmin.past(heldBehind)
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.endStreams:
			return // shutting down: the client resumes by Last-Event-ID
		case <-wake:
		case <-again:
		case <-heartbeat.C:
			// A revoked or rotated token, or a session signed out, ends
			// its streams too (within a heartbeat).
			if active, err := s.store.PrincipalActive(r.Context(), principal(r.Context())); err != nil || !active {
				return
			}
			if err := write(": heartbeat\n\n"); err != nil {
				return
			}
		}
	}
}

// eventFrame is one SSE event: its opaque id, its type, and a JSON object
// with the same id, the type, the time and the event's own fields.
func eventFrame(k *seal.Keyring, tenant uuid.UUID, e store.Event, raw bool) (string, error) {
	var data map[string]any
	if err := json.Unmarshal(e.Data, &data); err != nil {
		return "", err
	}
	for _, k := range []string{"message", "error", "reason"} {
		if text, ok := data[k].(string); ok {
			data[k] = service.ForAudience(text, raw)
		}
	}
	id, err := encodeEventID(k, tenant, e.Position)
	if err != nil {
		return "", err
	}
	data["type"], data["at"], data["id"] = e.Type, e.At, id
	encoded, err := json.Marshal(data)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("id: %s\nevent: %s\ndata: %s\n\n", id, e.Type, encoded), nil
}

// xminWatch wakes streams holding events back behind a transaction in
// flight once the server's xmin has moved past it: one goroutine per
// replica polls it (every xminPoll, only while a stream waits), rather
// than every such stream reading its events again and again.
type xminWatch struct {
	store *store.Store

	mu      sync.Mutex
	waiting map[chan struct{}]uint64 // a stream's wake-up → the xmin it saw
	polling bool
}

// past returns a channel closed once the xmin is beyond xmin (or the
// watch could not read it: the stream then reads again anyway).
func (w *xminWatch) past(xmin uint64) <-chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting == nil {
		w.waiting = map[chan struct{}]uint64{}
	}
	w.waiting[ch] = xmin
	if !w.polling {
		w.polling = true
		go w.poll()
	}
	return ch
}

func (w *xminWatch) poll() {
	tick := time.NewTicker(xminPoll)
	defer tick.Stop()
	for range tick.C {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		now, err := w.store.Xmin(ctx)
		cancel()
		w.mu.Lock()
		for ch, seen := range w.waiting {
			if err != nil || now > seen {
				close(ch)
				delete(w.waiting, ch)
			}
		}
		if len(w.waiting) == 0 {
			w.polling = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}
