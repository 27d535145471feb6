-- +goose Up
-- Every change a user cares about becomes a row here, written by triggers
-- in the same transaction as the change, and announced with NOTIFY so any
-- replica's streams pick it up. Writers of events take one advisory
-- transaction lock, so event ids commit in order: a reader that has seen
-- id N has seen every event below N (resuming by Last-Event-ID loses none).

CREATE TABLE events (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_id uuid REFERENCES clusters (id) ON DELETE CASCADE,
    cluster    text NOT NULL,
    type       text NOT NULL,
    data       jsonb NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant ON events (tenant_id, id);
CREATE INDEX events_cluster ON events (tenant_id, cluster, id);

-- +goose StatementBegin
CREATE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
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

-- +goose StatementBegin
CREATE FUNCTION lok8s_cluster_events() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.phase IS DISTINCT FROM OLD.phase OR NEW.message IS DISTINCT FROM OLD.message
       OR NEW.generation IS DISTINCT FROM OLD.generation THEN
        PERFORM lok8s_emit(NEW.tenant_id, NEW.id, NEW.name, 'cluster.phase', jsonb_build_object(
            'cluster', NEW.name, 'phase', NEW.phase, 'message', NEW.message, 'generation', NEW.generation));
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.observed IS DISTINCT FROM OLD.observed THEN
        PERFORM lok8s_emit(NEW.tenant_id, NEW.id, NEW.name, 'cluster.observed', jsonb_build_object(
            'cluster', NEW.name, 'capiPhase', NEW.observed->'phase', 'conditions', NEW.observed->'conditions',
            'controlPlane', NEW.observed->'controlPlane', 'workers', NEW.observed->'workers', 'pools', NEW.observed->'pools'));
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER clusters_events AFTER INSERT OR UPDATE ON clusters FOR EACH ROW EXECUTE FUNCTION lok8s_cluster_events();

-- +goose StatementBegin
CREATE FUNCTION lok8s_operation_events() RETURNS trigger AS $$
DECLARE
    c clusters%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.state IS NOT DISTINCT FROM OLD.state THEN
        RETURN NULL;
    END IF;
    SELECT * INTO c FROM clusters WHERE id = NEW.cluster_id;
    PERFORM lok8s_emit(NEW.tenant_id, NEW.cluster_id, c.name, 'operation', jsonb_build_object(
        'cluster', c.name, 'operation', NEW.id, 'kind', NEW.kind, 'state', NEW.state, 'error', NEW.error));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER operations_events AFTER INSERT OR UPDATE ON operations FOR EACH ROW EXECUTE FUNCTION lok8s_operation_events();

-- +goose StatementBegin
CREATE FUNCTION lok8s_step_events() RETURNS trigger AS $$
DECLARE
    o operations%ROWTYPE;
    c clusters%ROWTYPE;
BEGIN
    IF NEW.state IS NOT DISTINCT FROM OLD.state AND NEW.attempts IS NOT DISTINCT FROM OLD.attempts
       AND NEW.message IS NOT DISTINCT FROM OLD.message THEN
        RETURN NULL;
    END IF;
    SELECT * INTO o FROM operations WHERE id = NEW.operation_id;
    SELECT * INTO c FROM clusters WHERE id = o.cluster_id;
    PERFORM lok8s_emit(o.tenant_id, o.cluster_id, c.name, 'step', jsonb_build_object(
        'cluster', c.name, 'operation', o.id, 'kind', o.kind, 'step', NEW.name, 'state', NEW.state,
        'attempts', NEW.attempts, 'error', NEW.error, 'message', NEW.message,
        'startedAt', NEW.started_at, 'finishedAt', NEW.finished_at));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER operation_steps_events AFTER UPDATE ON operation_steps FOR EACH ROW EXECUTE FUNCTION lok8s_step_events();

-- +goose StatementBegin
CREATE FUNCTION lok8s_addon_events() RETURNS trigger AS $$
DECLARE
    c clusters%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.state IS NOT DISTINCT FROM OLD.state AND NEW.version IS NOT DISTINCT FROM OLD.version
       AND NEW.message IS NOT DISTINCT FROM OLD.message THEN
        RETURN NULL;
    END IF;
    SELECT * INTO c FROM clusters WHERE id = NEW.cluster_id;
    PERFORM lok8s_emit(NEW.tenant_id, NEW.cluster_id, c.name, 'addon', jsonb_build_object(
        'cluster', c.name, 'addon', NEW.name, 'state', NEW.state, 'chart', NEW.chart, 'version', NEW.version, 'message', NEW.message));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER cluster_addons_events AFTER INSERT OR UPDATE ON cluster_addons FOR EACH ROW EXECUTE FUNCTION lok8s_addon_events();

-- +goose Down
DROP TRIGGER cluster_addons_events ON cluster_addons;
DROP TRIGGER operation_steps_events ON operation_steps;
DROP TRIGGER operations_events ON operations;
DROP TRIGGER clusters_events ON clusters;
DROP FUNCTION lok8s_addon_events();
DROP FUNCTION lok8s_step_events();
DROP FUNCTION lok8s_operation_events();
DROP FUNCTION lok8s_cluster_events();
DROP FUNCTION lok8s_emit(uuid, uuid, text, text, jsonb);
DROP TABLE events;
