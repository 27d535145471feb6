-- +goose Up
-- One NOTIFY per tenant per transaction on lok8s_events, instead of one per
-- event. The events hub only ever used the payload's tenant to wake that
-- tenant's streams, which then read what is new from the table; Postgres
-- folds identical payloads of one transaction into one notification, so a
-- payload of the tenant alone is sent once however many events the
-- transaction writes (a POST writes two, a provisioning step several),
-- and every listening replica is signalled and woken once.
--
-- What this does not change: a transaction that notifies at all still
-- takes Postgres's cluster-wide notify lock at commit and holds it through
-- its commit record's flush (async.c, PreCommit_Notify), so notifying
-- commits are serialised (docs/performance.md, "Writes").
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

-- +goose Down
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
