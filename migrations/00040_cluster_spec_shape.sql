-- +goose Up
-- The shape the cluster's spec was submitted in (spec.Shape: "sections",
-- the seed's form, or "provider", the lok8s CLI's current form). The spec
-- column holds the normalised spec either way; GET renders it back in
-- this shape.
ALTER TABLE clusters ADD COLUMN spec_shape text NOT NULL DEFAULT 'sections';

-- +goose Down
ALTER TABLE clusters DROP COLUMN spec_shape;
