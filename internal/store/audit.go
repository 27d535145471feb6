package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// audit appends an entry to the audit log inside tx. details must hold no secret.
func audit(ctx context.Context, tx pgx.Tx, actor Actor, action, target string, details map[string]any) error {
	sql, args, err := auditInsert(actor, action, target, details)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// auditInsert is the statement audit runs, for a batch.
func auditInsert(actor Actor, action, target string, details map[string]any) (string, []any, error) {
	raw, err := json.Marshal(details)
	if err != nil {
		return "", nil, fmt.Errorf("audit %s: %w", action, err)
	}
	var tokenID *uuid.UUID
	if actor.TokenID != uuid.Nil {
		tokenID = &actor.TokenID
	}
	return `
		INSERT INTO audit_log (tenant_id, token_id, action, target, request_id, details)
		VALUES ($1, $2, $3, $4, $5, $6)`, []any{actor.TenantID, tokenID, action, target, actor.RequestID, raw}, nil
}

// Audit appends an entry to the audit log on its own.
func (s *Store) Audit(ctx context.Context, actor Actor, action, target string, details map[string]any) error {
	return s.inTx(ctx, func(tx pgx.Tx) error { return audit(ctx, tx, actor, action, target, details) })
}

// AuditLog returns the tenant's audit entries, newest first.
func (s *Store) AuditLog(ctx context.Context, tenantID uuid.UUID, limit int) ([]AuditEntry, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, tenant_id, token_id, action, target, request_id, details, at
		FROM audit_log WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2`, tenantID, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.ID, &e.TenantID, &e.TokenID, &e.Action, &e.Target, &e.RequestID, &e.Details, &e.At)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return entries, nil
}
