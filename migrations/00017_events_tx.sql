-- +goose Up
-- Events without a global lock. Until now every event writer took one
-- advisory lock, held to commit, so ids committed in order; that
-- serialised every write of the service (POST topped out near 200/s) and
-- made writers deadlock. Now each event records its transaction's id, and
-- the stream order is (tx, id): by transaction id, then by id within a
-- transaction. Readers deliver only events whose transaction is below the
-- xmin of their snapshot (every transaction below it has ended), so an
-- event can never later appear behind what a reader has delivered: the
-- events of a transaction still in flight are held back until it ends.
--
-- Existing events get tx 0: they sort first, in id order, as they were
-- committed; a stream id sent before this migration is position (0, id).
ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
DROP INDEX events_tenant;
DROP INDEX events_cluster;
CREATE INDEX events_tenant ON events (tenant_id, tx, id);
CREATE INDEX events_cluster ON events (tenant_id, cluster, tx, id);

-- The position (tx, id) of the last event pruned.
ALTER TABLE event_retention ADD COLUMN pruned_tx xid8 NOT NULL DEFAULT '0';

-- One cluster's events stay in the order of its changes. Transaction ids
-- are handed out at a transaction's first write, which may come before
-- it waits for a row another transaction (with a later id) holds: the
-- waiter's events would then sort before the holder's, although they were
-- written after it. An event that would sort before one of its cluster's
-- already committed is refused with a serialization failure, and the
-- store runs the transaction again (with a later id). This is rare (the
-- old lock turned the same cases into deadlocks) and waits for nothing.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
DECLARE
    event_id bigint;
    me xid8 := pg_current_xact_id();
BEGIN
    IF EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = lok8s_emit.tenant AND e.cluster = lok8s_emit.cluster AND e.tx > me) THEN
        RAISE EXCEPTION 'an event of cluster % was committed by a later transaction; run this one again', lok8s_emit.cluster
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO events (tenant_id, cluster_id, cluster, type, data, tx)
    VALUES (tenant, cluster_id, cluster, kind, data, me) RETURNING id INTO event_id;
    PERFORM pg_notify('lok8s_events', tenant::text || ':' || event_id::text);
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7465);
    INSERT INTO events (tenant_id, cluster_id, cluster, type, data)
    VALUES (tenant, cluster_id, cluster, kind, data) RETURNING id INTO event_id;
    PERFORM pg_notify('lok8s_events', tenant::text || ':' || event_id::text);
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
ALTER TABLE event_retention DROP COLUMN pruned_tx;
DROP INDEX events_tenant;
DROP INDEX events_cluster;
ALTER TABLE events DROP COLUMN tx;
CREATE INDEX events_tenant ON events (tenant_id, id);
CREATE INDEX events_cluster ON events (tenant_id, cluster, id);
