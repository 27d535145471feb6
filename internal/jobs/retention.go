package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"lok8s.dev/provisioner/internal/store"
)

// PruneEventsArgs are the arguments of the periodic job that deletes events
// older than the retention, and the change log's rows every replica's feed
// has read (store.PruneChanges).
type PruneEventsArgs struct{}

// Kind implements river.JobArgs.
func (PruneEventsArgs) Kind() string { return "prune_events" }

// pruneEventsEvery is how often the prune job runs (River runs periodic
// jobs on the elected leader only, so once per interval in all).
const pruneEventsEvery = time.Hour

type pruneEventsWorker struct {
	river.WorkerDefaults[PruneEventsArgs]
	store     *store.Store
	retention time.Duration
	logger    *slog.Logger
}

func (w *pruneEventsWorker) Work(ctx context.Context, _ *river.Job[PruneEventsArgs]) error {
	before := time.Now().Add(-w.retention)
	n, err := w.store.PruneEvents(ctx, before)
	if err != nil {
		return fmt.Errorf("prune events older than %s: %w", w.retention, err)
	}
	if n > 0 {
		w.logger.InfoContext(ctx, "pruned events", "deleted", n, "older_than", before.UTC().Format(time.RFC3339))
	}
	if _, err := w.store.PruneChanges(ctx); err != nil {
		return fmt.Errorf("prune the change log: %w", err)
	}
	return nil
}

// addEventPruning registers the prune worker and its periodic job.
func addEventPruning(rc *river.Config, workers *river.Workers, cfg Config) error {
	w := &pruneEventsWorker{store: cfg.Store, retention: cfg.EventRetention, logger: cfg.Logger}
	return addPeriodic(rc, workers, w, PruneEventsArgs{}, pruneEventsEvery)
}

// addPeriodic registers w and a periodic job of args every interval, at
// most one per interval and one at start. River runs periodic jobs on the
// elected leader only, so once per interval in all.
func addPeriodic[T river.JobArgs](rc *river.Config, workers *river.Workers, w river.Worker[T], args T, every time.Duration) error {
	if err := river.AddWorkerSafely(workers, w); err != nil {
		return fmt.Errorf("jobs: add %s worker: %w", args.Kind(), err)
	}
	rc.PeriodicJobs = append(rc.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(every),
		func() (river.JobArgs, *river.InsertOpts) {
			return args, &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: every}}
		}, &river.PeriodicJobOpts{RunOnStart: true}))
	return nil
}
