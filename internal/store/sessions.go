package store

import (
	"context"
	"fmt"
	"time"
)

// Session is a dashboard sign-in: the principal of the API token it was
// opened with, and the CSRF token its forms carry.
type Session struct {
	Principal Principal
	CSRFToken string
	ExpiresAt time.Time
}

// CreateSession stores a session (by the hash of its id) for the principal
// of the token p was authenticated with, and drops expired ones.
func (s *Store) CreateSession(ctx context.Context, idHash []byte, p Principal, csrfToken string, expiresAt time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at < now()`); err != nil {
		return fmt.Errorf("drop expired sessions: %w", err)
	}
	_, err := s.pool.Exec(ctx,
		`INSERT INTO sessions (id_hash, tenant_id, token_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		idHash, p.TenantID, p.TokenID, csrfToken, expiresAt)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// SessionByHash returns the unexpired session whose id hashes to idHash,
// while the token it was opened with is not revoked; ErrNotFound otherwise.
func (s *Store) SessionByHash(ctx context.Context, idHash []byte) (Session, error) {
	var ses Session
	p := &ses.Principal
	err := s.pool.QueryRow(ctx, `
		SELECT t.id, t.tenant_id, t.name, t.admin, n.name, s.csrf_token, s.expires_at
		FROM sessions s
		JOIN api_tokens t ON t.id = s.token_id AND t.tenant_id = s.tenant_id
		JOIN tenants n ON n.id = s.tenant_id
		WHERE s.id_hash = $1 AND s.expires_at > now() AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())`, idHash).
		Scan(&p.TokenID, &p.TenantID, &p.TokenName, &p.Admin, &p.TenantName, &ses.CSRFToken, &ses.ExpiresAt)
	if err != nil {
		return Session{}, notFound(err, "session")
	}
	p.SessionHash = idHash
	return ses, nil
}

// PrincipalActive reports whether p may still act: its token is not
// revoked (nor replaced) and, for a session's principal, the session still
// exists. Long-lived requests (event streams) ask it from time to time.
func (s *Store) PrincipalActive(ctx context.Context, p Principal) (bool, error) {
	var active bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM api_tokens WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))
		   AND ($2::bytea IS NULL OR EXISTS (SELECT 1 FROM sessions WHERE id_hash = $2 AND expires_at > now()))`,
		p.TokenID, p.SessionHash).Scan(&active)
	if err != nil {
		return false, fmt.Errorf("check principal: %w", err)
	}
	return active, nil
}

// DeleteSession ends the session whose id hashes to idHash (signing out).
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
