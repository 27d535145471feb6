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

// pruneBatch bounds the rows one statement of PruneEvents deletes, so a
// large backlog is pruned without one long lock-holding statement.
const pruneBatch = 10000

// PruneEvents deletes the events older than before (all tenants) and
// records the highest id it deleted (see PrunedThrough). It returns how
// many it deleted.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var through *int64
	if err := s.pool.QueryRow(ctx, `SELECT max(id) FROM events WHERE at < $1`, before).Scan(&through); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	if through == nil {
		return 0, nil
	}
	// Recorded first: a stream resuming meanwhile is told of the gap even
	// if the deletes below are interrupted.
	if _, err := s.pool.Exec(ctx, `UPDATE event_retention SET pruned_through = greatest(pruned_through, $1)`, *through); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE id IN (
			SELECT id FROM events WHERE id <= $1 ORDER BY id LIMIT $2)`, *through, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}

// PrunedThrough is the highest event id pruned so far (0 when none): a
// stream resuming from a lower id has missed events that are gone.
func (s *Store) PrunedThrough(ctx context.Context) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT pruned_through FROM event_retention`).Scan(&id); err != nil {
		return 0, fmt.Errorf("pruned events: %w", err)
	}
	return id, nil
}
