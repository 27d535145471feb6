package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/rivertype"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

const seedJSON = `{"apiVersion":"cluster.lok8s.dev/v1beta1","kind":"Capi","metadata":{"name":"prod"},
 "spec":{"kubernetes":{"version":"v1.31.10"},"cluster":{"domain":"prod.example.com","namespace":"default"},
 "credentials":{"secretName":"prod-credentials"},
 "hcloud":{"region":"fsn1","sshKeyName":"k","controlPlane":{"replicas":3,"type":"cax21"},"workers":{"general":{"replicas":3,"type":"cax21"}}}}}`

type bundle struct {
	pool    *pgxpool.Pool
	store   *store.Store
	actor   store.Actor
	keyring *seal.Keyring
	catalog *capi.Catalog
}

func setup(t *testing.T) bundle {
	t.Helper()
	pool := dbtest.NewPool(t)
	st := store.New(pool, slog.New(slog.DiscardHandler))
	admin, err := st.EnsureAdminToken(context.Background(), "acme", []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := seal.ParseKey(seal.NewKey())
	keyring, _ := seal.NewKeyring(key)
	templates, err := fs.Sub(provisioner.Templates, "templates")
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := capi.LoadCatalog(templates)
	if err != nil {
		t.Fatal(err)
	}
	return bundle{pool: pool, store: st, actor: store.Actor{TenantID: admin.TenantID, TokenID: admin.TokenID}, keyring: keyring, catalog: catalog}
}

// pipeline is the real pipeline with no management cluster configured.
func (b bundle) pipeline() *Pipeline {
	return NewPipeline(Deps{Store: b.store, Keyring: b.keyring, Catalog: b.catalog, Clusters: &mgmt.Registry{}})
}

// startQueue runs a queue with workers on p until the test ends.
func (b bundle) startQueue(t *testing.T, p *Pipeline) *Queue {
	t.Helper()
	return startQueue(t, b.newQueue(t, Config{Pipeline: p, Workers: 2, MaxAttempts: 3}))
}

// newQueue makes a queue on the bundle's store, with the test's logger.
func (b bundle) newQueue(t *testing.T, cfg Config) *Queue {
	t.Helper()
	cfg.Store, cfg.Logger = b.store, slog.New(slog.NewTextHandler(testWriter{t}, nil))
	q, err := NewQueue(b.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// startQueue starts q's workers until the test ends.
func startQueue(t *testing.T, q *Queue) *Queue {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = q.Stop(stopCtx)
		cancel()
	})
	return q
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// provisionSeed runs the real pipeline (no management cluster configured)
// on the seed cluster "prod" until its provisioning ends; it returns the
// pipeline and queue, for further operations, and the ended operation.
func (b bundle) provisionSeed(t *testing.T) (*Pipeline, *Queue, store.Operation) {
	t.Helper()
	p := b.pipeline()
	q := b.startQueue(t, p)
	return p, q, b.waitFor(t, b.submit(t, q, p, "prod", seedJSON).ID)
}

func (b bundle) submit(t *testing.T, q *Queue, p *Pipeline, name, specJSON string) store.Operation {
	t.Helper()
	return b.submitAs(t, q, p, "hetzner", name, specJSON)
}

// submitAs submits a cluster whose provider was decided (at POST) to be provider.
func (b bundle) submitAs(t *testing.T, q *Queue, p *Pipeline, provider, name, specJSON string) store.Operation {
	t.Helper()
	_, op, _, err := b.store.CreateCluster(context.Background(), b.actor, store.NewCluster{
		Name: name, Provider: provider, Namespace: "lok8s-acme", Spec: json.RawMessage(specJSON), Steps: p.StepNames(store.OpProvision),
	}, q.Enqueue)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// waitFor polls the operation until it is no longer active.
func (b bundle) waitFor(t *testing.T, id uuid.UUID) store.Operation {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		op, err := b.store.OperationByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !op.Active() {
			return op
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("operation %s still active after 30s", id)
	return store.Operation{}
}

func TestProvisionFailsClearlyWithoutManagementCluster(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sealed, err := b.keyring.Seal([]byte(`{"hcloudToken":"tok"}`), store.CredentialAAD(b.actor.TenantID, "prod-credentials"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.PutCredential(context.Background(), b.actor, store.NewCredential{
		Name: "prod-credentials", Provider: "hetzner", KeysSet: []string{"hcloudToken"}, Fingerprint: "fp", Sealed: sealed,
	}); err != nil {
		t.Fatal(err)
	}
	_, _, op := b.provisionSeed(t)

	if op.State != store.OpFailed {
		t.Fatalf("state %s, want failed", op.State)
	}
	if op.Steps[0].Name != StepDetect || op.Steps[0].State != store.StepSucceeded || op.Steps[0].Message != "provider hetzner" {
		t.Fatalf("detect: %+v", op.Steps[0])
	}
	if op.Steps[1].Name != StepRender || op.Steps[1].State != store.StepSucceeded {
		t.Fatalf("render: %+v", op.Steps[1])
	}
	// The first step that needs the management cluster says it is missing.
	cred := op.Steps[2]
	if cred.Name != StepPreflight || cred.State != store.StepFailed || cred.Attempts != 1 || !strings.Contains(cred.Error, "LOK8S_MGMT_KUBECONFIG is not set") ||
		cred.Failure.Code != CodeManagementNotConfigured || cred.Failure.Retryable {
		t.Fatalf("preflight step: %+v (a permanent error must not be retried)", cred)
	}
	for _, s := range op.Steps[3:] {
		if s.State != store.StepPending {
			t.Fatalf("step %s ran after a failure: %s", s.Name, s.State)
		}
	}
	c, err := b.store.ClusterByID(context.Background(), op.ClusterID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Phase != store.PhaseFailed || c.Message != "step preflight: "+cred.Error {
		t.Fatalf("cluster: %s %q", c.Phase, c.Message)
	}
}

func TestCredentialsStepNeedsTheCredential(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, op := b.provisionSeed(t)
	// preflight checks the credential before anything is applied.
	if pf := op.Steps[2]; op.State != store.OpFailed || pf.Name != StepPreflight || !strings.Contains(pf.Error, `credential "prod-credentials" no longer exists`) ||
		pf.Failure.Code != CodeCredentialMissing || !strings.Contains(pf.Failure.Remediation, "PUT /v1/credentials/prod-credentials") {
		t.Fatalf("preflight step: %+v", pf)
	}
}

func TestDetectRejectsSpecWithoutProvider(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.pipeline()
	q := b.startQueue(t, p)
	// A stored spec is validated at POST; this one bypasses that to show
	// that detect still names the fields instead of guessing.
	both := `{"apiVersion":"cluster.lok8s.dev/v1beta1","kind":"Capi","metadata":{"name":"x"},"spec":{"hcloud":{},"aws":{}}}`
	op := b.waitFor(t, b.submit(t, q, p, "x", both).ID)
	if op.State != store.OpFailed || op.Steps[0].State != store.StepFailed ||
		!strings.Contains(op.Steps[0].Error, "spec.hcloud") || !strings.Contains(op.Steps[0].Error, "spec.aws") {
		t.Fatalf("detect: %+v", op.Steps[0])
	}
}

// TestStepsUseTheStoredProvider: the steps work with the provider decided
// when the cluster was submitted (clusters.provider), not one detected
// again from the spec. This cluster's spec has Hetzner's section but its
// stored provider is aws: render renders AWS's templates (and finds the
// spec lacks what they need).
func TestStepsUseTheStoredProvider(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := &steps{Deps: Deps{Store: b.store, Keyring: b.keyring, Catalog: b.catalog, Clusters: &mgmt.Registry{}}.WithDefaults()}
	p := testPipeline(Step{Name: StepRender, Run: s.render})
	p.catalog = b.catalog
	q := b.startQueue(t, p)
	op := b.waitFor(t, b.submitAs(t, q, p, "aws", "prod", seedJSON).ID)
	render := op.Steps[0]
	manifests, err := b.store.Manifests(context.Background(), op.ClusterID)
	if err != nil {
		t.Fatal(err)
	}
	// AWS's templates need the aws section's values, which this spec lacks.
	if render.State != store.StepFailed || !strings.Contains(render.Error, "capi: provider aws: value for variables [AWS_REGION") || manifests != "" {
		t.Fatalf("render used the detected provider, not the stored aws: step %+v\n%.400s", render, manifests)
	}
}

// TestDetectChecksTheStoredProvider: provisioning stops at detect when the
// stored spec no longer selects the provider the cluster was submitted for.
func TestDetectChecksTheStoredProvider(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.pipeline()
	q := b.startQueue(t, p)
	op := b.waitFor(t, b.submitAs(t, q, p, "aws", "prod", seedJSON).ID)
	if d := op.Steps[0]; op.State != store.OpFailed || d.State != store.StepFailed || d.Attempts != 1 ||
		d.Error != "the spec selects provider hetzner, but the cluster was submitted for provider aws" {
		t.Fatalf("detect: %+v", d)
	}
}

// testPipeline builds a pipeline from steps, for the runner's own tests.
func testPipeline(steps ...Step) *Pipeline {
	return &Pipeline{
		steps: map[store.OperationKind][]Step{store.OpProvision: steps},
		done:  map[store.OperationKind]store.Phase{store.OpProvision: store.PhaseProvisioned, store.OpDeprovision: store.PhaseDeleted},
	}
}

func TestRetryableErrorIsRetriedAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var firstRuns, flakyRuns atomic.Int32
	p := testPipeline(
		Step{Name: "first", Run: func(context.Context, *Run) (Outcome, error) { firstRuns.Add(1); return Outcome{}, nil }},
		Step{Name: "flaky", Run: func(context.Context, *Run) (Outcome, error) {
			if flakyRuns.Add(1) == 1 {
				return Outcome{}, errors.New("management cluster unreachable")
			}
			return Outcome{Message: "ok on retry"}, nil
		}},
		Step{Name: "skipped", Run: func(context.Context, *Run) (Outcome, error) {
			return Outcome{Skipped: true, Message: "nothing to do"}, nil
		}},
	)
	q := b.startQueue(t, p)
	// River retries after its backoff (about a second for attempt 1).
	op := b.waitFor(t, b.submit(t, q, p, "prod", seedJSON).ID)

	if op.State != store.OpSucceeded {
		t.Fatalf("state %s: %+v", op.State, op)
	}
	if firstRuns.Load() != 1 {
		t.Fatalf("the finished step ran %d times; a retry must resume after it", firstRuns.Load())
	}
	flaky := op.Steps[1]
	if flaky.Attempts != 2 || flaky.State != store.StepSucceeded || flaky.Error != "" || flaky.Message != "ok on retry" {
		t.Fatalf("flaky step: %+v", flaky)
	}
	if op.Steps[2].State != store.StepSkipped || op.Steps[2].Message != "nothing to do" {
		t.Fatalf("skipped step: %+v", op.Steps[2])
	}
	c, _ := b.store.ClusterByID(context.Background(), op.ClusterID)
	if c.Phase != store.PhaseProvisioned || c.Message != "" {
		t.Fatalf("cluster %s %q", c.Phase, c.Message)
	}
}

func TestRecheckSnoozesAndKeepsStepStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var checks atomic.Int32
	p := testPipeline(Step{Name: "wait", Run: func(context.Context, *Run) (Outcome, error) {
		if checks.Add(1) < 3 {
			return Outcome{RecheckIn: 100 * time.Millisecond}, nil
		}
		return Outcome{}, nil
	}})
	q := b.startQueue(t, p)
	op := b.waitFor(t, b.submit(t, q, p, "prod", seedJSON).ID)
	if op.State != store.OpSucceeded || checks.Load() != 3 {
		t.Fatalf("state %s after %d checks", op.State, checks.Load())
	}
	var attempt, errorsCount int
	if err := b.pool.QueryRow(context.Background(),
		`SELECT attempt, coalesce(array_length(errors, 1), 0) FROM river_job WHERE id = $1`, *op.RiverJobID).Scan(&attempt, &errorsCount); err != nil {
		t.Fatal(err)
	}
	if errorsCount != 0 {
		t.Fatalf("snoozes were recorded as %d errors", errorsCount)
	}
	// The step kept its first start time across the snoozes.
	if op.Steps[0].Attempts != 3 || op.Steps[0].StartedAt == nil || op.Steps[0].FinishedAt == nil ||
		op.Steps[0].FinishedAt.Sub(*op.Steps[0].StartedAt) < 200*time.Millisecond {
		t.Fatalf("wait step: %+v", op.Steps[0])
	}
}

func TestAttemptsExhaustedFailsOperation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := testPipeline(Step{Name: "always", Run: func(context.Context, *Run) (Outcome, error) {
		return Outcome{}, errors.New("still down")
	}})
	q, err := NewQueue(b.pool, Config{Store: b.store, Pipeline: p, Workers: 1, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Stop(context.Background()) }()
	op := b.waitFor(t, b.submit(t, q, p, "prod", seedJSON).ID)
	if op.State != store.OpFailed || op.Steps[0].Error != "still down" {
		t.Fatalf("after the last attempt: %+v", op)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Store"},
		{Config{Store: &store.Store{}, Workers: 1}, "Config.Pipeline"},
		{Config{Store: &store.Store{}, Workers: -1}, "Config.Workers"},
		{Config{Store: &store.Store{}, StepTimeout: time.Hour, RescueAfter: time.Minute}, "Config.RescueAfter"},
		{Config{Store: &store.Store{}, MaxAttempts: -1}, "Config.MaxAttempts"},
	} {
		if _, err := NewQueue(nil, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewQueue(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

// The stored spec must parse: it is what detect works from.
func TestSeedSpecParses(t *testing.T) {
	t.Parallel()
	if _, err := spec.Parse([]byte(seedJSON)); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteWithoutManagementCluster deletes a cluster that failed for want
// of a management cluster: nothing was created anywhere, so the
// deprovisioning skips its steps and the cluster ends Deleted.
func TestDeleteWithoutManagementCluster(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, q, prov := b.provisionSeed(t)
	if prov.State != store.OpFailed {
		t.Fatalf("provisioning: %s", prov.State)
	}
	_, del, err := b.store.StartDeprovision(context.Background(), b.actor, "prod", p.StepNames(store.OpDeprovision), q.Enqueue, q.CancelJob)
	if err != nil {
		t.Fatal(err)
	}
	done := b.waitFor(t, del.ID)
	if done.State != store.OpSucceeded {
		t.Fatalf("deprovision: %+v", done)
	}
	for _, s := range done.Steps {
		if s.State != store.StepSkipped || !strings.Contains(s.Message, "nothing was ever created") {
			t.Fatalf("step %s: %s %q", s.Name, s.State, s.Message)
		}
	}
	c, _ := b.store.ClusterByID(context.Background(), done.ClusterID)
	if c.Phase != store.PhaseDeleted {
		t.Fatalf("phase %s", c.Phase)
	}
}

// TestPruneEventsJob: with a retention set, the periodic job (run at start)
// deletes the events older than it and keeps the rest, and prunes the
// change log.
func TestPruneEventsJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.pipeline()
	q := b.newQueue(t, Config{Pipeline: p, Workers: 1, MaxAttempts: 1, EventRetention: time.Hour})
	b.submit(t, q, p, "old", `{"metadata":{"name":"old"}}`)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `UPDATE events SET at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	b.submit(t, q, p, "new", `{"metadata":{"name":"new"}}`)
	count := func(where string) int {
		var n int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE `+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const stale = `at < now() - interval '1 hour'`
	if count(stale) == 0 || count(`cluster = 'new'`) == 0 {
		t.Fatal("no events to prune")
	}
	startQueue(t, q)
	completed := func() int {
		var n int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'prune_events' AND state = 'completed'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for completed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no prune_events job completed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(stale); n > 0 {
		t.Fatalf("%d events older than the retention are still there", n)
	}
	if count(`cluster = 'new'`) == 0 {
		t.Fatal("the prune job deleted events inside the retention")
	}
	// It prunes the change log too: its first run notes the bound the
	// next prunes below.
	var noted bool
	if err := b.pool.QueryRow(ctx, `SELECT next_below > '0' FROM change_retention`).Scan(&noted); err != nil || !noted {
		t.Fatalf("the change log's next bound was not noted (%v)", err)
	}
}

// TestWakeDuringACheckIsNotLost: a change arrives (Wake) while the wait
// step is in the middle of a check that read the state before it; the
// check then snoozes for its whole interval (ten minutes here), and the
// wake must still run the job again at once.
func TestWakeDuringACheckIsNotLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var checks atomic.Int32
	p := testPipeline(Step{Name: "wait", Run: func(context.Context, *Run) (Outcome, error) {
		if checks.Add(1) == 1 {
			close(entered)
			<-release // the change happens now, after this check read the state
			return Outcome{RecheckIn: 10 * time.Minute}, nil
		}
		return Outcome{}, nil
	}})
	q := b.startQueue(t, p)
	op := b.submit(t, q, p, "prod", seedJSON)
	<-entered
	if err := q.Wake(context.Background(), *op.RiverJobID); err != nil {
		t.Fatal(err)
	}
	close(release)
	done := b.waitFor(t, op.ID)
	if done.State != store.OpSucceeded || checks.Load() != 2 {
		t.Fatalf("state %s after %d checks: the wake during the check was lost", done.State, checks.Load())
	}
}

// TestWakeDoesNotUndoACancel: Wake reads a snoozed job's state and then
// runs it now; should the job be cancelled in between (an operator in
// River's UI), running it now must not make it available again: the
// cancel would be undone and the orphan check would never see it. The
// test cancels the snoozed job and then takes Wake's second half (retry)
// as the race would.
func TestWakeDoesNotUndoACancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var checks atomic.Int32
	p := testPipeline(Step{Name: "wait", Run: func(context.Context, *Run) (Outcome, error) {
		checks.Add(1)
		return Outcome{RecheckIn: 10 * time.Minute}, nil
	}})
	q := b.startQueue(t, p)
	op := b.submit(t, q, p, "prod", seedJSON)
	ctx := context.Background()
	id := *op.RiverJobID
	deadline := time.Now().Add(30 * time.Second)
	for {
		job, err := q.client.JobGet(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if job.State == rivertype.JobStateScheduled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is %s, not snoozed, after 30s", id, job.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := q.client.JobCancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := q.retry(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // long enough for a revived job to be fetched and run
	job, err := q.client.JobGet(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != rivertype.JobStateCancelled || checks.Load() != 1 {
		t.Fatalf("after a cancel and a wake: job %s after %d checks; want cancelled after 1", job.State, checks.Load())
	}
}
