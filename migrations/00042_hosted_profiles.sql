-- +goose Up
-- A tenant's default profile per provider for the hosted-mode API
-- (POST /api/clusters): what turns its flat body into a full spec, set by
-- an admin (PUT /v1/tenants/{tenant}/hosted-profiles/{provider}).
CREATE TABLE hosted_profiles (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   text NOT NULL,
    profile    jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider)
);

-- +goose Down
DROP TABLE hosted_profiles;
