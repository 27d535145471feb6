-- +goose Up
-- API tokens may expire; a revoked or expired token authenticates nothing,
-- and its dashboard sessions end with it.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, created_at);

-- +goose Down
DROP INDEX api_tokens_tenant;
ALTER TABLE api_tokens DROP COLUMN expires_at;
