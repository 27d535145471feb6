package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Quota is what a tenant may have; a nil limit is no limit.
type Quota struct {
	// Clusters bounds the tenant's live clusters (not yet Deleted).
	Clusters *int32
	// MachinesPerCluster bounds one cluster's machines: its control plane
	// and every pool's replicas.
	MachinesPerCluster *int32
	// Machines bounds the machines of all the tenant's live clusters.
	Machines *int32
	// KubeconfigMaxTTL bounds, in seconds, how long a kubeconfig the
	// service issues to the tenant lasts (nil: the service's default).
	KubeconfigMaxTTL *int32
}

// Usage is what a tenant has: its live clusters and their machines.
type Usage struct {
	Clusters int64
	Machines int64
}

// Names of the quotas, as QuotaExceededError and the API give them.
const (
	QuotaClusters           = "clusters"
	QuotaMachinesPerCluster = "machinesPerCluster"
	QuotaMachines           = "machines"
)

// ErrQuotaExceeded is wrapped by every *QuotaExceededError.
var ErrQuotaExceeded = errors.New("quota exceeded")

// QuotaExceededError says which of a tenant's quotas a change would exceed:
// Limit, what is in use besides the cluster changed (Used) and what the
// change asks for (Requested).
type QuotaExceededError struct {
	Quota                  string
	Limit, Used, Requested int64
}

func (e *QuotaExceededError) Error() string {
	return fmt.Sprintf("quota %s: limit %d, in use %d, requested %d", e.Quota, e.Limit, e.Used, e.Requested)
}

// Unwrap makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaExceededError) Unwrap() error { return ErrQuotaExceeded }

