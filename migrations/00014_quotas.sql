-- +goose Up
-- Tenant quotas an admin sets: live clusters, machines per cluster and
-- machines in all (NULL: no limit). A tenant without a row has no limits.
CREATE TABLE tenant_quotas (
    tenant_id            uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    clusters             integer CHECK (clusters >= 0),
    machines_per_cluster integer CHECK (machines_per_cluster >= 0),
    machines             integer CHECK (machines >= 0),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- The machines a cluster's spec asks for (control plane and pools, as the
-- provider's templates render them), written with the spec; quotas sum it.
ALTER TABLE clusters ADD COLUMN machines integer NOT NULL DEFAULT 0;
-- What is there already: every provider section's controlPlane replicas
-- (but EKS's, which AWS runs) and its pools' replicas, from the stored
-- (defaulted) spec. New and updated specs are counted by the service from
-- the provider catalog.
UPDATE clusters c SET machines = (
    SELECT coalesce(sum(
        CASE WHEN json_typeof(s.value -> 'controlPlane') = 'object' AND coalesce(s.value ->> 'flavor', '') <> 'eks'
             THEN coalesce((s.value -> 'controlPlane' ->> 'replicas')::integer, 0) ELSE 0 END
        + (SELECT coalesce(sum(coalesce((w.value ->> 'replicas')::integer, 0)), 0)
           FROM json_each(CASE WHEN json_typeof(s.value -> 'workers') = 'object' THEN s.value -> 'workers' ELSE '{}'::json END) w)
    ), 0)
    FROM json_each(c.spec -> 'spec') s
    WHERE json_typeof(s.value) = 'object'
) WHERE deleted_at IS NULL;

-- +goose Down
ALTER TABLE clusters DROP COLUMN machines;
DROP TABLE tenant_quotas;
