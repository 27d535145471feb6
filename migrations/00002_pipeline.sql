-- +goose Up
-- What the pipeline produces: where on the management cluster a cluster
-- lives, its rendered manifests (no secret data: the credentials Secret is
-- applied separately), and its workload kubeconfig, sealed like credentials.

ALTER TABLE clusters ADD COLUMN namespace text NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN manifests text NOT NULL DEFAULT '';

CREATE TABLE cluster_kubeconfigs (
    cluster_id uuid PRIMARY KEY REFERENCES clusters (id) ON DELETE CASCADE,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id     text NOT NULL,
    nonce      bytea NOT NULL,
    ciphertext bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE cluster_kubeconfigs;
ALTER TABLE clusters DROP COLUMN manifests;
ALTER TABLE clusters DROP COLUMN namespace;
