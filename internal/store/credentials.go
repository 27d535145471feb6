package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"lok8s.dev/provisioner/internal/seal"
)

// NewCredential is what PutCredential stores: metadata and the sealed
// secret. The plaintext never reaches the store.
type NewCredential struct {
	Name        string
	Provider    string
	KeysSet     []string
	Fingerprint string
	Sealed      seal.Sealed
}

// CredentialAAD is the associated data a credential is sealed with: it binds
// the ciphertext to its tenant and name, so a ciphertext copied to another
// row does not open.
func CredentialAAD(tenantID uuid.UUID, name string) []byte {
	return []byte("lok8s/credentials/" + tenantID.String() + "/" + name)
}

// KubeconfigAAD is the associated data a workload kubeconfig is sealed with.
func KubeconfigAAD(tenantID, clusterID uuid.UUID) []byte {
	return []byte("lok8s/kubeconfigs/" + tenantID.String() + "/" + clusterID.String())
}

const credentialColumns = `id, tenant_id, name, provider, keys_set, fingerprint, key_id, created_at, updated_at`

func scanCredential(row pgx.Row) (Credential, error) {
	var c Credential
	err := row.Scan(&c.ID, &c.TenantID, &c.Name, &c.Provider, &c.KeysSet, &c.Fingerprint, &c.KeyID, &c.CreatedAt, &c.UpdatedAt)
	return c, err
}

// PutCredential creates or replaces the tenant's credential nc.Name and
// reports whether it was created.
func (s *Store) PutCredential(ctx context.Context, actor Actor, nc NewCredential) (Credential, bool, error) {
	var c Credential
	var created bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO credentials (id, tenant_id, name, provider, keys_set, fingerprint, key_id, nonce, ciphertext)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (tenant_id, name) DO UPDATE SET
				provider = EXCLUDED.provider, keys_set = EXCLUDED.keys_set, fingerprint = EXCLUDED.fingerprint,
				key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()
			RETURNING `+credentialColumns+`, (xmax = 0)`,
			uuid.New(), actor.TenantID, nc.Name, nc.Provider, nc.KeysSet, nc.Fingerprint,
			nc.Sealed.KeyID, nc.Sealed.Nonce, nc.Sealed.Ciphertext).
			Scan(&c.ID, &c.TenantID, &c.Name, &c.Provider, &c.KeysSet, &c.Fingerprint, &c.KeyID, &c.CreatedAt, &c.UpdatedAt, &created)
		if err != nil {
			return fmt.Errorf("put credential %q: %w", nc.Name, err)
		}
		action := "credential.replace"
		if created {
			action = "credential.create"
		}
		return audit(ctx, tx, actor, action, "credentials/"+nc.Name, map[string]any{"fingerprint": nc.Fingerprint})
	})
	return c, created, err
}

// Credential returns the metadata of the tenant's credential name.
func (s *Store) Credential(ctx context.Context, tenantID uuid.UUID, name string) (Credential, error) {
	c, err := scanCredential(s.pool.QueryRow(ctx,
		`SELECT `+credentialColumns+` FROM credentials WHERE tenant_id = $1 AND name = $2`, tenantID, name))
	if err != nil {
		return Credential{}, notFound(err, fmt.Sprintf("credential %q", name))
	}
	return c, nil
}

// Credentials lists the metadata of the tenant's credentials by name.
func (s *Store) Credentials(ctx context.Context, tenantID uuid.UUID) ([]Credential, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+credentialColumns+` FROM credentials WHERE tenant_id = $1 ORDER BY name`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	creds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Credential, error) { return scanCredential(r) })
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return creds, nil
}

// SealedCredential returns the tenant's credential name with its sealed
// secret, for the pipeline to open.
func (s *Store) SealedCredential(ctx context.Context, tenantID uuid.UUID, name string) (Credential, seal.Sealed, error) {
	var c Credential
	var sealed seal.Sealed
	err := s.pool.QueryRow(ctx, `
		SELECT `+credentialColumns+`, nonce, ciphertext FROM credentials WHERE tenant_id = $1 AND name = $2`, tenantID, name).
		Scan(&c.ID, &c.TenantID, &c.Name, &c.Provider, &c.KeysSet, &c.Fingerprint, &c.KeyID, &c.CreatedAt, &c.UpdatedAt,
			&sealed.Nonce, &sealed.Ciphertext)
	if err != nil {
		return Credential{}, seal.Sealed{}, notFound(err, fmt.Sprintf("credential %q", name))
	}
	sealed.KeyID = c.KeyID
	return c, sealed, nil
}

// DeleteCredential removes the tenant's credential name. A credential that a
// live cluster uses gives ErrConflict naming those clusters.
func (s *Store) DeleteCredential(ctx context.Context, actor Actor, name string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT name FROM clusters
			WHERE tenant_id = $1 AND deleted_at IS NULL AND spec->'spec'->'credentials'->>'secretName' = $2
			ORDER BY name`, actor.TenantID, name)
		if err != nil {
			return fmt.Errorf("find clusters using credential %q: %w", name, err)
		}
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find clusters using credential %q: %w", name, err)
		}
		if len(users) > 0 {
			return fmt.Errorf("credential %q is used by clusters %s: %w", name, strings.Join(users, ", "), ErrConflict)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM credentials WHERE tenant_id = $1 AND name = $2`, actor.TenantID, name)
		if err != nil {
			return fmt.Errorf("delete credential %q: %w", name, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("credential %q: %w", name, ErrNotFound)
		}
		return audit(ctx, tx, actor, "credential.delete", "credentials/"+name, nil)
	})
}
