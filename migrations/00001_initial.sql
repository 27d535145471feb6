-- +goose Up
-- Every row belongs to a tenant. Credentials are stored sealed (AES-256-GCM):
-- only the ciphertext, its nonce and the id of the key that sealed it.

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash   bytea NOT NULL UNIQUE,
    admin        boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    UNIQUE (tenant_id, name)
);

CREATE TABLE credentials (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    provider    text NOT NULL,
    -- names of the keys present (never their values)
    keys_set    text[] NOT NULL,
    fingerprint text NOT NULL,
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE clusters (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name              text NOT NULL,
    provider          text NOT NULL,
    management_domain text NOT NULL DEFAULT '',
    -- json, not jsonb: the spec keeps the field order it was submitted with
    spec              json NOT NULL,
    generation        bigint NOT NULL DEFAULT 1,
    phase             text NOT NULL,
    message           text NOT NULL DEFAULT '',
    -- what the management cluster last reported (CAPI phase, conditions, replicas)
    observed          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
-- A name is taken until its cluster is deleted; deleted rows stay for history.
CREATE UNIQUE INDEX clusters_tenant_name_live ON clusters (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX clusters_tenant_created ON clusters (tenant_id, created_at, id);

CREATE TABLE operations (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_id   uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    state        text NOT NULL,
    step         text NOT NULL DEFAULT '',
    error        text NOT NULL DEFAULT '',
    generation   bigint NOT NULL,
    river_job_id bigint,
    requested_by uuid REFERENCES api_tokens (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX operations_cluster ON operations (cluster_id, created_at);
-- One operation per cluster at a time.
CREATE UNIQUE INDEX operations_one_active ON operations (cluster_id) WHERE state IN ('queued', 'running');

CREATE TABLE operation_steps (
    operation_id uuid NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    ordinal      int NOT NULL,
    name         text NOT NULL,
    state        text NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    error        text NOT NULL DEFAULT '',
    -- why a step was skipped, or other news for the user
    message      text NOT NULL DEFAULT '',
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (operation_id, ordinal),
    UNIQUE (operation_id, name)
);

-- An Idempotency-Key names the cluster and operation its first request made;
-- a retry with the same key and body gets them again instead of a duplicate.
CREATE TABLE idempotency_keys (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    cluster_id   uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    operation_id uuid NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_id   uuid REFERENCES api_tokens (id) ON DELETE SET NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    request_id text NOT NULL DEFAULT '',
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE idempotency_keys;
DROP TABLE operation_steps;
DROP TABLE operations;
DROP TABLE clusters;
DROP TABLE credentials;
DROP TABLE api_tokens;
DROP TABLE tenants;
