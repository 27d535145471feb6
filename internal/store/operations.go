package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrOperationNotActive is returned to a worker whose operation has ended
// (for example cancelled by a delete) while it ran.
var ErrOperationNotActive = errors.New("operation is no longer active")

const operationColumns = `id, tenant_id, cluster_id, kind, state, step, error, generation, river_job_id, requested_by,
	coalesce((SELECT name FROM api_tokens WHERE api_tokens.id = requested_by), ''), created_at, started_at, finished_at`

// querier is what both a pool and a transaction can do.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func scanOperation(row pgx.Row) (Operation, error) {
	var o Operation
	err := row.Scan(&o.ID, &o.TenantID, &o.ClusterID, &o.Kind, &o.State, &o.Step, &o.Error, &o.Generation,
		&o.RiverJobID, &o.RequestedBy, &o.RequestedByName, &o.CreatedAt, &o.StartedAt, &o.FinishedAt)
	return o, err
}

// stepColumns are a step's columns, in scanStep's order.
const stepColumns = `name, state, attempts, error, message, code, retryable, remediation, reason, trace_id, started_at, finished_at`

// scanStep reads a step; lead receives any columns selected before
// stepColumns.
func scanStep(row pgx.Row, lead ...any) (Step, error) {
	var st Step
	err := row.Scan(append(lead, &st.Name, &st.State, &st.Attempts, &st.Error, &st.Message, &st.Failure.Code, &st.Failure.Retryable,
		&st.Failure.Remediation, &st.Failure.Reason, &st.Failure.TraceID, &st.StartedAt, &st.FinishedAt)...)
	return st, err
}

// withSteps loads op's steps, in order.
func withSteps(ctx context.Context, q querier, op Operation) (Operation, error) {
	rows, err := q.Query(ctx, `SELECT `+stepColumns+` FROM operation_steps WHERE operation_id = $1 ORDER BY ordinal`, op.ID)
	if err != nil {
		return Operation{}, fmt.Errorf("load steps of operation %s: %w", op.ID, err)
	}
	op.Steps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Step, error) { return scanStep(r) })
	if err != nil {
		return Operation{}, fmt.Errorf("load steps of operation %s: %w", op.ID, err)
	}
	return op, nil
}

func loadOperation(ctx context.Context, q querier, where string, args ...any) (Operation, error) {
	op, err := scanOperation(q.QueryRow(ctx, `SELECT `+operationColumns+` FROM operations WHERE `+where, args...))
	if err != nil {
		return Operation{}, notFound(err, "operation")
	}
	return withSteps(ctx, q, op)
}

// Operation returns the tenant's operation id with its steps.
func (s *Store) Operation(ctx context.Context, tenantID, id uuid.UUID) (Operation, error) {
	return loadOperation(ctx, s.pool, `tenant_id = $1 AND id = $2`, tenantID, id)
}

// OperationByID returns an operation whatever its tenant; for workers.
func (s *Store) OperationByID(ctx context.Context, id uuid.UUID) (Operation, error) {
	return loadOperation(ctx, s.pool, `id = $1`, id)
}

// LatestOperation returns the cluster's most recent operation.
func (s *Store) LatestOperation(ctx context.Context, clusterID uuid.UUID) (Operation, error) {
	return loadOperation(ctx, s.pool, `cluster_id = $1 ORDER BY created_at DESC LIMIT 1`, clusterID)
}

