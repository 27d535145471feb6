package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Event is one change a user cares about, as database triggers recorded it
// in the same transaction as the change (migrations 00006 and 00017:
// lok8s_emit and the triggers calling it on clusters, operations,
// operation_steps and cluster_addons): its type (cluster.phase,
// cluster.observed, operation, step, addon) and a JSON object. The same
// trigger records "e:<tenant>" in the change log (migration 00080, see
// Changes), which wakes the tenant's streams on every replica.
type Event struct {
	Position
	Cluster string
	Type    string
	Data    json.RawMessage
	At      time.Time
}

// Position is where an event stands in its tenant's stream: streams are
// ordered by the writing transaction's id (Postgres's xid8), then by the
// event's id. Events are read only once every transaction below their own
// has ended (see EventsAfter), so nothing ever appears before a position
// a reader has passed. Events written before migration 00017 have Tx 0.
type Position struct {
	Tx uint64
	ID int64
}

// Before reports whether p comes before q.
func (p Position) Before(q Position) bool {
	return p.Tx < q.Tx || p.Tx == q.Tx && p.ID < q.ID
}

// EventsAfter returns the tenant's events after position after, in stream
// order, at most limit; cluster, when not empty, keeps only that cluster's.
//
// It returns only events whose transaction is below the xmin of the
// query's snapshot: every transaction below it has committed or aborted,
// so no event can later appear before the ones returned. heldBehind, when
// not zero, is that xmin: later events exist but were held back behind a
// transaction in flight. Read again once the xmin has moved past it (see
// Xmin), as that transaction may end without announcing anything (an
// abort, or a transaction that wrote no event).
func (s *Store) EventsAfter(ctx context.Context, tenantID uuid.UUID, cluster string, after Position, limit int) (events []Event, heldBehind uint64, err error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, tx::text::bigint, cluster, type, data, at, pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM events
		WHERE tenant_id = $1 AND ($2 = '' OR cluster = $2) AND (tx, id) > ($3::bigint::text::xid8, $4)
		ORDER BY tx, id LIMIT $5`, tenantID, cluster, int64(after.Tx), after.ID, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Event
		var tx, xmin int64
		if err := rows.Scan(&e.ID, &tx, &e.Cluster, &e.Type, &e.Data, &e.At, &xmin); err != nil {
			return nil, 0, fmt.Errorf("read events: %w", err)
		}
		if tx >= xmin { // and so are all after it
			heldBehind = uint64(xmin)
			break
		}
		e.Tx = uint64(tx)
		events = append(events, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read events: %w", err)
	}
	return events, heldBehind, nil
}

// Xmin is the oldest transaction still in flight on the server (or the
// next to be given an id when none is): events of transactions below it
// are final.
func (s *Store) Xmin(ctx context.Context) (uint64, error) {
	var xmin int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&xmin); err != nil {
		return 0, fmt.Errorf("xmin: %w", err)
	}
	return uint64(xmin), nil
}

// StreamStart is where a stream of the tenant without Last-Event-ID
// starts: after every event of a transaction that had ended when it
// started (below the snapshot's xmin). Events after that position already
// committed are in seen, the ids of events the stream must skip: it
// carries only what commits after it started.
func (s *Store) StreamStart(ctx context.Context, tenantID uuid.UUID) (after Position, seen []int64, err error) {
	var xmin int64
	if err := s.pool.QueryRow(ctx, `
		SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, coalesce(array_agg(id), '{}') FROM events
		WHERE tenant_id = $1 AND tx >= pg_snapshot_xmin(pg_current_snapshot())`, tenantID).Scan(&xmin, &seen); err != nil {
		return Position{}, nil, fmt.Errorf("stream start: %w", err)
	}
	// (xmin, 0) precedes every event of transaction xmin (ids start at 1).
	return Position{Tx: uint64(xmin)}, seen, nil
}

// pruneBatch bounds the rows one statement of PruneEvents deletes, so a
// large backlog is pruned without one long lock-holding statement.
const pruneBatch = 10000

// PruneEvents deletes the events older than before (all tenants) and
// records the position of the last of them in stream order (see
// PrunedThrough). It returns how many it deleted.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var through Position
	var tx int64
	err := s.pool.QueryRow(ctx, `SELECT tx::text::bigint, id FROM events WHERE at < $1 ORDER BY tx DESC, id DESC LIMIT 1`, before).Scan(&tx, &through.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	through.Tx = uint64(tx)
	// Recorded first: a stream resuming meanwhile is told of the gap even
	// if the deletes below are interrupted.
	if _, err := s.pool.Exec(ctx, `
		UPDATE event_retention SET pruned_tx = $1::bigint::text::xid8, pruned_through = $2
		WHERE (pruned_tx, pruned_through) < ($1::bigint::text::xid8, $2)`, tx, through.ID); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	// Only events at or before the recorded position: one of a transaction
	// that started before the cut-off but committed since may come after
	// it, and stays until the next run.
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE id IN (
			SELECT id FROM events WHERE at < $1 AND (tx, id) <= ($2::bigint::text::xid8, $3) LIMIT $4)`,
			before, tx, through.ID, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}

// PrunedThrough is the position of the last event pruned so far (zero
// when none): a stream resuming from before it may have missed events that
// are gone.
func (s *Store) PrunedThrough(ctx context.Context) (Position, error) {
	var p Position
	var tx int64
	if err := s.pool.QueryRow(ctx, `SELECT pruned_tx::text::bigint, pruned_through FROM event_retention`).Scan(&tx, &p.ID); err != nil {
		return Position{}, fmt.Errorf("pruned events: %w", err)
	}
	p.Tx = uint64(tx)
	return p, nil
}
