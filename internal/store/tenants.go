package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// CreateTenant adds a tenant; ErrConflict if the name is taken.
func (s *Store) CreateTenant(ctx context.Context, name string) (Tenant, error) {
	t := Tenant{ID: uuid.New(), Name: name}
	err := s.pool.QueryRow(ctx,
		`INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING created_at`, t.ID, name).Scan(&t.CreatedAt)
	if isUniqueViolation(err, "") {
		return Tenant{}, fmt.Errorf("tenant %q: %w", name, ErrConflict)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant %q: %w", name, err)
	}
	return t, nil
}

// TenantByName finds a tenant by name.
func (s *Store) TenantByName(ctx context.Context, name string) (Tenant, error) {
	var t Tenant
	err := s.pool.QueryRow(ctx, `SELECT id, name, created_at FROM tenants WHERE name = $1`, name).
		Scan(&t.ID, &t.Name, &t.CreatedAt)
	if err != nil {
		return Tenant{}, notFound(err, fmt.Sprintf("tenant %q", name))
	}
	return t, nil
}

// CreateToken stores a token's hash for tenantID; ErrConflict if the tenant
// already has a token of that name.
func (s *Store) CreateToken(ctx context.Context, tenantID uuid.UUID, name string, hash []byte, admin bool, expiresAt *time.Time) (uuid.UUID, error) {
	id := uuid.New()
	_, err := s.pool.Exec(ctx,
		`INSERT INTO api_tokens (id, tenant_id, name, token_hash, admin, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		id, tenantID, name, hash, admin, expiresAt)
	if isUniqueViolation(err, "") {
		return uuid.Nil, fmt.Errorf("token %q: %w", name, ErrConflict)
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("create token %q: %w", name, err)
	}
	return id, nil
}

// EnsureAdminToken makes the token with hash the admin token of tenant
// tenantName, creating the tenant if needed. It is idempotent, and a changed
// admin token replaces the previous one (which stops working).
func (s *Store) EnsureAdminToken(ctx context.Context, tenantName string, hash []byte) (Principal, error) {
	var p Principal
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO tenants (id, name) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
			RETURNING id, name`, uuid.New(), tenantName).Scan(&p.TenantID, &p.TenantName)
		if err != nil {
			return fmt.Errorf("ensure tenant %q: %w", tenantName, err)
		}
		p.TokenName, p.Admin = "admin", true
		var rotated bool
		err = tx.QueryRow(ctx, `
			WITH old AS (SELECT token_hash FROM api_tokens WHERE tenant_id = $2 AND name = 'admin')
			INSERT INTO api_tokens (id, tenant_id, name, token_hash, admin) VALUES ($1, $2, 'admin', $3, true)
			ON CONFLICT (tenant_id, name) DO UPDATE SET token_hash = EXCLUDED.token_hash, admin = true, revoked_at = NULL
			RETURNING id, coalesce((SELECT token_hash FROM old) IS DISTINCT FROM $3, false)`,
			uuid.New(), p.TenantID, hash).Scan(&p.TokenID, &rotated)
		if err != nil {
			return fmt.Errorf("ensure admin token: %w", err)
		}
		if rotated {
			// A new admin token: what the old one signed in ends with it.
			if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE token_id = $1`, p.TokenID); err != nil {
				return fmt.Errorf("end the old admin token's sessions: %w", err)
			}
		}
		return nil
	})
	return p, err
}

// Authenticate returns the principal of the unrevoked token with hash, and
// records its use (at most once a minute, to keep reads cheap).
func (s *Store) Authenticate(ctx context.Context, hash []byte) (Principal, error) {
	p, _, err := s.AuthenticateToken(ctx, hash)
	return p, err
}

// AuthenticateToken is Authenticate that also returns when the token
// expires (nil: never), for a caller that keeps it in memory.
func (s *Store) AuthenticateToken(ctx context.Context, hash []byte) (Principal, *time.Time, error) {
	var p Principal
	var expires *time.Time
	err := s.pool.QueryRow(ctx, `
		WITH tok AS (
			SELECT t.id, t.tenant_id, t.name, t.admin, t.expires_at, n.name AS tenant_name
			FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id
			WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
		), touch AS (
			UPDATE api_tokens SET last_used_at = now()
			WHERE id = (SELECT id FROM tok) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
		)
		SELECT id, tenant_id, name, admin, tenant_name, expires_at FROM tok`, hash).
		Scan(&p.TokenID, &p.TenantID, &p.TokenName, &p.Admin, &p.TenantName, &expires)
	if err != nil {
		return Principal{}, nil, notFound(err, "token")
	}
	return p, expires, nil
}

// TouchToken records a use of token id (at most once a minute), for a
// caller that authenticated it from memory.
func (s *Store) TouchToken(ctx context.Context, id uuid.UUID) error {
	_, err := s.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, id)
	if err != nil {
		return fmt.Errorf("record token use: %w", err)
	}
	return nil
}

// Token is an API token's metadata (never the token).
type Token struct {
	ID         uuid.UUID
	Name       string
	Admin      bool
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
}

// Tokens lists a tenant's tokens, oldest first.
func (s *Store) Tokens(ctx context.Context, tenantID uuid.UUID) ([]Token, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, name, admin, created_at, last_used_at, expires_at, revoked_at
		FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		if err := rows.Scan(&t.ID, &t.Name, &t.Admin, &t.CreatedAt, &t.LastUsedAt, &t.ExpiresAt, &t.RevokedAt); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes the tenant's token id and ends its dashboard
// sessions (its event streams end at their next heartbeat). The service's
// admin token is not revoked here (ErrConflict): rotate
// LOK8S_ADMIN_TOKEN instead. Revoking again is fine.
func (s *Store) RevokeToken(ctx context.Context, actor Actor, tenantID, id uuid.UUID) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var name string
		var admin bool
		err := tx.QueryRow(ctx, `SELECT name, admin FROM api_tokens WHERE id = $1 AND tenant_id = $2`, id, tenantID).Scan(&name, &admin)
		if err != nil {
			return notFound(err, "token")
		}
		if admin {
			return fmt.Errorf("token %q is the service's admin token (rotate LOK8S_ADMIN_TOKEN instead): %w", name, ErrConflict)
		}
		if _, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`, id); err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE token_id = $1`, id); err != nil {
			return fmt.Errorf("end the token's sessions: %w", err)
		}
		return audit(ctx, tx, actor, "token.revoke", "tokens/"+id.String(), map[string]any{"name": name})
	})
}
