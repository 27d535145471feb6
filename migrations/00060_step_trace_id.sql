-- +goose Up
-- A failed step's failure record names the OpenTelemetry trace of the run
-- that failed ('' when tracing is off): the trace id its log lines carry.
ALTER TABLE operation_steps ADD COLUMN trace_id text NOT NULL DEFAULT '';

-- Step events carry it with the rest of the failure record (00007's
-- function, plus traceId).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_step_events() RETURNS trigger AS $$
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
        'code', NEW.code, 'retryable', NEW.retryable, 'remediation', NEW.remediation, 'reason', NEW.reason,
        'traceId', NEW.trace_id, 'startedAt', NEW.started_at, 'finishedAt', NEW.finished_at));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_step_events() RETURNS trigger AS $$
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
        'code', NEW.code, 'retryable', NEW.retryable, 'remediation', NEW.remediation, 'reason', NEW.reason,
        'startedAt', NEW.started_at, 'finishedAt', NEW.finished_at));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
ALTER TABLE operation_steps DROP COLUMN trace_id;