// LatestOperations returns the most recent operation of each of the
// clusters, with its steps, keyed by cluster: two queries whatever the
// number of clusters (a list page would otherwise make one per row).
func (s *Store) LatestOperations(ctx context.Context, clusterIDs []uuid.UUID) (map[uuid.UUID]Operation, error) {
	out := make(map[uuid.UUID]Operation, len(clusterIDs))
	if len(clusterIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (cluster_id) `+operationColumns+` FROM operations
		WHERE cluster_id = ANY($1) ORDER BY cluster_id, created_at DESC, id`, clusterIDs)
	if err != nil {
		return nil, fmt.Errorf("latest operations: %w", err)
	}
	ops, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Operation, error) { return scanOperation(r) })
	if err != nil {
		return nil, fmt.Errorf("latest operations: %w", err)
	}
	ids := make([]uuid.UUID, len(ops))
	byID := make(map[uuid.UUID]*Operation, len(ops))
	for i := range ops {
		ids[i] = ops[i].ID
		byID[ops[i].ID] = &ops[i]
	}
	rows, err = s.pool.Query(ctx, `
		SELECT operation_id, `+stepColumns+`
		FROM operation_steps WHERE operation_id = ANY($1) ORDER BY operation_id, ordinal`, ids)
	if err != nil {
		return nil, fmt.Errorf("latest operations' steps: %w", err)
	}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var opID uuid.UUID
		st, err := scanStep(r, &opID)
		if err == nil {
			byID[opID].Steps = append(byID[opID].Steps, st)
		}
		return struct{}{}, err
	})
	if err != nil {
		return nil, fmt.Errorf("latest operations' steps: %w", err)
	}
	for _, op := range ops {
		out[op.ClusterID] = op
	}
	return out, nil
}

func activeOperation(ctx context.Context, q querier, clusterID uuid.UUID) (Operation, error) {
	return loadOperation(ctx, q, `cluster_id = $1 AND state IN ('queued', 'running')`, clusterID)
}

// Operations returns the cluster's operations, newest first, with their steps.
func (s *Store) Operations(ctx context.Context, tenantID, clusterID uuid.UUID, limit int) ([]Operation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+operationColumns+` FROM operations
		WHERE tenant_id = $1 AND cluster_id = $2 ORDER BY created_at DESC, id LIMIT $3`, tenantID, clusterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	ops, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Operation, error) { return scanOperation(r) })
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	for i := range ops {
		if ops[i], err = withSteps(ctx, s.pool, ops[i]); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// phaseWhileRunning is the cluster's phase while an operation of kind runs.
func phaseWhileRunning(kind OperationKind) Phase {
	switch kind {
	case OpUpdate:
		return PhaseUpdating
	case OpDeprovision:
		return PhaseDeleting
	default:
		return PhaseProvisioning
	}
}

// phaseWhileQueued is the cluster's phase while an operation of kind waits for a worker.
func phaseWhileQueued(kind OperationKind) Phase {
	if kind == OpProvision {
		return PhasePending
	}
	return phaseWhileRunning(kind)
}

// BeginOperation marks an active operation running and its cluster in the
// matching phase, and returns it. An operation that has already ended gives
// ErrOperationNotActive.
func (s *Store) BeginOperation(ctx context.Context, id uuid.UUID) (Operation, error) {
	var op Operation
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		op, err = scanOperation(tx.QueryRow(ctx, `
			UPDATE operations SET state = 'running', started_at = coalesce(started_at, now())
			WHERE id = $1 AND state IN ('queued', 'running') RETURNING `+operationColumns, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("operation %s: %w", id, ErrOperationNotActive)
		}
		if err != nil {
			return fmt.Errorf("begin operation %s: %w", id, err)
		}
		// A resumed operation (every wait check) finds the phase set:
		// nothing to write.
		if _, err := tx.Exec(ctx, `UPDATE clusters SET phase = $2, updated_at = now() WHERE id = $1 AND phase IS DISTINCT FROM $2`,
			op.ClusterID, phaseWhileRunning(op.Kind)); err != nil {
			return fmt.Errorf("set cluster phase: %w", err)
		}
		op, err = withSteps(ctx, tx, op)
		return err
	})
	return op, err
}

// stepUpdate runs update on step name of operation id, but only while the
// operation is running; otherwise ErrOperationNotActive.
func (s *Store) stepUpdate(ctx context.Context, tx pgx.Tx, id uuid.UUID, name, update string, args ...any) error {
	tag, err := tx.Exec(ctx, `
		UPDATE operation_steps SET `+update+`
		WHERE operation_id = $1 AND name = $2
		  AND EXISTS (SELECT 1 FROM operations WHERE id = $1 AND state = 'running')`,
		append([]any{id, name}, args...)...)
	if err != nil {
		return fmt.Errorf("update step %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("step %q of operation %s: %w", name, id, ErrOperationNotActive)
	}
	return nil
}

// StartStep records that step name of operation id began another attempt,
// and returns when the step first started (a step resumed while still
// running, after a snooze or a crashed worker, keeps its first start).
func (s *Store) StartStep(ctx context.Context, id uuid.UUID, name string) (time.Time, error) {
	var started time.Time
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE operation_steps SET state = 'running', attempts = attempts + 1, finished_at = NULL,
				started_at = CASE WHEN state = 'running' THEN started_at ELSE now() END
			WHERE operation_id = $1 AND name = $2
			  AND EXISTS (SELECT 1 FROM operations WHERE id = $1 AND state = 'running')
			RETURNING started_at`, id, name).Scan(&started)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("step %q of operation %s: %w", name, id, ErrOperationNotActive)
		}
		if err != nil {
			return fmt.Errorf("start step %q: %w", name, err)
		}
		_, err = tx.Exec(ctx, `UPDATE operations SET step = $2 WHERE id = $1`, id, name)
		return err
	})
	return started, err
}

