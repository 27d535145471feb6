package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrPreconditionFailed means an If-Match generation is stale.
var ErrPreconditionFailed = errors.New("precondition failed")

// BusyError says which operation keeps a cluster busy; it wraps ErrConflict.
type BusyError struct {
	Cluster   string
	Operation Operation
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("cluster %q has a %s operation in progress (%s, %s)", e.Cluster, e.Operation.Kind, e.Operation.ID, e.Operation.State)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *BusyError) Unwrap() error { return ErrConflict }

// lockLiveCluster locks the tenant's live cluster name for the transaction.
func lockLiveCluster(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, name string) (Cluster, error) {
	c, err := scanCluster(tx.QueryRow(ctx, `
		SELECT `+clusterColumns+` FROM clusters
		WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL FOR UPDATE`, tenantID, name))
	if err != nil {
		return Cluster{}, notFound(err, fmt.Sprintf("cluster %q", name))
	}
	return c, nil
}

// notBusy fails with a *BusyError when the cluster has an active operation.
func notBusy(ctx context.Context, tx pgx.Tx, c Cluster) error {
	active, err := activeOperation(ctx, tx, c.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return &BusyError{Cluster: c.Name, Operation: active}
}

// onLiveCluster runs change in one transaction on the tenant's live
// cluster name, locked (lockLiveCluster); change may replace the cluster
// and sets the operation, which are returned once the transaction commits.
func (s *Store) onLiveCluster(ctx context.Context, actor Actor, name string, change func(tx pgx.Tx, c *Cluster, op *Operation) error) (Cluster, Operation, error) {
	var c Cluster
	var op Operation
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if c, err = lockLiveCluster(ctx, tx, actor.TenantID, name); err != nil {
			return err
		}
		return change(tx, &c, &op)
	})
	return c, op, err
}

// UpdateSpec replaces the tenant's live cluster's spec, bumps its
// generation and enqueues an update operation, in one transaction.
// ifGeneration > 0 must equal the current generation (else
// ErrPreconditionFailed); a cluster with an active operation gives a
// *BusyError. A spec asking for more machines is held against the
// tenant's quota (a *QuotaExceededError).
func (s *Store) UpdateSpec(ctx context.Context, actor Actor, name string, ifGeneration int64, spec json.RawMessage, shape string, machines int64, steps []string, enqueue EnqueueFunc) (Cluster, Operation, error) {
	return s.onLiveCluster(ctx, actor, name, func(tx pgx.Tx, c *Cluster, op *Operation) error {
		var err error
		if ifGeneration > 0 && ifGeneration != c.Generation {
			return fmt.Errorf("cluster %q is at generation %d, not %d: %w", name, c.Generation, ifGeneration, ErrPreconditionFailed)
		}
		if err := notBusy(ctx, tx, *c); err != nil {
			return err
		}
		if err := checkQuota(ctx, tx, actor.TenantID, c, machines); err != nil {
			return err
		}
		*c, err = scanCluster(tx.QueryRow(ctx, `
			UPDATE clusters SET spec = $2, spec_shape = $5, machines = $4, generation = generation + 1, phase = $3, message = '', updated_at = now()
			WHERE id = $1 RETURNING `+clusterColumns, c.ID, spec, PhaseUpdating, machines, specShape(shape)))
		if err != nil {
			return fmt.Errorf("update spec of %q: %w", name, err)
		}
		if *op, err = insertOperation(ctx, tx, actor, *c, OpUpdate, steps, enqueue); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "cluster.update", "clusters/"+name, map[string]any{"operation": op.ID, "generation": c.Generation})
	})
}

