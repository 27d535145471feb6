-- +goose Up
-- Each requested addon's state on the workload cluster, as the bootstrap
-- step last left it.
CREATE TABLE cluster_addons (
    cluster_id uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL,
    ordinal    int NOT NULL,
    state      text NOT NULL,
    chart      text NOT NULL DEFAULT '',
    version    text NOT NULL DEFAULT '',
    message    text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, name)
);

-- +goose Down
DROP TABLE cluster_addons;
