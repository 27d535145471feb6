package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// EnqueueFunc inserts the job that will run op, inside tx, and returns the
// job's id. It is how the queue joins the store's transactions.
type EnqueueFunc func(ctx context.Context, tx Tx, op Operation) (jobID int64, err error)

// CancelJobFunc cancels the queue job jobID inside tx.
type CancelJobFunc func(ctx context.Context, tx Tx, jobID int64) error

// Tx is the transaction a store write runs in, handed to an EnqueueFunc or
// a CancelJobFunc so that the job it inserts or cancels commits or rolls
// back with the write. Only the store makes one.
type Tx struct{ tx pgx.Tx }

// Driver is the driver's transaction, for the job queue's client (River's
// InsertTx and JobCancelTx take a pgx.Tx): package jobs is the one caller.
func (t Tx) Driver() pgx.Tx { return t.tx }

// Actor is who asks for a change, for operations and the audit log.
type Actor struct {
	TenantID  uuid.UUID
	TokenID   uuid.UUID
	RequestID string
}

// NewCluster is what CreateCluster stores.
type NewCluster struct {
	Name             string
	Provider         string
	ManagementDomain string
	// Namespace is where the cluster's objects go on the management cluster.
	Namespace string
	Spec      json.RawMessage
	// SpecShape is the shape Spec was submitted in (default "sections").
	SpecShape string
	// Machines is what Spec asks for, held against the tenant's quota.
	Machines int64
	// Steps names the provisioning operation's steps, in order.
	Steps []string
	// IdempotencyKey, when set, makes a retry of the same request (same
	// RequestHash) return the first request's cluster and operation.
	IdempotencyKey string
	RequestHash    []byte
}

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

const clusterColumns = `id, tenant_id, name, provider, management_domain, namespace, spec, spec_shape, generation, machines, phase, message, observed, created_at, updated_at, deleted_at`

func scanCluster(row pgx.Row) (Cluster, error) {
	var c Cluster
	err := row.Scan(&c.ID, &c.TenantID, &c.Name, &c.Provider, &c.ManagementDomain, &c.Namespace, &c.Spec, &c.SpecShape, &c.Generation, &c.Machines,
		&c.Phase, &c.Message, &c.Observed, &c.CreatedAt, &c.UpdatedAt, &c.DeletedAt)
	return c, err
}

// CreateCluster stores a new cluster in phase Pending with its provisioning
// operation, and enqueues the operation's job, all in one transaction: either
// all three exist afterwards or none does. A live cluster of the same name
// gives ErrConflict. With an idempotency key already used for the same
// request it returns that request's cluster and operation and replayed=true.
func (s *Store) CreateCluster(ctx context.Context, actor Actor, nc NewCluster, enqueue EnqueueFunc) (c Cluster, op Operation, replayed bool, err error) {
	for attempt := 0; ; attempt++ {
		if nc.IdempotencyKey != "" {
			c, op, found, err := s.replay(ctx, actor.TenantID, nc)
			if err != nil || found {
				return c, op, found, err
			}
		}
		c, op, err = s.createCluster(ctx, actor, nc, enqueue)
		// A concurrent request with the same key won the race: replay it.
		if isUniqueViolation(err, "idempotency_keys_pkey") && attempt == 0 {
			continue
		}
		return c, op, false, err
	}
}