// FinishStep records that step name ended as state (succeeded or skipped),
// with a message for the user (why it was skipped, for example).
func (s *Store) FinishStep(ctx context.Context, id uuid.UUID, name string, state StepState, message string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		return s.stepUpdate(ctx, tx, id, name,
			`state = $3, message = $4, error = '', code = '', retryable = false, remediation = '', reason = '', trace_id = '',
			 finished_at = now(), started_at = coalesce(started_at, now())`, state, message)
	})
}

// FailStep records step name's error. When final, the operation fails and
// its cluster goes to Failed with the error as its message; otherwise the
// step will be tried again and the cluster's message shows the error.
func (s *Store) FailStep(ctx context.Context, id uuid.UUID, name string, f Failure, final bool) error {
	errMsg := f.Message
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := s.stepUpdate(ctx, tx, id, name,
			`state = 'failed', error = $3, code = $4, retryable = $5, remediation = $6, reason = $7, trace_id = $8, finished_at = now()`,
			errMsg, f.Code, f.Retryable, f.Remediation, f.Reason, f.TraceID); err != nil {
			return err
		}
		message := fmt.Sprintf("step %s: %s", name, errMsg)
		if !final {
			message = fmt.Sprintf("step %s failed, will retry: %s", name, errMsg)
			_, err := tx.Exec(ctx, `
				UPDATE clusters SET message = $2, updated_at = now()
				WHERE id = (SELECT cluster_id FROM operations WHERE id = $1)`, id, message)
			return err
		}
		return failOperation(ctx, tx, id, message)
	})
}

// FailOperation ends operation id as failed, and its cluster as Failed,
// with message for the user.
func (s *Store) FailOperation(ctx context.Context, id uuid.UUID, message string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error { return failOperation(ctx, tx, id, message) })
}

