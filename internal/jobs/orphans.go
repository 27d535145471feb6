package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"lok8s.dev/provisioner/internal/store"
)

// FailOrphansArgs are the arguments of the periodic job that fails
// operations whose River job was cancelled or deleted behind the
// pipeline's back.
type FailOrphansArgs struct{}

// Kind implements river.JobArgs.
func (FailOrphansArgs) Kind() string { return "fail_orphaned_operations" }

// Defaults of Config.OrphanCheckInterval and Config.OrphanGrace.
const (
	DefaultOrphanCheckInterval = time.Minute
	DefaultOrphanGrace         = time.Minute
)

// CodeJobCancelled is the failure of an operation whose job was cancelled
// or deleted outside the service.
const CodeJobCancelled = "JobCancelled"

type failOrphansWorker struct {
	river.WorkerDefaults[FailOrphansArgs]
	store  *store.Store
	grace  time.Duration
	logger *slog.Logger
}

func (w *failOrphansWorker) Work(ctx context.Context, _ *river.Job[FailOrphansArgs]) error {
	n, err := w.store.FailOrphanedOperations(ctx, w.grace, store.Failure{
		Message:     "the operation's job was cancelled or deleted outside lok8s (for example in River's UI): no worker will resume it",
		Code:        CodeJobCancelled,
		Retryable:   true,
		Remediation: "retry the operation (POST /v1/clusters/{name}/retry); its steps converge",
	})
	if err != nil {
		return fmt.Errorf("fail orphaned operations: %w", err)
	}
	if n > 0 {
		w.logger.WarnContext(ctx, "failed operations whose job was cancelled or deleted outside lok8s", "operations", n)
	}
	return nil
}

// addOrphanCheck registers the worker and its periodic job.
func addOrphanCheck(rc *river.Config, workers *river.Workers, cfg Config) error {
	w := &failOrphansWorker{store: cfg.Store, grace: cfg.OrphanGrace, logger: cfg.Logger}
	return addPeriodic(rc, workers, w, FailOrphansArgs{}, cfg.OrphanCheckInterval)
}