func (s *Store) replay(ctx context.Context, tenantID uuid.UUID, nc NewCluster) (Cluster, Operation, bool, error) {
	var hash []byte
	var clusterID, opID uuid.UUID
	err := s.pool.QueryRow(ctx, `
		SELECT request_hash, cluster_id, operation_id FROM idempotency_keys
		WHERE tenant_id = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)`,
		tenantID, nc.IdempotencyKey, idempotencyTTL.Seconds()).Scan(&hash, &clusterID, &opID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cluster{}, Operation{}, false, nil
	}
	if err != nil {
		return Cluster{}, Operation{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	if string(hash) != string(nc.RequestHash) {
		return Cluster{}, Operation{}, false, ErrIdempotencyMismatch
	}
	c, err := scanCluster(s.pool.QueryRow(ctx, `SELECT `+clusterColumns+` FROM clusters WHERE id = $1`, clusterID))
	if err != nil {
		return Cluster{}, Operation{}, false, notFound(err, "idempotent cluster")
	}
	op, err := s.Operation(ctx, tenantID, opID)
	if err != nil {
		return Cluster{}, Operation{}, false, err
	}
	return c, op, true, nil
}

// createCluster runs the transaction in three round trips besides BEGIN
// and COMMIT: everything up to the cluster's row in one batch (the
// idempotency key, the namespace claim, the quota, the row), River's job,
// then the operation with its steps and the audit entry in another batch.
// A batch's statements run one after the other, each with a snapshot of
// its own, as they would one at a time; its results are read in order, so
// the first problem found is the one reported, as before. When one is,
// the transaction rolls back whatever ran after it.
func (s *Store) createCluster(ctx context.Context, actor Actor, nc NewCluster, enqueue EnqueueFunc) (Cluster, Operation, error) {
	var c Cluster
	var op Operation
	clusterID, opID := uuid.New(), uuid.New()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		if nc.IdempotencyKey != "" {
			// The key first: a concurrent request with it waits here and
			// then replays this one's result. Only an expired key is
			// replaced, never a live one.
			b.Queue(`
				DELETE FROM idempotency_keys
				WHERE tenant_id = $1 AND key = $2 AND created_at <= now() - make_interval(secs => $3)`,
				actor.TenantID, nc.IdempotencyKey, idempotencyTTL.Seconds())
			b.Queue(`
				INSERT INTO idempotency_keys (tenant_id, key, request_hash, cluster_id, operation_id)
				VALUES ($1, $2, $3, $4, $5)`,
				actor.TenantID, nc.IdempotencyKey, nc.RequestHash, clusterID, opID)
		}
		claimPlacementBatch(b, actor.TenantID, nc.ManagementDomain, nc.Namespace)
		quotaOfNew(b, actor.TenantID)
		b.Queue(`
			INSERT INTO clusters (id, tenant_id, name, provider, management_domain, namespace, spec, spec_shape, machines, phase)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			RETURNING `+clusterColumns,
			clusterID, actor.TenantID, nc.Name, nc.Provider, nc.ManagementDomain, nc.Namespace, nc.Spec, specShape(nc.SpecShape), nc.Machines, PhasePending)
		err := func() error {
			br := tx.SendBatch(ctx, b)
			// Closed (its error checked) at the end; this close is for an early return.
			defer func() { _ = br.Close() }()
			if nc.IdempotencyKey != "" {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("expire idempotency key: %w", err)
				}
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("claim idempotency key: %w", err)
				}
			}
			if err := readPlacementClaim(br, actor.TenantID, nc.Namespace); err != nil {
				return err
			}
			if err := readQuotaOfNew(br, nc.Machines); err != nil {
				return err
			}
			var err error
			c, err = scanCluster(br.QueryRow())
			if isUniqueViolation(err, "clusters_tenant_name_live") {
				return fmt.Errorf("cluster %q already exists: %w", nc.Name, ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("insert cluster: %w", err)
			}
			return br.Close()
		}()
		if err != nil {
			return err
		}
		sql, args, err := auditInsert(actor, "cluster.create", "clusters/"+c.Name, map[string]any{"operation": opID})
		if err != nil {
			return err
		}
		op, err = insertOperationAnd(ctx, tx, opID, actor, c, OpProvision, nc.Steps, enqueue,
			batched{sql: sql, args: args, what: "audit cluster.create"})
		return err
	})
	return c, op, err
}

// claimPlacementBatch queues, in b, the claim that makes namespace of
// management cluster domain the tenant's if no tenant has it yet (kept for
// good: a namespace never changes hands). Two statements: the second runs
// after the first with a snapshot of its own, so it sees a claim another
// transaction committed while the first waited on it. readPlacementClaim
// reads their results: ErrPlacementTaken when another tenant has it.
func claimPlacementBatch(b *pgx.Batch, tenantID uuid.UUID, domain, namespace string) {
	if namespace == "" {
		return
	}
	b.Queue(`
		INSERT INTO placements (management_domain, namespace, tenant_id) VALUES ($1, $2, $3)
		ON CONFLICT (management_domain, namespace) DO NOTHING`, domain, namespace, tenantID)
	b.Queue(`SELECT tenant_id FROM placements WHERE management_domain = $1 AND namespace = $2`, domain, namespace)
}

// readPlacementClaim reads what claimPlacementBatch queued: ErrPlacementTaken
// when another tenant has the namespace.
func readPlacementClaim(br pgx.BatchResults, tenantID uuid.UUID, namespace string) error {
	if namespace == "" {
		return nil
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("claim namespace %s: %w", namespace, err)
	}
	var owner uuid.UUID
	if err := br.QueryRow().Scan(&owner); err != nil {
		return fmt.Errorf("claim namespace %s: %w", namespace, err)
	}
	if owner != tenantID {
		return fmt.Errorf("namespace %q: %w", namespace, ErrPlacementTaken)
	}
	return nil
}

// insertOperation adds a queued operation with pending steps for cluster c
// and enqueues its job in tx.
func insertOperation(ctx context.Context, tx pgx.Tx, actor Actor, c Cluster, kind OperationKind, steps []string, enqueue EnqueueFunc) (Operation, error) {
	return insertOperationWithID(ctx, tx, uuid.New(), actor, c, kind, steps, enqueue)
}

