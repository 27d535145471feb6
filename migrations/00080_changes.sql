-- +goose Up
-- Changes are announced through a table instead of NOTIFY. A transaction
-- that notifies takes Postgres's cluster-wide notify lock at commit and
-- holds it through its commit record's flush (async.c, PreCommit_Notify):
-- every write of the service notified (the events, 00006/00075, and the
-- read model, 00020), so their commits went one at a time. Now the same
-- triggers write one row per changed thing and transaction here, and each
-- replica's change feed (internal/changes) polls the rows committed since
-- its previous look, by snapshot: nothing is lost if nobody is listening at
-- commit, and no lock is shared between writers.
--   e:<tenant id>                  the tenant has new events (lok8s_emit)
--   c:<tenant id>:<cluster name>   a cluster, its operations, steps, addons or GitOps state
--   t:<token hash, hex>            an API token revoked, deleted, re-keyed or otherwise changed
-- tx is the writing transaction: a feed reads the rows of the transactions
-- that its previous snapshot did not see (at or above its xmax, or in its
-- list in flight) and are visible now.
CREATE TABLE changes (
    tx  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    key text NOT NULL
);
CREATE INDEX changes_tx ON changes (tx, key);

-- Rows below pruned_below are deleted (jobs' prune_events, hourly); a feed
-- whose previous snapshot's xmin is below it may have missed some, and
-- drops everything it holds. next_below is the xmin seen at the previous
-- run: the next run prunes below it, so a feed polling meanwhile has seen
-- every row it deletes.
CREATE TABLE change_retention (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_below xid8 NOT NULL DEFAULT '0',
    next_below   xid8 NOT NULL DEFAULT '0'
);
INSERT INTO change_retention DEFAULT VALUES;

-- lok8s_announce records key as changed by this transaction, once.
-- +goose StatementBegin
CREATE FUNCTION lok8s_announce(key text) RETURNS void AS $$
DECLARE
    me xid8 := pg_current_xact_id();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM changes c WHERE c.tx = me AND c.key = lok8s_announce.key) THEN
        INSERT INTO changes (tx, key) VALUES (me, lok8s_announce.key);
    END IF;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
DECLARE
    me xid8 := pg_current_xact_id();
BEGIN
    IF EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = lok8s_emit.tenant AND e.cluster = lok8s_emit.cluster AND e.tx > me) THEN
        RAISE EXCEPTION 'an event of cluster % was committed by a later transaction; run this one again', lok8s_emit.cluster
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO events (tenant_id, cluster_id, cluster, type, data, tx)
    VALUES (tenant, cluster_id, cluster, kind, data, me);
    PERFORM lok8s_announce('e:' || tenant::text);
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_cluster() RETURNS trigger AS $$
DECLARE
    r clusters%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM lok8s_announce('c:' || r.tenant_id::text || ':' || r.name);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_cluster_child() RETURNS trigger AS $$
DECLARE
    cid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN cid := OLD.cluster_id; ELSE cid := NEW.cluster_id; END IF;
    PERFORM lok8s_announce('c:' || c.tenant_id::text || ':' || c.name) FROM clusters c WHERE c.id = cid;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_step() RETURNS trigger AS $$
DECLARE
    oid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN oid := OLD.operation_id; ELSE oid := NEW.operation_id; END IF;
    PERFORM lok8s_announce('c:' || c.tenant_id::text || ':' || c.name)
    FROM operations o JOIN clusters c ON c.id = o.cluster_id WHERE o.id = oid;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_token() RETURNS trigger AS $$
BEGIN
    PERFORM lok8s_announce('t:' || encode(OLD.token_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.token_hash IS DISTINCT FROM OLD.token_hash THEN
        PERFORM lok8s_announce('t:' || encode(NEW.token_hash, 'hex'));
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_token() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('lok8s_reads', 't:' || encode(OLD.token_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.token_hash IS DISTINCT FROM OLD.token_hash THEN
        PERFORM pg_notify('lok8s_reads', 't:' || encode(NEW.token_hash, 'hex'));
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_step() RETURNS trigger AS $$
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_cluster_child() RETURNS trigger AS $$
DECLARE
    cid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN cid := OLD.cluster_id; ELSE cid := NEW.cluster_id; END IF;
    PERFORM pg_notify('lok8s_reads', 'c:' || c.tenant_id::text || ':' || c.name) FROM clusters c WHERE c.id = cid;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_reads_cluster() RETURNS trigger AS $$
DECLARE
    r clusters%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM pg_notify('lok8s_reads', 'c:' || r.tenant_id::text || ':' || r.name);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
DECLARE
    me xid8 := pg_current_xact_id();
BEGIN
    IF EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = lok8s_emit.tenant AND e.cluster = lok8s_emit.cluster AND e.tx > me) THEN
        RAISE EXCEPTION 'an event of cluster % was committed by a later transaction; run this one again', lok8s_emit.cluster
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO events (tenant_id, cluster_id, cluster, type, data, tx)
    VALUES (tenant, cluster_id, cluster, kind, data, me);
    PERFORM pg_notify('lok8s_events', tenant::text);
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
DROP FUNCTION lok8s_announce(text);
DROP TABLE change_retention;
DROP TABLE changes;
