-- +goose Up
-- Events are kept for a retention period (LOK8S_EVENT_RETENTION) and then
-- pruned by a periodic job. pruned_through is the highest event id pruned:
-- a stream resuming from an id below it has missed events for good, and is
-- told so (a stream.gap event) rather than left to believe it is current.
CREATE TABLE event_retention (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO event_retention DEFAULT VALUES;
CREATE INDEX events_at ON events (at);

-- +goose Down
DROP INDEX events_at;
DROP TABLE event_retention;