// insertOperationWithID is insertOperation with the operation's id chosen
// by the caller (an Idempotency-Key names it before it exists).
func insertOperationWithID(ctx context.Context, tx pgx.Tx, id uuid.UUID, actor Actor, c Cluster, kind OperationKind, steps []string, enqueue EnqueueFunc) (Operation, error) {
	return insertOperationAnd(ctx, tx, id, actor, c, kind, steps, enqueue)
}

// batched is a statement sent in the same round trip as another's; what
// names it in errors.
type batched struct {
	sql  string
	args []any
	what string
}

// insertOperationAnd is insertOperationWithID running the statements also
// after the operation's, in the same round trip.
func insertOperationAnd(ctx context.Context, tx pgx.Tx, id uuid.UUID, actor Actor, c Cluster, kind OperationKind, steps []string, enqueue EnqueueFunc, also ...batched) (Operation, error) {
	op := Operation{
		ID: id, TenantID: c.TenantID, ClusterID: c.ID, Kind: kind, State: OpQueued,
		Generation: c.Generation, RequestedBy: &actor.TokenID,
	}
	if actor.TokenID == uuid.Nil {
		op.RequestedBy = nil
	}
	// The job first, so the operation is written with its id; then the
	// operation and its steps in one statement (one round trip).
	jobID, err := enqueue(ctx, Tx{tx}, op)
	if err != nil {
		return Operation{}, fmt.Errorf("enqueue %s job: %w", kind, err)
	}
	if steps == nil {
		steps = []string{}
	}
	b := &pgx.Batch{}
	b.Queue(`
		WITH op AS (
			INSERT INTO operations (id, tenant_id, cluster_id, kind, state, generation, requested_by, river_job_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			RETURNING created_at
		), steps AS (
			INSERT INTO operation_steps (operation_id, ordinal, name, state)
			SELECT $1, s.ordinal - 1, s.name, $10 FROM unnest($9::text[]) WITH ORDINALITY AS s (name, ordinal)
		)
		SELECT created_at, coalesce((SELECT name FROM api_tokens WHERE id = $7), '') FROM op`,
		op.ID, op.TenantID, op.ClusterID, op.Kind, op.State, op.Generation, op.RequestedBy, jobID, steps, StepPending)
	for _, a := range also {
		b.Queue(a.sql, a.args...)
	}
	br := tx.SendBatch(ctx, b)
	// Closed (its error checked) at the end; this close is for an early return.
	defer func() { _ = br.Close() }()
	err = br.QueryRow().Scan(&op.CreatedAt, &op.RequestedByName)
	if isUniqueViolation(err, "operations_one_active") {
		return Operation{}, fmt.Errorf("cluster %q has an operation in progress: %w", c.Name, ErrConflict)
	}
	if err != nil {
		return Operation{}, fmt.Errorf("insert operation: %w", err)
	}
	for _, a := range also {
		if _, err := br.Exec(); err != nil {
			return Operation{}, fmt.Errorf("%s: %w", a.what, err)
		}
	}
	if err := br.Close(); err != nil {
		return Operation{}, fmt.Errorf("insert operation: %w", err)
	}
	for _, name := range steps {
		op.Steps = append(op.Steps, Step{Name: name, State: StepPending})
	}
	op.RiverJobID = &jobID
	return op, nil
}

// Cluster returns the tenant's live cluster called name or, if none is live,
// the most recently deleted one (deleted clusters are kept for history).
func (s *Store) Cluster(ctx context.Context, tenantID uuid.UUID, name string) (Cluster, error) {
	c, err := scanCluster(s.pool.QueryRow(ctx, `
		SELECT `+clusterColumns+` FROM clusters WHERE tenant_id = $1 AND name = $2
		ORDER BY deleted_at DESC NULLS FIRST LIMIT 1`, tenantID, name))
	if err != nil {
		return Cluster{}, notFound(err, fmt.Sprintf("cluster %q", name))
	}
	return c, nil
}

// ClusterByID returns a cluster by id, whatever its tenant; for workers,
// whose job arguments carry ids only.
func (s *Store) ClusterByID(ctx context.Context, id uuid.UUID) (Cluster, error) {
	c, err := scanCluster(s.pool.QueryRow(ctx, `SELECT `+clusterColumns+` FROM clusters WHERE id = $1`, id))
	if err != nil {
		return Cluster{}, notFound(err, fmt.Sprintf("cluster %s", id))
	}
	return c, nil
}

