// Package jobs runs the service's background work on River: the provision
// and deprovision workers that drive an operation's pipeline one saved step
// at a time, and the Queue that enqueues their jobs inside the store's
// transactions. Job arguments carry ids only, never a spec or a secret.
package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/internal/tracing"
)

// ProvisionArgs are the arguments of a provision job.
type ProvisionArgs struct {
	OperationID uuid.UUID `json:"operationId"`
}

// Kind implements river.JobArgs.
func (ProvisionArgs) Kind() string { return "provision" }

// DeprovisionArgs are the arguments of a deprovision job.
type DeprovisionArgs struct {
	OperationID uuid.UUID `json:"operationId"`
}

// Kind implements river.JobArgs.
func (DeprovisionArgs) Kind() string { return "deprovision" }

// UpdateArgs are the arguments of an update job.
type UpdateArgs struct {
	OperationID uuid.UUID `json:"operationId"`
}

// Kind implements river.JobArgs.
func (UpdateArgs) Kind() string { return "update" }

// Config configures the queue and its workers.
type Config struct {
	Store  *store.Store
	Logger *slog.Logger
	// Pipeline holds the steps workers run; see NewPipeline.
	Pipeline *Pipeline
	// Workers is how many jobs this process works at once; 0 makes the
	// client insert-only (an API-only replica).
	Workers int
	// MaxAttempts is how often a job is tried before its operation fails.
	MaxAttempts int
	// StepTimeout bounds one attempt of a job.
	StepTimeout time.Duration
	// RescueAfter is how long a job may stay running before River assumes
	// its worker died and hands it to another (which resumes at the saved step).
	RescueAfter time.Duration
	// EventRetention is how long events are kept; an hourly job deletes
	// older ones. 0 keeps them for ever.
	EventRetention time.Duration
	// OrphanCheckInterval is how often operations whose River job was
	// cancelled or deleted outside the service (River's UI) are looked
	// for, and OrphanGrace how long such a job must have ended before its
	// operation is failed (zero: the Default* values).
	OrphanCheckInterval, OrphanGrace time.Duration
	// Observer, when set, is told of every step, operation and job run
	// that ends (the service's metrics).
	Observer Observer
	// Tracer makes a span of each job run and each step, children of the
	// trace the job was enqueued in (nil: no spans).
	Tracer trace.TracerProvider
}

// Observer is told what the workers did.
type Observer interface {
	// Step: a step ended with outcome succeeded, skipped, failed (for
	// good) or retried, took after it first started.
	Step(provider, kind, step, outcome string, took time.Duration)
	// StepFailure: a step failed with the failure record's code; final
	// says the operation failed with it (no retry follows).
	StepFailure(provider, kind, step, code string, final bool)
	// Operation: an operation ended with outcome succeeded or failed.
	Operation(kind, outcome string)
	// Job: one run of a River job ended with result completed, snoozed,
	// failed or cancelled, having waited queueWait to start.
	Job(kind, result string, queueWait, run time.Duration)
}

// Defaults of the Config fields of the same names; RescueAfter defaults to
// StepTimeout + DefaultRescueMargin.
const (
	DefaultMaxAttempts  = 12
	DefaultStepTimeout  = 15 * time.Minute
	DefaultRescueMargin = 5 * time.Minute
)

// WithDefaults returns c with unset fields defaulted.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.StepTimeout = cmp.Or(c.StepTimeout, DefaultStepTimeout)
	c.RescueAfter = cmp.Or(c.RescueAfter, c.StepTimeout+DefaultRescueMargin)
	c.OrphanCheckInterval = cmp.Or(c.OrphanCheckInterval, DefaultOrphanCheckInterval)
	c.OrphanGrace = cmp.Or(c.OrphanGrace, DefaultOrphanGrace)
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
	return c
}

// Validate reports every tunable of c (after WithDefaults) out of range,
// naming its field; NewQueue also requires Store, and Pipeline with workers.
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 0 {
		errs = append(errs, errors.New("jobs: Config.Workers must not be negative"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("jobs: Config.MaxAttempts must be at least 1"))
	}
	if c.StepTimeout <= 0 {
		errs = append(errs, errors.New("jobs: Config.StepTimeout must be positive"))
	}
	if c.RescueAfter <= c.StepTimeout {
		errs = append(errs, fmt.Errorf("jobs: Config.RescueAfter (%v) must be longer than Config.StepTimeout (%v): a job still running would be handed to another worker", c.RescueAfter, c.StepTimeout))
	}
	if c.EventRetention < 0 {
		errs = append(errs, errors.New("jobs: Config.EventRetention must not be negative"))
	}
	if c.OrphanCheckInterval < time.Second {
		errs = append(errs, errors.New("jobs: Config.OrphanCheckInterval must be at least a second (River's periodic jobs)"))
	}
	if c.OrphanGrace <= 0 {
		errs = append(errs, errors.New("jobs: Config.OrphanGrace must be positive"))
	}
	return errors.Join(errs...)
}

