-- +goose Up
-- The GitOps source's readiness on the workload cluster, as Flux or Argo CD
-- last reported it to the gitops step.
CREATE TABLE cluster_gitops (
    cluster_id uuid PRIMARY KEY REFERENCES clusters (id) ON DELETE CASCADE,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   text NOT NULL,
    repo       text NOT NULL,
    ready      boolean NOT NULL DEFAULT false,
    reason     text NOT NULL DEFAULT '',
    message    text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE cluster_gitops;
