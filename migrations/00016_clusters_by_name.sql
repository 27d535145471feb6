-- +goose NO TRANSACTION
-- +goose Up
-- Store.Cluster finds a cluster by name among the tenant's rows, deleted
-- ones included (the live one first, then the most recently deleted):
-- clusters_tenant_name_live covers live rows only, so every lookup read
-- all the tenant's rows. This index serves the lookup and its order.
-- Built concurrently: writes go on while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS clusters_tenant_name ON clusters (tenant_id, name, deleted_at DESC NULLS FIRST);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS clusters_tenant_name;
