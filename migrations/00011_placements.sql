-- +goose Up
-- A namespace of a management cluster belongs to one tenant: the first to
-- place a cluster there. Two tenants naming the same management cluster
-- and namespace would otherwise overwrite each other's objects (server-side
-- apply with forced ownership) and delete or read each other's clusters.
-- SaaS namespaces (lok8s-<tenant>) are claimed like any other.
CREATE TABLE placements (
    management_domain text NOT NULL,
    namespace         text NOT NULL,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (management_domain, namespace)
);
-- What is there already: each namespace goes to the tenant that used it first.
INSERT INTO placements (management_domain, namespace, tenant_id, created_at)
SELECT DISTINCT ON (management_domain, namespace) management_domain, namespace, tenant_id, created_at
FROM clusters WHERE namespace <> ''
ORDER BY management_domain, namespace, created_at, id;

-- +goose Down
DROP TABLE placements;