// SetQuota replaces the tenant's quota (nil limits: none). Lowering a limit
// below what is in use takes nothing away: it only refuses growth.
func (s *Store) SetQuota(ctx context.Context, actor Actor, tenantID uuid.UUID, q Quota) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO tenant_quotas (tenant_id, clusters, machines_per_cluster, machines, kubeconfig_max_ttl_seconds) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id) DO UPDATE SET clusters = $2, machines_per_cluster = $3, machines = $4,
				kubeconfig_max_ttl_seconds = $5, updated_at = now()`,
			tenantID, q.Clusters, q.MachinesPerCluster, q.Machines, q.KubeconfigMaxTTL); err != nil {
			return fmt.Errorf("set quota: %w", err)
		}
		return audit(ctx, tx, actor, "tenant.quota", "tenants/"+tenantID.String(), map[string]any{
			QuotaClusters: q.Clusters, QuotaMachinesPerCluster: q.MachinesPerCluster, QuotaMachines: q.Machines,
			"kubeconfigMaxTTLSeconds": q.KubeconfigMaxTTL})
	})
}

// Quota returns the tenant's quota (all nil without one) and usage.
func (s *Store) Quota(ctx context.Context, tenantID uuid.UUID) (Quota, Usage, error) {
	q, err := s.QuotaLimits(ctx, tenantID)
	if err != nil {
		return Quota{}, Usage{}, err
	}
	u, err := usage(ctx, s.pool, tenantID, uuid.Nil)
	return q, u, err
}

// QuotaLimits returns the tenant's quota (all nil without one), without
// summing its usage.
func (s *Store) QuotaLimits(ctx context.Context, tenantID uuid.UUID) (Quota, error) {
	var q Quota
	err := s.pool.QueryRow(ctx, `
		SELECT clusters, machines_per_cluster, machines, kubeconfig_max_ttl_seconds FROM tenant_quotas WHERE tenant_id = $1`,
		tenantID).Scan(&q.Clusters, &q.MachinesPerCluster, &q.Machines, &q.KubeconfigMaxTTL)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Quota{}, fmt.Errorf("read quota: %w", err)
	}
	return q, nil
}

// usage sums the tenant's live clusters other than except.
func usage(ctx context.Context, q querier, tenantID, except uuid.UUID) (Usage, error) {
	var u Usage
	if err := q.QueryRow(ctx, `
		SELECT count(*), coalesce(sum(machines), 0) FROM clusters
		WHERE tenant_id = $1 AND deleted_at IS NULL AND id <> $2`, tenantID, except).Scan(&u.Clusters, &u.Machines); err != nil {
		return Usage{}, fmt.Errorf("read usage: %w", err)
	}
	return u, nil
}

// checkQuota holds a cluster that will have machines (a new one when
// existing is nil) against the tenant's quota, in tx. It locks the quota
// row, so that concurrent changes of one tenant are counted one after the
// other; tenants without a quota take no lock. A change that does not grow
// (a scale-down, or a spec edit with the same machines) always passes, so
// that a lowered quota never blocks shrinking.
func checkQuota(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, existing *Cluster, machines int64) error {
	var q Quota
	err := tx.QueryRow(ctx, `
		SELECT clusters, machines_per_cluster, machines FROM tenant_quotas WHERE tenant_id = $1 FOR UPDATE`,
		tenantID).Scan(&q.Clusters, &q.MachinesPerCluster, &q.Machines)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read quota: %w", err)
	}
	except := uuid.Nil
	if existing != nil {
		if machines <= existing.Machines {
			return nil
		}
		except = existing.ID
	}
	u, err := usage(ctx, tx, tenantID, except)
	if err != nil {
		return err
	}
	return q.check(existing == nil, u, machines)
}

// check holds a change against the quota: a new cluster (or an existing
// one growing) of machines, beside what the tenant uses besides it.
func (q Quota) check(newCluster bool, u Usage, machines int64) error {
	switch {
	case newCluster && q.Clusters != nil && u.Clusters+1 > int64(*q.Clusters):
		return &QuotaExceededError{Quota: QuotaClusters, Limit: int64(*q.Clusters), Used: u.Clusters, Requested: 1}
	case q.MachinesPerCluster != nil && machines > int64(*q.MachinesPerCluster):
		return &QuotaExceededError{Quota: QuotaMachinesPerCluster, Limit: int64(*q.MachinesPerCluster), Used: 0, Requested: machines}
	case q.Machines != nil && u.Machines+machines > int64(*q.Machines):
		return &QuotaExceededError{Quota: QuotaMachines, Limit: int64(*q.Machines), Used: u.Machines, Requested: machines}
	}
	return nil
}

// quotaOfNew is checkQuota for a new cluster as two statements queued in
// a batch, sent with others: the quota row locked, then (a statement of
// its own, so that its snapshot sees what the lock waited for) the
// tenant's usage, summed only when the tenant has a quota. Its result is
// read with readQuotaOfNew, in the batch's order.
func quotaOfNew(b *pgx.Batch, tenantID uuid.UUID) {
	b.Queue(`SELECT clusters, machines_per_cluster, machines FROM tenant_quotas WHERE tenant_id = $1 FOR UPDATE`, tenantID)
	b.Queue(`
		SELECT count(*), coalesce(sum(machines), 0) FROM clusters
		WHERE tenant_id = $1 AND deleted_at IS NULL AND EXISTS (SELECT FROM tenant_quotas WHERE tenant_id = $1)`, tenantID)
}

// readQuotaOfNew reads what quotaOfNew queued and holds a new cluster of
// machines against the quota.
func readQuotaOfNew(br pgx.BatchResults, machines int64) error {
	var q Quota
	err := br.QueryRow().Scan(&q.Clusters, &q.MachinesPerCluster, &q.Machines)
	limited := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read quota: %w", err)
	}
	var u Usage
	if err := br.QueryRow().Scan(&u.Clusters, &u.Machines); err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	if !limited {
		return nil
	}
	return q.check(true, u, machines)
}

// CheckQuota holds a new cluster of machines against the tenant's quota
// without creating it (a dry run); CreateCluster checks again.
func (s *Store) CheckQuota(ctx context.Context, tenantID uuid.UUID, machines int64) error {
	return s.inTx(ctx, func(tx pgx.Tx) error { return checkQuota(ctx, tx, tenantID, nil, machines) })
}
