package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/internal/tracing"
)

// Step is one named, idempotent step of an operation: running it again after
// a crash or a retry must be safe and converge to the same result.
type Step struct {
	Name string
	Run  func(ctx context.Context, r *Run) (Outcome, error)
}

// Outcome is how a step ended when it returned no error.
type Outcome struct {
	// Skipped marks the step skipped rather than done; Message says why.
	Skipped bool
	Message string
	// RecheckIn, when positive, means "not done yet": the job snoozes,
	// releasing its worker slot, and runs this step again after that long.
	RecheckIn time.Duration
}

// Run is what a step works on.
type Run struct {
	Operation store.Operation
	Cluster   store.Cluster
	// Spec is the cluster's stored spec, read once per job run (capi.NewSpec).
	Spec *capi.Spec
	// Provider is the provider chosen when the cluster was submitted
	// (clusters.provider), as the catalog has it; nil when the catalog
	// has none of that name. Steps use it rather than detecting again.
	Provider *capi.Provider
	Logger   *slog.Logger
	// StepStarted is when the running step first started (across snoozes
	// and retries), for deadlines.
	StepStarted time.Time
}

// permanentError marks a step error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix: the operation fails
// at once instead of being retried with backoff.
func Permanent(err error) error { return permanentError{err: err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool { return errors.As(err, new(permanentError)) }

// Pipeline holds the ordered steps of each operation kind.
type Pipeline struct {
	steps map[store.OperationKind][]Step
	// done is the phase a cluster reaches when an operation of a kind succeeds.
	done map[store.OperationKind]store.Phase
	// sections are the spec sections of the installed providers, for
	// reading stored specs (nil: the spec package's built-in ones).
	sections []string
	// catalog resolves a cluster's stored provider (nil: none resolved).
	catalog *capi.Catalog
}

// StepNames lists the names of kind's steps, in order.
func (p *Pipeline) StepNames(kind store.OperationKind) []string {
	names := make([]string, 0, len(p.steps[kind]))
	for _, s := range p.steps[kind] {
		names = append(names, s.Name)
	}
	return names
}

// operationRunner works an operation's steps in order, saving each step's
// progress so that a retried job resumes where the last attempt stopped.
type operationRunner struct {
	store    *store.Store
	pipeline *Pipeline
	logger   *slog.Logger
	observer Observer
	tracer   trace.Tracer
}

// work runs op's steps from the saved one on, as one span (a child of the
// trace the job was enqueued in) with a span per step.
func (r *operationRunner) work(ctx context.Context, job *rivertype.JobRow, opID uuid.UUID) (err error) {
	ctx, span := r.tracer.Start(jobTrace(ctx, job), "job "+job.Kind, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int64("river.job.id", job.ID), attribute.Int("river.job.attempt", job.Attempt),
			attribute.String("lok8s.operation", opID.String())))
	defer func() { endSpan(span, jobResult(err), err) }()
	logger := r.logger.With("job", job.ID, "attempt", job.Attempt, "operation", opID.String())
	op, err := r.store.BeginOperation(ctx, opID)
	if err != nil {
		return stopIfEnded(ctx, logger, err)
	}
	cluster, err := r.store.ClusterByID(ctx, op.ClusterID)
	if err != nil {
		return err
	}
	logger = logger.With("cluster", cluster.Name, "tenant", cluster.TenantID.String(), "kind", string(op.Kind))
	stored, err := readStoredSpec(cluster.Spec, r.pipeline.sections)
	if err != nil {
		err = fmt.Errorf("stored spec does not parse: %w", err)
		logger.ErrorContext(ctx, "operation failed", "error", err)
		if ferr := r.store.FailOperation(context.WithoutCancel(ctx), op.ID, err.Error()); ferr != nil {
			return errors.Join(err, ferr)
		}
		return river.JobCancel(err)
	}
	run := &Run{Operation: op, Cluster: cluster, Spec: stored, Logger: logger}
	if r.pipeline.catalog != nil {
		run.Provider = r.pipeline.catalog.Provider(cluster.Provider)
	}

	for _, step := range r.pipeline.steps[op.Kind] {
		if done(op, step.Name) {
			continue
		}
		started, err := r.store.StartStep(ctx, op.ID, step.Name)
		if err != nil {
			return stopIfEnded(ctx, logger, err)
		}
		run.StepStarted = started
		stepCtx, stepSpan := r.tracer.Start(ctx, "step "+step.Name, trace.WithAttributes(
			attribute.String("lok8s.provider", cluster.Provider), attribute.String("lok8s.kind", string(op.Kind)),
			attribute.String("lok8s.step", step.Name)))
		out, err := step.Run(stepCtx, run)
		if err != nil {
			failure, final := classify(step.Name, err, job.Attempt >= job.MaxAttempts)
			outcome := "retried"
			if final {
				outcome = "failed"
			}
			endSpan(stepSpan, outcome, err)
			r.observeStep(run, step.Name, outcome)
			if final {
				r.observeOperation(op, "failed")
			}
			return r.fail(stepCtx, logger, run, step.Name, err, failure, final)
		}
		if out.RecheckIn > 0 {
			endSpan(stepSpan, "rechecking", nil)
			logger.InfoContext(stepCtx, "step not done yet; rechecking later", "step", step.Name, "in", out.RecheckIn)
			return river.JobSnooze(out.RecheckIn)
		}
		state := store.StepSucceeded
		if out.Skipped {
			state = store.StepSkipped
		}
		if err := r.store.FinishStep(context.WithoutCancel(ctx), op.ID, step.Name, state, out.Message); err != nil {
			endSpan(stepSpan, "interrupted", err)
			return stopIfEnded(ctx, logger, err)
		}
		endSpan(stepSpan, string(state), nil)
		logger.InfoContext(stepCtx, "step finished", "step", step.Name, "state", string(state), "duration", time.Since(started).Round(time.Millisecond))
		r.observeStep(run, step.Name, string(state))
	}
	if err := r.store.CompleteOperation(context.WithoutCancel(ctx), op.ID, r.pipeline.done[op.Kind]); err != nil {
		return stopIfEnded(ctx, logger, err)
	}
	r.observeOperation(op, "succeeded")
	logger.InfoContext(ctx, "operation succeeded")
	return nil
}

// readStoredSpec parses a stored spec with the installed providers'
// sections and reads it for the catalog.
func readStoredSpec(data []byte, sections []string) (*capi.Spec, error) {
	parsed, err := spec.ParseSections(data, sections)
	if err != nil {
		return nil, err
	}
	return capi.NewSpec(parsed)
}

// endSpan ends a job's or step's span with its outcome, and err as the
// span's error unless the outcome is not a failure (a snooze is River's
// way to wait, not an error).
func endSpan(span trace.Span, outcome string, err error) {
	span.SetAttributes(attribute.String("lok8s.outcome", outcome))
	if err != nil && outcome != "snoozed" {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// jobResult names how a job run ended, as the metrics do (River's result).
func jobResult(err error) string {
	var snooze *river.JobSnoozeError
	var cancel *river.JobCancelError
	switch {
	case err == nil:
		return "completed"
	case errors.As(err, &snooze):
		return "snoozed"
	case errors.As(err, &cancel):
		return "cancelled"
	default:
		return "failed"
	}
}

// observeStep tells the observer that run's step ended with outcome.
func (r *operationRunner) observeStep(run *Run, step, outcome string) {
	if r.observer != nil {
		r.observer.Step(run.Cluster.Provider, string(run.Operation.Kind), step, outcome, time.Since(run.StepStarted))
	}
}

// observeOperation tells the observer that op ended with outcome.
func (r *operationRunner) observeOperation(op store.Operation, outcome string) {
	if r.observer != nil {
		r.observer.Operation(string(op.Kind), outcome)
	}
}

// fail records a step's error as classify judged it; a final one fails the
// operation and tells River not to retry, any other is returned for River
// to retry with backoff.
func (r *operationRunner) fail(ctx context.Context, logger *slog.Logger, run *Run, step string, err error, f store.Failure, final bool) error {
	logger.WarnContext(ctx, "step failed", "step", step, "final", final, "error", err)
	op := run.Operation
	f.TraceID = tracing.TraceID(ctx)
	if r.observer != nil {
		r.observer.StepFailure(run.Cluster.Provider, string(op.Kind), step, f.Code, final)
	}
	if serr := r.store.FailStep(context.WithoutCancel(ctx), op.ID, step, f, final); serr != nil {
		if errors.Is(serr, store.ErrOperationNotActive) {
			return stopIfEnded(ctx, logger, serr)
		}
		return errors.Join(err, serr)
	}
	if final {
		return river.JobCancel(err)
	}
	return err
}

// stopIfEnded ends the job as cancelled when its operation ended elsewhere
// (cancelled by a user or a delete), so River records what happened and
// never retries it; other errors are returned as they are.
func stopIfEnded(ctx context.Context, logger *slog.Logger, err error) error {
	if errors.Is(err, store.ErrOperationNotActive) {
		logger.InfoContext(ctx, "operation ended elsewhere; stopping the job", "reason", err)
		return river.JobCancel(err)
	}
	return err
}

func done(op store.Operation, name string) bool {
	for _, s := range op.Steps {
		if s.Name == name {
			return s.State == store.StepSucceeded || s.State == store.StepSkipped
		}
	}
	return false
}

type provisionWorker struct {
	river.WorkerDefaults[ProvisionArgs]
	runner *operationRunner
}

func (w *provisionWorker) Work(ctx context.Context, job *river.Job[ProvisionArgs]) error {
	return w.runner.work(ctx, job.JobRow, job.Args.OperationID)
}

type deprovisionWorker struct {
	river.WorkerDefaults[DeprovisionArgs]
	runner *operationRunner
}

func (w *deprovisionWorker) Work(ctx context.Context, job *river.Job[DeprovisionArgs]) error {
	return w.runner.work(ctx, job.JobRow, job.Args.OperationID)
}

type updateWorker struct {
	river.WorkerDefaults[UpdateArgs]
	runner *operationRunner
}

func (w *updateWorker) Work(ctx context.Context, job *river.Job[UpdateArgs]) error {
	return w.runner.work(ctx, job.JobRow, job.Args.OperationID)
}
