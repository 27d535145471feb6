-- +goose NO TRANSACTION
-- +goose Up
-- Store.ClustersByDomain finds the tenant's live clusters by
-- spec.cluster.domain (GET /api/clusters?domain=, the hosted API's lookup,
-- and its create, which returns the cluster a domain already has).
-- Built concurrently: writes go on while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS clusters_tenant_domain_live
    ON clusters (tenant_id, ((spec -> 'spec' -> 'cluster' ->> 'domain')))
    WHERE deleted_at IS NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS clusters_tenant_domain_live;
