-- +goose Up
-- The provisioning pipeline installs the CNI and the cloud-controller-
-- manager once the control plane is initialized, and only then waits for
-- Ready nodes (without the CCM no Node gets a providerID, no Machine a
-- nodeRef, and the control plane never becomes Available). Operations still
-- queued or running when the service is upgraded get the new steps, so a
-- worker of the new release resumes them instead of finding no row for a
-- step it runs: the old wait becomes control-plane-initialized, bootstrap
-- becomes addons, and preflight, cni-and-ccm and nodes-ready are added.
-- Finished operations keep their steps as they ran.
CREATE TEMPORARY TABLE upgraded_provisions ON COMMIT DROP AS
    SELECT o.id FROM operations o
    WHERE o.kind = 'provision' AND o.state IN ('queued', 'running')
      AND EXISTS (SELECT 1 FROM operation_steps s WHERE s.operation_id = o.id AND s.name = 'wait');

-- Out of the way of the new ordinals first (they are the primary key).
UPDATE operation_steps SET ordinal = ordinal + 100
WHERE operation_id IN (SELECT id FROM upgraded_provisions);

UPDATE operation_steps SET
    name = CASE name WHEN 'wait' THEN 'control-plane-initialized' WHEN 'bootstrap' THEN 'addons' ELSE name END,
    ordinal = CASE name
        WHEN 'detect' THEN 0 WHEN 'render' THEN 1 WHEN 'credentials' THEN 3 WHEN 'apply' THEN 4
        WHEN 'wait' THEN 5 WHEN 'kubeconfig' THEN 6 WHEN 'bootstrap' THEN 9 WHEN 'gitops' THEN 10
        ELSE ordinal END
WHERE operation_id IN (SELECT id FROM upgraded_provisions);

-- preflight comes before credentials: once those have run, it is skipped.
INSERT INTO operation_steps (operation_id, ordinal, name, state, message)
SELECT u.id, 2, 'preflight',
       CASE WHEN c.state = 'pending' THEN 'pending' ELSE 'skipped' END,
       CASE WHEN c.state = 'pending' THEN '' ELSE 'added by an upgrade after the credentials step had run' END
FROM upgraded_provisions u JOIN operation_steps c ON c.operation_id = u.id AND c.name = 'credentials';

-- The CNI and CCM: already installed when the old bootstrap step succeeded.
INSERT INTO operation_steps (operation_id, ordinal, name, state, message)
SELECT u.id, 7, 'cni-and-ccm',
       CASE WHEN a.state IN ('succeeded', 'skipped') THEN 'skipped' ELSE 'pending' END,
       CASE WHEN a.state IN ('succeeded', 'skipped') THEN 'installed by the addons step before an upgrade' ELSE '' END
FROM upgraded_provisions u JOIN operation_steps a ON a.operation_id = u.id AND a.name = 'addons';

INSERT INTO operation_steps (operation_id, ordinal, name, state)
SELECT id, 8, 'nodes-ready', 'pending' FROM upgraded_provisions;

-- Update operations: bootstrap is now addons.
UPDATE operation_steps SET name = 'addons'
WHERE name = 'bootstrap' AND operation_id IN (
    SELECT id FROM operations WHERE kind = 'update' AND state IN ('queued', 'running'));

UPDATE operations SET step = CASE step WHEN 'wait' THEN 'control-plane-initialized' WHEN 'bootstrap' THEN 'addons' ELSE step END
WHERE state IN ('queued', 'running') AND step IN ('wait', 'bootstrap');

-- cluster.observed events carry CAPI's initialization too, so a stream
-- shows the control plane initialized before it is Available.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION lok8s_cluster_events() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.phase IS DISTINCT FROM OLD.phase OR NEW.message IS DISTINCT FROM OLD.message
       OR NEW.generation IS DISTINCT FROM OLD.generation THEN
        PERFORM lok8s_emit(NEW.tenant_id, NEW.id, NEW.name, 'cluster.phase', jsonb_build_object(
            'cluster', NEW.name, 'phase', NEW.phase, 'message', NEW.message, 'generation', NEW.generation));
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.observed IS DISTINCT FROM OLD.observed THEN
        PERFORM lok8s_emit(NEW.tenant_id, NEW.id, NEW.name, 'cluster.observed', jsonb_build_object(
            'cluster', NEW.name, 'capiPhase', NEW.observed->'phase', 'conditions', NEW.observed->'conditions',
            'initialization', NEW.observed->'initialization',
            'controlPlane', NEW.observed->'controlPlane', 'workers', NEW.observed->'workers', 'pools', NEW.observed->'pools'));
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
-- The new steps stay: a downgraded worker fails such an operation, which a
-- retry (with the old release's steps) starts again.
SELECT 1;
