package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AddonState is where an addon is on a workload cluster.
type AddonState string

// The addon states.
const (
	AddonPending    AddonState = "pending"
	AddonInstalling AddonState = "installing"
	AddonInstalled  AddonState = "installed"
	AddonFailed     AddonState = "failed"
)

// Addon is an addon's last known state on a cluster.
type Addon struct {
	Name      string
	State     AddonState
	Chart     string
	Version   string
	Message   string
	UpdatedAt time.Time
}

// PlanAddons records the addons a cluster asked for, in install order, as
// pending (an addon already installed keeps its state until reinstalled),
// and forgets addons no longer asked for.
func (s *Store) PlanAddons(ctx context.Context, c Cluster, names []string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_addons WHERE cluster_id = $1 AND NOT (name = ANY($2))`, c.ID, names); err != nil {
			return fmt.Errorf("plan addons: %w", err)
		}
		for i, name := range names {
			if _, err := tx.Exec(ctx, `
				INSERT INTO cluster_addons (cluster_id, tenant_id, name, ordinal, state) VALUES ($1, $2, $3, $4, 'pending')
				ON CONFLICT (cluster_id, name) DO UPDATE SET ordinal = EXCLUDED.ordinal`, c.ID, c.TenantID, name, i); err != nil {
				return fmt.Errorf("plan addon %s: %w", name, err)
			}
		}
		return nil
	})
}

// SetAddon records an addon's state.
func (s *Store) SetAddon(ctx context.Context, clusterID uuid.UUID, a Addon) error {
	err := s.exec(ctx, `
		UPDATE cluster_addons SET state = $3, chart = $4, version = $5, message = $6, updated_at = now()
		WHERE cluster_id = $1 AND name = $2`, clusterID, a.Name, a.State, a.Chart, a.Version, a.Message)
	if err != nil {
		return fmt.Errorf("set addon %s: %w", a.Name, err)
	}
	return nil
}

// Addons returns a cluster's addons in install order.
func (s *Store) Addons(ctx context.Context, clusterID uuid.UUID) ([]Addon, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name, state, chart, version, message, updated_at FROM cluster_addons
		WHERE cluster_id = $1 ORDER BY ordinal`, clusterID)
	if err != nil {
		return nil, fmt.Errorf("list addons: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Addon, error) {
		var a Addon
		err := r.Scan(&a.Name, &a.State, &a.Chart, &a.Version, &a.Message, &a.UpdatedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list addons: %w", err)
	}
	return out, nil
}

// GitOps is the GitOps source's state on a cluster.
type GitOps struct {
	Provider  string
	Repo      string
	Ready     bool
	Reason    string
	Message   string
	UpdatedAt time.Time
}

// SetGitOps records the GitOps source's state.
func (s *Store) SetGitOps(ctx context.Context, c Cluster, g GitOps) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO cluster_gitops (cluster_id, tenant_id, provider, repo, ready, reason, message) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (cluster_id) DO UPDATE SET provider = EXCLUDED.provider, repo = EXCLUDED.repo, ready = EXCLUDED.ready,
			reason = EXCLUDED.reason, message = EXCLUDED.message, updated_at = now()`,
		c.ID, c.TenantID, g.Provider, g.Repo, g.Ready, g.Reason, g.Message)
	if err != nil {
		return fmt.Errorf("set gitops state: %w", err)
	}
	return nil
}

// GitOpsState returns the cluster's GitOps state; ErrNotFound when none was recorded.
func (s *Store) GitOpsState(ctx context.Context, clusterID uuid.UUID) (GitOps, error) {
	var g GitOps
	err := s.pool.QueryRow(ctx, `SELECT provider, repo, ready, reason, message, updated_at FROM cluster_gitops WHERE cluster_id = $1`, clusterID).
		Scan(&g.Provider, &g.Repo, &g.Ready, &g.Reason, &g.Message, &g.UpdatedAt)
	if err != nil {
		return GitOps{}, notFound(err, "gitops state")
	}
	return g, nil
}