func failOperation(ctx context.Context, tx pgx.Tx, id uuid.UUID, message string) error {
	if _, err := tx.Exec(ctx, `UPDATE operations SET state = 'failed', error = $2, finished_at = now() WHERE id = $1`,
		id, message); err != nil {
		return fmt.Errorf("fail operation: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE clusters SET phase = 'Failed', message = $2, updated_at = now()
		WHERE id = (SELECT cluster_id FROM operations WHERE id = $1)`, id, message); err != nil {
		return fmt.Errorf("fail cluster: %w", err)
	}
	return nil
}

// CompleteOperation marks a running operation succeeded and moves its
// cluster to phase (a deleted cluster also frees its name).
func (s *Store) CompleteOperation(ctx context.Context, id uuid.UUID, phase Phase) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var clusterID uuid.UUID
		err := tx.QueryRow(ctx, `
			UPDATE operations SET state = 'succeeded', step = '', finished_at = now()
			WHERE id = $1 AND state = 'running' RETURNING cluster_id`, id).Scan(&clusterID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("operation %s: %w", id, ErrOperationNotActive)
		}
		if err != nil {
			return fmt.Errorf("complete operation %s: %w", id, err)
		}
		_, err = tx.Exec(ctx, `
			UPDATE clusters SET phase = $2, message = '', updated_at = now(),
			       deleted_at = CASE WHEN $2 = 'Deleted' THEN now() ELSE deleted_at END
			WHERE id = $1`, clusterID, phase)
		if err != nil {
			return fmt.Errorf("set cluster phase %s: %w", phase, err)
		}
		return nil
	})
}

// SetStepMessage shows progress on a running step.
func (s *Store) SetStepMessage(ctx context.Context, id uuid.UUID, name, message string) error {
	// The same message again (a check that found nothing new) writes
	// nothing: no row version, no event.
	if err := s.exec(ctx, `UPDATE operation_steps SET message = $3 WHERE operation_id = $1 AND name = $2 AND message IS DISTINCT FROM $3`,
		id, name, message); err != nil {
		return fmt.Errorf("set message of step %q: %w", name, err)
	}
	return nil
}

// ActiveJob is the River job of the tenant's live cluster name's active
// operation and the step it is at, or 0 when none is running.
func (s *Store) ActiveJob(ctx context.Context, tenantID uuid.UUID, name string) (id int64, step string, err error) {
	var job *int64
	err = s.pool.QueryRow(ctx, `
		SELECT o.river_job_id, o.step FROM operations o JOIN clusters c ON c.id = o.cluster_id
		WHERE c.tenant_id = $1 AND c.name = $2 AND c.deleted_at IS NULL AND o.state = 'running'`, tenantID, name).Scan(&job, &step)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && job == nil) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("active job of cluster %q: %w", name, err)
	}
	return *job, step, nil
}

// FailOrphanedOperations ends, as failed, every queued or running
// operation whose River job ended or vanished more than grace ago while
// the operation did not: a job cancelled or deleted outside the service
// (River's UI) that no worker will run again. The running step, if any,
// gets failure f; the cluster can then be retried. It returns how many
// operations it failed.
func (s *Store) FailOrphanedOperations(ctx context.Context, grace time.Duration, f Failure) (int, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT o.id, coalesce((SELECT name FROM operation_steps WHERE operation_id = o.id AND state = 'running' LIMIT 1), '')
		FROM operations o LEFT JOIN river_job j ON j.id = o.river_job_id
		WHERE o.state IN ('queued', 'running') AND o.created_at < now() - make_interval(secs => $1)
		  AND (j.id IS NULL OR (j.state IN ('cancelled', 'discarded', 'completed') AND j.finalized_at < now() - make_interval(secs => $1)))`,
		grace.Seconds())
	if err != nil {
		return 0, fmt.Errorf("find orphaned operations: %w", err)
	}
	type orphan struct {
		id   uuid.UUID
		step string
	}
	var orphans []orphan
	for rows.Next() {
		var o orphan
		if err := rows.Scan(&o.id, &o.step); err != nil {
			rows.Close()
			return 0, fmt.Errorf("find orphaned operations: %w", err)
		}
		orphans = append(orphans, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find orphaned operations: %w", err)
	}
	failed := 0
	for _, o := range orphans {
		var err error
		if o.step != "" {
			err = s.FailStep(ctx, o.id, o.step, f, true)
		} else {
			err = s.FailOperation(ctx, o.id, f.Message)
		}
		switch {
		case errors.Is(err, ErrOperationNotActive):
			// It ended meanwhile: nothing to do.
		case err != nil:
			return failed, err
		default:
			failed++
		}
	}
	return failed, nil
}
