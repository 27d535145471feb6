package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"lok8s.dev/provisioner/internal/seal"
)

// SaveManifests records the cluster's rendered manifests.
func (s *Store) SaveManifests(ctx context.Context, clusterID uuid.UUID, manifests string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE clusters SET manifests = $2 WHERE id = $1`, clusterID, manifests); err != nil {
		return fmt.Errorf("save manifests: %w", err)
	}
	return nil
}

// Manifests returns the cluster's rendered manifests ("" before rendering).
func (s *Store) Manifests(ctx context.Context, clusterID uuid.UUID) (string, error) {
	var m string
	if err := s.pool.QueryRow(ctx, `SELECT manifests FROM clusters WHERE id = $1`, clusterID).Scan(&m); err != nil {
		return "", notFound(err, "cluster manifests")
	}
	return m, nil
}

// SaveKubeconfig stores the workload cluster's sealed kubeconfig.
func (s *Store) SaveKubeconfig(ctx context.Context, c Cluster, sealed seal.Sealed) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO cluster_kubeconfigs (cluster_id, tenant_id, key_id, nonce, ciphertext) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (cluster_id) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
			ciphertext = EXCLUDED.ciphertext, updated_at = now()`,
		c.ID, c.TenantID, sealed.KeyID, sealed.Nonce, sealed.Ciphertext)
	if err != nil {
		return fmt.Errorf("save kubeconfig: %w", err)
	}
	return nil
}

// SealedKubeconfig returns the tenant's cluster's sealed kubeconfig.
func (s *Store) SealedKubeconfig(ctx context.Context, tenantID, clusterID uuid.UUID) (seal.Sealed, error) {
	var sealed seal.Sealed
	err := s.pool.QueryRow(ctx, `
		SELECT key_id, nonce, ciphertext FROM cluster_kubeconfigs WHERE tenant_id = $1 AND cluster_id = $2`,
		tenantID, clusterID).Scan(&sealed.KeyID, &sealed.Nonce, &sealed.Ciphertext)
	if err != nil {
		return seal.Sealed{}, notFound(err, "kubeconfig")
	}
	return sealed, nil
}

// ClustersUsingSecret names the other live clusters that share c's
// management cluster and namespace and use the credentials Secret name.
func (s *Store) ClustersUsingSecret(ctx context.Context, c Cluster, name string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name FROM clusters
		WHERE tenant_id = $1 AND management_domain = $2 AND namespace = $3 AND id <> $4
		  AND deleted_at IS NULL AND spec->'spec'->'credentials'->>'secretName' = $5
		ORDER BY name`, c.TenantID, c.ManagementDomain, c.Namespace, c.ID, name)
	if err != nil {
		return nil, fmt.Errorf("find clusters using secret %q: %w", name, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find clusters using secret %q: %w", name, err)
	}
	return names, nil
}

// Observed returns the observed status the watcher last recorded for the
// cluster (nil before its first record).
func (s *Store) Observed(ctx context.Context, clusterID uuid.UUID) (json.RawMessage, error) {
	var observed json.RawMessage
	if err := s.pool.QueryRow(ctx, `SELECT observed FROM clusters WHERE id = $1`, clusterID).Scan(&observed); err != nil {
		return nil, fmt.Errorf("read observed status of cluster %s: %w", clusterID, err)
	}
	return observed, nil
}

// SetObservedByName records what the management cluster reports about the
// tenant's live cluster name, and that writer (the replica whose watcher
// holds the management cluster's lease) recorded it. Only a change is
// written: the same report again leaves the row, its writer and its time.
func (s *Store) SetObservedByName(ctx context.Context, tenantID uuid.UUID, name string, observed json.RawMessage, writer string) error {
	err := s.exec(ctx, `
		UPDATE clusters SET observed = $3, observed_by = $4, observed_at = now(), updated_at = now()
		WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL AND observed IS DISTINCT FROM $3::jsonb`,
		tenantID, name, observed, writer)
	if err != nil {
		return fmt.Errorf("save observed status of %q: %w", name, err)
	}
	return nil
}

// StepsSucceeded reports whether any operation of the cluster ever
// finished one of the named steps successfully.
func (s *Store) StepsSucceeded(ctx context.Context, clusterID uuid.UUID, names ...string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM operation_steps st JOIN operations o ON o.id = st.operation_id
			WHERE o.cluster_id = $1 AND st.name = ANY($2) AND st.state = 'succeeded')`, clusterID, names).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up finished steps: %w", err)
	}
	return ok, nil
}
