-- +goose Up
-- The dashboard's sign-in sessions: server-side, so signing out or revoking
-- the API token a session was opened with ends it at once. Only the SHA-256
-- of the session id (the cookie's value) is stored.
CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_id   uuid NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    -- the token every form of the session carries (CSRF protection)
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- +goose Down
DROP TABLE sessions;
