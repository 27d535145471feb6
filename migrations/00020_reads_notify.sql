-- +goose Up
-- Each replica keeps cluster statuses and API tokens in memory
-- (internal/readmodel) and must hear of every change to what it keeps,
-- whichever replica or worker made it. The events triggers announce only
-- the changes users care about (not an updated_at alone, not GitOps
-- readiness, not tokens), so these triggers announce on their own channel,
-- lok8s_reads, one payload per changed thing (Postgres folds identical
-- payloads of one transaction into one):
--   c:<tenant id>:<cluster name>   a cluster, its operations, steps, addons or GitOps state
--   t:<token hash, hex>            an API token revoked, deleted, re-keyed or otherwise changed
-- A NOTIFY is delivered after its transaction commits, or not at all.

-- +goose StatementBegin
CREATE FUNCTION lok8s_reads_cluster() RETURNS trigger AS $$
DECLARE
    r clusters%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('lok8s_reads', 'c:' || r.tenant_id::text || ':' || r.name);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER clusters_reads AFTER INSERT OR UPDATE OR DELETE ON clusters
    FOR EACH ROW EXECUTE FUNCTION lok8s_reads_cluster();

-- For the tables keyed by cluster_id (operations, cluster_addons,
-- cluster_gitops). A row deleted with its cluster finds none: the
-- cluster's own trigger announced it.
-- +goose StatementBegin
CREATE FUNCTION lok8s_reads_cluster_child() RETURNS trigger AS $$
DECLARE
    cid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN cid := OLD.cluster_id; ELSE cid := NEW.cluster_id; END IF;
    PERFORM pg_notify('lok8s_reads', 'c:' || c.tenant_id::text || ':' || c.name) FROM clusters c WHERE c.id = cid;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER operations_reads AFTER INSERT OR UPDATE OR DELETE ON operations
    FOR EACH ROW EXECUTE FUNCTION lok8s_reads_cluster_child();
CREATE TRIGGER cluster_addons_reads AFTER INSERT OR UPDATE OR DELETE ON cluster_addons
    FOR EACH ROW EXECUTE FUNCTION lok8s_reads_cluster_child();
CREATE TRIGGER cluster_gitops_reads AFTER INSERT OR UPDATE OR DELETE ON cluster_gitops
    FOR EACH ROW EXECUTE FUNCTION lok8s_reads_cluster_child();

-- Steps are inserted only with their operation, whose trigger announces
-- the cluster in the same transaction: updates and deletes are enough.
-- +goose StatementBegin
CREATE FUNCTION lok8s_reads_step() RETURNS trigger AS $$
DECLARE
    oid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN oid := OLD.operation_id; ELSE oid := NEW.operation_id; END IF;
    PERFORM pg_notify('lok8s_reads', 'c:' || c.tenant_id::text || ':' || c.name)
    FROM operations o JOIN clusters c ON c.id = o.cluster_id WHERE o.id = oid;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER operation_steps_reads AFTER UPDATE OR DELETE ON operation_steps
    FOR EACH ROW EXECUTE FUNCTION lok8s_reads_step();

-- A token's use (last_used_at) changes nothing a replica keeps: not announced.
-- +goose StatementBegin
CREATE FUNCTION lok8s_reads_token() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('lok8s_reads', 't:' || encode(OLD.token_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.token_hash IS DISTINCT FROM OLD.token_hash THEN
        PERFORM pg_notify('lok8s_reads', 't:' || encode(NEW.token_hash, 'hex'));
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER api_tokens_reads_delete AFTER DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION lok8s_reads_token();
CREATE TRIGGER api_tokens_reads_update AFTER UPDATE ON api_tokens
    FOR EACH ROW WHEN ((OLD.token_hash, OLD.revoked_at, OLD.expires_at, OLD.admin, OLD.name, OLD.tenant_id)
                       IS DISTINCT FROM (NEW.token_hash, NEW.revoked_at, NEW.expires_at, NEW.admin, NEW.name, NEW.tenant_id))
    EXECUTE FUNCTION lok8s_reads_token();

-- +goose Down
DROP TRIGGER api_tokens_reads_update ON api_tokens;
DROP TRIGGER api_tokens_reads_delete ON api_tokens;
DROP TRIGGER operation_steps_reads ON operation_steps;
DROP TRIGGER cluster_gitops_reads ON cluster_gitops;
DROP TRIGGER cluster_addons_reads ON cluster_addons;
DROP TRIGGER operations_reads ON operations;
DROP TRIGGER clusters_reads ON clusters;
DROP FUNCTION lok8s_reads_token();
DROP FUNCTION lok8s_reads_step();
DROP FUNCTION lok8s_reads_cluster_child();
DROP FUNCTION lok8s_reads_cluster();
