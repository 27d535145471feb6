package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SetHostedProfile replaces the tenant's hosted-mode profile for provider
// (a JSON document the API reads; the store keeps it as is).
func (s *Store) SetHostedProfile(ctx context.Context, actor Actor, tenantID uuid.UUID, provider string, profile json.RawMessage) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO hosted_profiles (tenant_id, provider, profile) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, provider) DO UPDATE SET profile = $3, updated_at = now()`,
			tenantID, provider, profile); err != nil {
			return fmt.Errorf("set hosted profile: %w", err)
		}
		return audit(ctx, tx, actor, "tenant.hosted-profile", "tenants/"+tenantID.String()+"/hosted-profiles/"+provider, nil)
	})
}

// HostedProfile returns the tenant's hosted-mode profile for provider, or
// ErrNotFound.
func (s *Store) HostedProfile(ctx context.Context, tenantID uuid.UUID, provider string) (json.RawMessage, error) {
	var profile json.RawMessage
	err := s.pool.QueryRow(ctx, `SELECT profile FROM hosted_profiles WHERE tenant_id = $1 AND provider = $2`,
		tenantID, provider).Scan(&profile)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("hosted profile %q", provider))
	}
	return profile, nil
}