// validate is Validate and the dependencies NewQueue needs.
func (c Config) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("jobs: Config.Store is required")
	case c.Workers > 0 && c.Pipeline == nil:
		return errors.New("jobs: Config.Pipeline is required when Workers > 0")
	}
	return c.Validate()
}

// Queue enqueues operations' jobs and, with workers, runs them.
type Queue struct {
	client   *river.Client[pgx.Tx]
	pool     *pgxpool.Pool
	logger   *slog.Logger
	observer Observer
	// insertOnly is set without workers (an API-only replica): River
	// refuses to start a client without queues, and there is nothing to
	// start or stop.
	insertOnly bool

	// Wakes of jobs in the middle of a check (Wake): one goroutine per
	// job, ended by Stop; and the goroutine telling the observer of runs.
	wakeMu   sync.Mutex
	waking   map[int64]bool
	wakes    sync.WaitGroup
	wakeCtx  context.Context
	stopWake context.CancelFunc
}

// NewQueue builds a River client on pool with the provision and deprovision workers.
func NewQueue(pool *pgxpool.Pool, cfg Config) (*Queue, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc := &river.Config{
		Logger:               cfg.Logger,
		MaxAttempts:          cfg.MaxAttempts,
		JobTimeout:           cfg.StepTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
	}
	if cfg.Workers > 0 {
		workers := river.NewWorkers()
		runner := &operationRunner{store: cfg.Store, pipeline: cfg.Pipeline, logger: cfg.Logger, observer: cfg.Observer,
			tracer: cfg.Tracer.Tracer(tracerName)}
		if err := river.AddWorkerSafely(workers, &provisionWorker{runner: runner}); err != nil {
			return nil, fmt.Errorf("jobs: add provision worker: %w", err)
		}
		if err := river.AddWorkerSafely(workers, &deprovisionWorker{runner: runner}); err != nil {
			return nil, fmt.Errorf("jobs: add deprovision worker: %w", err)
		}
		if err := river.AddWorkerSafely(workers, &updateWorker{runner: runner}); err != nil {
			return nil, fmt.Errorf("jobs: add update worker: %w", err)
		}
		if cfg.EventRetention > 0 {
			if err := addEventPruning(rc, workers, cfg); err != nil {
				return nil, err
			}
		}
		if err := addOrphanCheck(rc, workers, cfg); err != nil {
			return nil, err
		}
		rc.Workers = workers
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}}
	}
	client, err := river.NewClient(riverpgxv5.New(pool), rc)
	if err != nil {
		return nil, fmt.Errorf("jobs: new river client: %w", err)
	}
	wakeCtx, stopWake := context.WithCancel(context.Background())
	return &Queue{client: client, pool: pool, logger: cfg.Logger, insertOnly: cfg.Workers == 0, observer: cfg.Observer,
		waking: map[int64]bool{}, wakeCtx: wakeCtx, stopWake: stopWake}, nil
}

// Client is the River client, for River's own UI.
func (q *Queue) Client() *river.Client[pgx.Tx] { return q.client }

// Wake runs job id now if it is waiting for its next check (snoozed):
// a job that is queued or done is left alone. A job in the middle of a
// check may have read the state before the change that wakes it and then
// snooze for a whole interval: for a running job, Wake returns at once and
// a goroutine of the queue's watches it (at most wakeWaitForCheck, one per
// job) and wakes it once it is snoozed, so no change is lost.
func (q *Queue) Wake(ctx context.Context, id int64) error {
	job, err := q.client.JobGet(ctx, id)
	if err != nil {
		return fmt.Errorf("wake job %d: %w", id, err)
	}
	switch job.State {
	case rivertype.JobStateScheduled:
		return q.retry(ctx, id)
	case rivertype.JobStateRunning:
		q.wakeMu.Lock()
		defer q.wakeMu.Unlock()
		if q.waking[id] {
			return nil
		}
		q.waking[id] = true
		q.wakes.Go(func() {
			defer func() { q.wakeMu.Lock(); delete(q.waking, id); q.wakeMu.Unlock() }()
			q.wakeAfterCheck(id)
		})
	}
	return nil
}

// wakeAfterCheck waits for job id's running check to end and wakes the job
// if it snoozed.
func (q *Queue) wakeAfterCheck(id int64) {
	ctx := q.wakeCtx
	deadline := time.Now().Add(wakeWaitForCheck)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wakePoll):
		}
		job, err := q.client.JobGet(ctx, id)
		if err != nil {
			return
		}
		switch job.State {
		case rivertype.JobStateRunning:
			continue
		case rivertype.JobStateScheduled:
			if err := q.retry(ctx, id); err != nil && ctx.Err() == nil {
				q.logger.Warn("could not wake a job after its check", "job", id, "error", err)
			}
		}
		return
	}
}

