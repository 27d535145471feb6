-- +goose Up
-- An update keeps the manifests it replaces, so its prune step can delete
-- what the new spec no longer renders (a removed pool), even on a retry.
ALTER TABLE operations ADD COLUMN previous_manifests text;

-- +goose Down
ALTER TABLE operations DROP COLUMN previous_manifests;