// CancelOperation cancels the tenant's active operation id of cluster name
// (its job through cancelJob). The cluster is left Failed with a message
// saying who cancelled and how to retry; ErrConflict if the operation has
// already ended.
func (s *Store) CancelOperation(ctx context.Context, actor Actor, name string, id uuid.UUID, cancelJob CancelJobFunc) (Cluster, Operation, error) {
	return s.onLiveCluster(ctx, actor, name, func(tx pgx.Tx, c *Cluster, op *Operation) error {
		var err error
		*op, err = loadOperation(ctx, tx, `tenant_id = $1 AND cluster_id = $2 AND id = $3`, actor.TenantID, c.ID, id)
		if err != nil {
			return err
		}
		if !op.Active() {
			return fmt.Errorf("operation %s already ended (%s): %w", id, op.State, ErrConflict)
		}
		message := fmt.Sprintf("%s cancelled; retry with POST /v1/clusters/%s/retry", op.Kind, name)
		if err := cancelActive(ctx, tx, *op, message, cancelJob); err != nil {
			return err
		}
		*c, err = scanCluster(tx.QueryRow(ctx, `
			UPDATE clusters SET phase = 'Failed', message = $2, updated_at = now() WHERE id = $1 RETURNING `+clusterColumns, c.ID, message))
		if err != nil {
			return fmt.Errorf("mark cluster: %w", err)
		}
		if *op, err = loadOperation(ctx, tx, `id = $1`, op.ID); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "operation.cancel", "clusters/"+name, map[string]any{"operation": op.ID})
	})
}

// cancelActive ends an active operation as cancelled with message: its
// running step too, and its River job through cancelJob (a running worker
// stops at its next step).
func cancelActive(ctx context.Context, tx pgx.Tx, op Operation, message string, cancelJob CancelJobFunc) error {
	if _, err := tx.Exec(ctx, `
		UPDATE operations SET state = 'cancelled', error = $2, finished_at = now() WHERE id = $1`, op.ID, message); err != nil {
		return fmt.Errorf("cancel operation %s: %w", op.ID, err)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE operation_steps SET state = 'failed', error = 'cancelled', finished_at = now()
		WHERE operation_id = $1 AND state = 'running'`, op.ID); err != nil {
		return fmt.Errorf("cancel running step of %s: %w", op.ID, err)
	}
	if op.RiverJobID != nil {
		if err := cancelJob(ctx, Tx{tx}, *op.RiverJobID); err != nil {
			return fmt.Errorf("cancel job of operation %s: %w", op.ID, err)
		}
	}
	return nil
}

// RetryOperation starts a new operation of the same kind as the cluster's
// latest one, which must have failed or been cancelled. Steps are
// idempotent, so the new operation runs them all again and each converges.
func (s *Store) RetryOperation(ctx context.Context, actor Actor, name string, stepsFor func(OperationKind) []string, enqueue EnqueueFunc) (Cluster, Operation, error) {
	return s.onLiveCluster(ctx, actor, name, func(tx pgx.Tx, c *Cluster, op *Operation) error {
		if err := notBusy(ctx, tx, *c); err != nil {
			return err
		}
		last, err := loadOperation(ctx, tx, `cluster_id = $1 ORDER BY created_at DESC LIMIT 1`, c.ID)
		if err != nil {
			return err
		}
		if last.State != OpFailed && last.State != OpCancelled {
			return fmt.Errorf("the last operation of %q %s: nothing to retry: %w", name, last.State, ErrConflict)
		}
		*c, err = scanCluster(tx.QueryRow(ctx, `
			UPDATE clusters SET phase = $2, message = '', updated_at = now() WHERE id = $1 RETURNING `+clusterColumns,
			c.ID, phaseWhileQueued(last.Kind)))
		if err != nil {
			return fmt.Errorf("mark cluster: %w", err)
		}
		if *op, err = insertOperation(ctx, tx, actor, *c, last.Kind, stepsFor(last.Kind), enqueue); err != nil {
			return err
		}
		return audit(ctx, tx, actor, "operation.retry", "clusters/"+name, map[string]any{"operation": op.ID, "retries": last.ID})
	})
}

// SavePreviousManifests keeps, once per operation, the manifests an update
// is about to replace.
func (s *Store) SavePreviousManifests(ctx context.Context, opID uuid.UUID, manifests string) error {
	if _, err := s.pool.Exec(ctx, `
		UPDATE operations SET previous_manifests = $2 WHERE id = $1 AND previous_manifests IS NULL`, opID, manifests); err != nil {
		return fmt.Errorf("save previous manifests: %w", err)
	}
	return nil
}

// PreviousManifests returns what SavePreviousManifests kept ("" if nothing).
func (s *Store) PreviousManifests(ctx context.Context, opID uuid.UUID) (string, error) {
	var m *string
	if err := s.pool.QueryRow(ctx, `SELECT previous_manifests FROM operations WHERE id = $1`, opID).Scan(&m); err != nil {
		return "", notFound(err, "operation")
	}
	if m == nil {
		return "", nil
	}
	return *m, nil
}
