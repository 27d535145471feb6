-- +goose Up
-- A tenant's policy for the kubeconfigs the service issues: the longest TTL
-- a download may ask for, in seconds (NULL: the service's default, 24 h).
-- The TokenRequest API takes no less than 10 minutes.
ALTER TABLE tenant_quotas ADD COLUMN kubeconfig_max_ttl_seconds integer CHECK (kubeconfig_max_ttl_seconds >= 600);

-- +goose Down
ALTER TABLE tenant_quotas DROP COLUMN kubeconfig_max_ttl_seconds;
