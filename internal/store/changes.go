package store

import (
	"context"
	"fmt"
)

// ChangeCursor is where a reader of the change log stands: the snapshot of
// its previous look. The zero cursor stands nowhere.
type ChangeCursor struct {
	snapshot string // pg_snapshot, as text
}

// Changes returns the keys the writers' triggers recorded in the change
// log (migration 00080, lok8s_announce: "e:<tenant>" for new events,
// "c:<tenant>:<cluster>", "t:<token hash>") in the transactions committed
// since the snapshot of after, each key once, and the cursor of this look.
// A transaction is reported by the first look whose snapshot sees it,
// whatever the order of commits: those at or above after's xmax, or in its
// list in flight, that this look sees.
//
// lost is true, with no keys, when changes may have been missed: after is
// the zero cursor, or rows it had not seen were pruned (see PruneChanges).
// The caller then drops whatever it derived from earlier changes.
//
// The rows since the previous look are read as a range bounded on both
// sides, up to this look's xmax (rows of later transactions are not
// visible to it anyway): open-ended, the planner guesses a third of the
// table for it until the table has statistics, and read all of it, every
// look, as it grew (TestChangesReadByIndexWithoutStatistics).
func (s *Store) Changes(ctx context.Context, after ChangeCursor) (keys []string, next ChangeCursor, lost bool, err error) {
	if after.snapshot == "" {
		if err := s.pool.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&next.snapshot); err != nil {
			return nil, after, false, fmt.Errorf("read changes: %w", err)
		}
		return nil, next, true, nil
	}
	if err := s.pool.QueryRow(ctx, `
		SELECT pg_current_snapshot()::text,
			pg_snapshot_xmin($1::pg_snapshot) < (SELECT pruned_below FROM change_retention),
			array(SELECT key FROM changes
				WHERE tx >= pg_snapshot_xmax($1::pg_snapshot) AND tx < pg_snapshot_xmax(pg_current_snapshot())
				UNION SELECT key FROM changes WHERE tx = ANY(array(SELECT pg_snapshot_xip($1::pg_snapshot))))`,
		after.snapshot).Scan(&next.snapshot, &lost, &keys); err != nil {
		return nil, after, false, fmt.Errorf("read changes: %w", err)
	}
	if lost {
		return nil, next, true, nil
	}
	return keys, next, false, nil
}

// PruneChanges deletes the change log's rows below the xmin the previous
// run saw (every reader looking at least once since has read them), after
// recording that bound for the readers (a reader whose cursor is older
// learns it lost changes), and keeps the current xmin for the next run.
// It returns how many rows it deleted.
func (s *Store) PruneChanges(ctx context.Context) (int64, error) {
	var below string
	if err := s.pool.QueryRow(ctx, `
		UPDATE change_retention SET pruned_below = next_below, next_below = pg_snapshot_xmin(pg_current_snapshot())
		RETURNING pruned_below::text`).Scan(&below); err != nil {
		return 0, fmt.Errorf("prune changes: %w", err)
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM changes WHERE ctid IN (
			SELECT ctid FROM changes WHERE tx < $1::xid8 LIMIT $2)`, below, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune changes: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}
