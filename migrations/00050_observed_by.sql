-- +goose Up
-- Observed status has one writer, the watcher of the replica holding the
-- management cluster's lease (docs/design.md): which replica recorded a
-- cluster's observed status, and when, so that a handover can be seen
-- (and tested) in the rows.
ALTER TABLE clusters
    ADD COLUMN observed_by text,
    ADD COLUMN observed_at timestamptz;

-- +goose Down
ALTER TABLE clusters
    DROP COLUMN observed_by,
    DROP COLUMN observed_at;
