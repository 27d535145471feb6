package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// EventsChannel is the Postgres NOTIFY channel announcing new events; its
// payload is "<tenant id>:<event id>".
const EventsChannel = "lok8s_events"

// Event is one change a user cares about, as database triggers recorded it
// in the same transaction as the change: its type (cluster.phase,
// cluster.observed, operation, step, addon) and a JSON object.
type Event struct {
	ID      int64
	Cluster string
	Type    string
	Data    json.RawMessage
	At      time.Time
}

// EventsAfter returns the tenant's events with ids above after, oldest
// first, at most limit; cluster, when not empty, keeps only that cluster's.
func (s *Store) EventsAfter(ctx context.Context, tenantID uuid.UUID, cluster string, after int64, limit int) ([]Event, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, cluster, type, data, at FROM events
		WHERE tenant_id = $1 AND ($2 = '' OR cluster = $2) AND id > $3
		ORDER BY id LIMIT $4`, tenantID, cluster, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		err := r.Scan(&e.ID, &e.Cluster, &e.Type, &e.Data, &e.At)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return events, nil
}

// LatestEventID is the id of the tenant's newest event (0 when none): where
// a stream without Last-Event-ID starts.
func (s *Store) LatestEventID(ctx context.Context, tenantID uuid.UUID) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM events WHERE tenant_id = $1`, tenantID).Scan(&id); err != nil {
		return 0, fmt.Errorf("latest event: %w", err)
	}
	return id, nil
}