// ClusterOfTenant returns the tenant's cluster with id, live or deleted.
func (s *Store) ClusterOfTenant(ctx context.Context, tenantID, id uuid.UUID) (Cluster, error) {
	c, err := scanCluster(s.pool.QueryRow(ctx, `SELECT `+clusterColumns+` FROM clusters WHERE id = $1 AND tenant_id = $2`, id, tenantID))
	if err != nil {
		return Cluster{}, notFound(err, fmt.Sprintf("cluster %s", id))
	}
	return c, nil
}

// ClustersByDomain returns the tenant's live clusters whose
// spec.cluster.domain is domain, oldest first (index
// clusters_tenant_domain_live).
func (s *Store) ClustersByDomain(ctx context.Context, tenantID uuid.UUID, domain string) ([]Cluster, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+clusterColumns+` FROM clusters
		WHERE tenant_id = $1 AND (spec -> 'spec' -> 'cluster' ->> 'domain') = $2 AND deleted_at IS NULL
		ORDER BY created_at, id`, tenantID, domain)
	if err != nil {
		return nil, fmt.Errorf("clusters by domain: %w", err)
	}
	clusters, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Cluster, error) { return scanCluster(r) })
	if err != nil {
		return nil, fmt.Errorf("clusters by domain: %w", err)
	}
	return clusters, nil
}

// specShape is the stored shape of a spec: "sections" unless said.
func specShape(shape string) string {
	if shape == "" {
		return "sections"
	}
	return shape
}

// ListClustersParams selects a page of clusters.
type ListClustersParams struct {
	// Phase filters by phase; empty lists every phase but Deleted.
	Phase Phase
	// Limit caps the page size.
	Limit int
	// Cursor continues after the page that returned it.
	Cursor string
}

// ErrBadCursor is returned for a cursor this store did not make.
var ErrBadCursor = errors.New("invalid cursor")

// ListClusters returns a page of the tenant's clusters, oldest first, and
// the cursor of the next page ("" on the last page).
func (s *Store) ListClusters(ctx context.Context, tenantID uuid.UUID, p ListClustersParams) ([]Cluster, string, error) {
	after, afterID, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+clusterColumns+` FROM clusters
		WHERE tenant_id = $1
		  AND (CASE WHEN $2 = '' THEN phase <> 'Deleted' ELSE phase = $2 END)
		  AND (created_at, id) > ($3, $4)
		ORDER BY created_at, id LIMIT $5`,
		tenantID, string(p.Phase), after, afterID, p.Limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list clusters: %w", err)
	}
	clusters, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Cluster, error) { return scanCluster(r) })
	if err != nil {
		return nil, "", fmt.Errorf("list clusters: %w", err)
	}
	next := ""
	if len(clusters) > p.Limit {
		clusters = clusters[:p.Limit]
		last := clusters[len(clusters)-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return clusters, next, nil
}

func encodeCursor(t time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(t.UTC().Format(time.RFC3339Nano) + "|" + id.String()))
}

func decodeCursor(cursor string) (time.Time, uuid.UUID, error) {
	if cursor == "" {
		return time.Time{}, uuid.Nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return time.Time{}, uuid.Nil, ErrBadCursor
	}
	ts, idStr, ok := strings.Cut(string(raw), "|")
	if !ok {
		return time.Time{}, uuid.Nil, ErrBadCursor
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, uuid.Nil, ErrBadCursor
	}
	id, err := uuid.Parse(idStr)
	if err != nil {
		return time.Time{}, uuid.Nil, ErrBadCursor
	}
	return t, id, nil
}

// StartDeprovision moves the tenant's live cluster name to Deleting and
// enqueues a deprovision operation. An active provision or update is
// cancelled first (its job through cancelJob); an active deprovision is
// returned as is, so DELETE is idempotent.
func (s *Store) StartDeprovision(ctx context.Context, actor Actor, name string, steps []string, enqueue EnqueueFunc, cancelJob CancelJobFunc) (Cluster, Operation, error) {
	return s.onLiveCluster(ctx, actor, name, func(tx pgx.Tx, c *Cluster, op *Operation) error {
		active, err := activeOperation(ctx, tx, c.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil {
			if active.Kind == OpDeprovision {
				*op = active
				return nil
			}
			if err := cancelActive(ctx, tx, active, "cancelled: the cluster is being deleted", cancelJob); err != nil {
				return err
			}
		}
		*c, err = scanCluster(tx.QueryRow(ctx, `
			UPDATE clusters SET phase = $2, message = '', updated_at = now() WHERE id = $1 RETURNING `+clusterColumns,
			c.ID, PhaseDeleting))
		if err != nil {
			return fmt.Errorf("mark cluster deleting: %w", err)
		}
		*op, err = insertOperation(ctx, tx, actor, *c, OpDeprovision, steps, enqueue)
		if err != nil {
			return err
		}
		return audit(ctx, tx, actor, "cluster.delete", "clusters/"+c.Name, map[string]any{"operation": op.ID})
	})
}
