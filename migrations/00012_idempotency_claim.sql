-- +goose Up
-- An Idempotency-Key is claimed first in the transaction that creates the
-- cluster, before the cluster and operation it names exist (their ids are
-- chosen up front): a concurrent request with the same key then waits on
-- the key and replays the winner's result, instead of racing it on the
-- cluster's name (409) or deleting its live key (a second cluster).
ALTER TABLE idempotency_keys
    ALTER CONSTRAINT idempotency_keys_cluster_id_fkey DEFERRABLE INITIALLY DEFERRED,
    ALTER CONSTRAINT idempotency_keys_operation_id_fkey DEFERRABLE INITIALLY DEFERRED;

-- +goose Down
ALTER TABLE idempotency_keys
    ALTER CONSTRAINT idempotency_keys_cluster_id_fkey NOT DEFERRABLE,
    ALTER CONSTRAINT idempotency_keys_operation_id_fkey NOT DEFERRABLE;