// retry runs job id now if it is still snoozed. River's JobRetry alone
// would also make available again a job cancelled (River's UI), discarded
// or completed since Wake read its state, undoing the cancel with the
// operation left running; so the state is read again under the job row's
// lock, in the transaction that retries it (a cancel waits for it, or it
// for the cancel, and then reads the cancelled state).
func (q *Queue) retry(ctx context.Context, id int64) error {
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		var state rivertype.JobState
		err := tx.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1 FOR UPDATE`, id).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && state != rivertype.JobStateScheduled) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = q.client.JobRetryTx(ctx, tx, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("wake job %d: %w", id, err)
	}
	return nil
}

// How long Wake waits for a running check to end, and how often it looks.
const (
	wakeWaitForCheck = 10 * time.Second
	wakePoll         = 50 * time.Millisecond
)

// Start starts working jobs (no-op for an insert-only queue).
func (q *Queue) Start(ctx context.Context) error {
	if q.insertOnly {
		return nil
	}
	if q.observer != nil {
		runs, cancel := q.client.Subscribe(river.EventKindJobCompleted, river.EventKindJobSnoozed,
			river.EventKindJobFailed, river.EventKindJobCancelled)
		q.wakes.Go(func() {
			defer cancel()
			q.observeRuns(runs)
		})
	}
	if err := q.client.Start(ctx); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	return nil
}

// observeRuns tells the observer of each job run River reports, until
// the client stops and closes runs or the queue stops.
func (q *Queue) observeRuns(runs <-chan *river.Event) {
	for {
		select {
		case <-q.wakeCtx.Done():
			return
		case ev, ok := <-runs:
			if !ok {
				return
			}
			if ev.Job == nil || ev.JobStats == nil {
				continue
			}
			result := strings.TrimPrefix(string(ev.Kind), "job_")
			q.observer.Job(ev.Job.Kind, result, ev.JobStats.QueueWaitDuration, ev.JobStats.RunDuration)
		}
	}
}

// Stop ends the pending wakes, stops fetching new jobs and waits for
// running ones to finish or ctx to end (an insert-only queue has no jobs
// of its own); jobs cut short are retried later and resume at their saved
// step.
func (q *Queue) Stop(ctx context.Context) error {
	q.stopWake()
	q.wakes.Wait()
	if q.insertOnly {
		return nil
	}
	if err := q.client.Stop(ctx); err != nil {
		return fmt.Errorf("jobs: stop: %w", err)
	}
	return nil
}

// Enqueue inserts the job for op inside tx; it is a store.EnqueueFunc.
func (q *Queue) Enqueue(ctx context.Context, tx store.Tx, op store.Operation) (int64, error) {
	var args river.JobArgs
	switch op.Kind {
	case store.OpProvision:
		args = ProvisionArgs{OperationID: op.ID}
	case store.OpDeprovision:
		args = DeprovisionArgs{OperationID: op.ID}
	case store.OpUpdate:
		args = UpdateArgs{OperationID: op.ID}
	default:
		return 0, fmt.Errorf("jobs: no worker for %s operations", op.Kind)
	}
	opts, err := traceMetadata(ctx)
	if err != nil {
		return 0, err
	}
	res, err := q.client.InsertTx(ctx, tx.Driver(), args, opts)
	if err != nil {
		return 0, fmt.Errorf("jobs: insert %s job: %w", args.Kind(), err)
	}
	return res.Job.ID, nil
}

// traceMetadata is the insert options that carry ctx's trace into the
// job: its W3C traceparent (and tracestate) in the job's metadata, never
// anything else of the request. Nil outside a trace.
func traceMetadata(ctx context.Context) (*river.InsertOpts, error) {
	carrier := tracing.Inject(ctx)
	if carrier == nil {
		return nil, nil
	}
	meta, err := json.Marshal(carrier)
	if err != nil {
		return nil, fmt.Errorf("jobs: trace metadata: %w", err)
	}
	return &river.InsertOpts{Metadata: meta}, nil
}

// jobTrace returns ctx with the remote span context that job's metadata
// carries (traceMetadata), if any.
func jobTrace(ctx context.Context, job *rivertype.JobRow) context.Context {
	var meta map[string]any
	if len(job.Metadata) == 0 || json.Unmarshal(job.Metadata, &meta) != nil {
		return ctx
	}
	carrier := map[string]string{}
	for _, k := range []string{"traceparent", "tracestate"} {
		if v, ok := meta[k].(string); ok {
			carrier[k] = v
		}
	}
	return tracing.Extract(ctx, carrier)
}

// tracerName names the spans of job runs and steps.
const tracerName = "lok8s.dev/provisioner/internal/jobs"

// CancelJob cancels job jobID inside tx; it is a store.CancelJobFunc. A
// running job's context is cancelled and its worker stops at the next step.
func (q *Queue) CancelJob(ctx context.Context, tx store.Tx, jobID int64) error {
	if _, err := q.client.JobCancelTx(ctx, tx.Driver(), jobID); err != nil && !errors.Is(err, river.ErrNotFound) {
		return fmt.Errorf("jobs: cancel job %d: %w", jobID, err)
	}
	return nil
}

var (
	_ store.EnqueueFunc   = (*Queue)(nil).Enqueue
	_ store.CancelJobFunc = (*Queue)(nil).CancelJob
)
