-- +goose Up
-- A failed step's error, kept for good, in a form people can act on: a
-- stable code, whether retrying as is may work, a one-line remediation, and
-- the raw reason (e.g. CAPI's) for experts.
ALTER TABLE operation_steps
    ADD COLUMN code        text NOT NULL DEFAULT '',
    ADD COLUMN retryable   boolean NOT NULL DEFAULT false,
    ADD COLUMN remediation text NOT NULL DEFAULT '',
    ADD COLUMN reason      text NOT NULL DEFAULT '';

-- Step events carry the failure record too.
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

-- +goose Down
ALTER TABLE operation_steps DROP COLUMN code, DROP COLUMN retryable, DROP COLUMN remediation, DROP COLUMN reason;
