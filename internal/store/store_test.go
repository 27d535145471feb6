package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/store"
)

type bundle struct {
	pool    *pgxpool.Pool
	store   *store.Store
	river   *river.Client[pgx.Tx]
	actor   store.Actor
	enqueue store.EnqueueFunc
}

func setup(t *testing.T) bundle {
	t.Helper()
	pool := dbtest.NewPool(t)
	st := store.New(pool, slog.New(slog.DiscardHandler))
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := st.EnsureAdminToken(context.Background(), "acme", []byte("hash-acme"))
	if err != nil {
		t.Fatal(err)
	}
	b := bundle{pool: pool, store: st, river: rc, actor: store.Actor{TenantID: admin.TenantID, TokenID: admin.TokenID, RequestID: "req-1"}}
	b.enqueue = func(ctx context.Context, tx store.Tx, op store.Operation) (int64, error) {
		res, err := rc.InsertTx(ctx, tx.Driver(), jobs.ProvisionArgs{OperationID: op.ID}, nil)
		if err != nil {
			return 0, err
		}
		return res.Job.ID, nil
	}
	return b
}

func (b bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func newCluster(name string) store.NewCluster {
	return store.NewCluster{
		Name: name, Provider: "hetzner",
		Spec:  json.RawMessage(`{"metadata":{"name":"` + name + `"},"spec":{"credentials":{"secretName":"` + name + `-credentials"}}}`),
		Steps: []string{"detect", "credentials", "apply"},
	}
}

func TestCreateClusterEnqueuesInOneTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	c, op, replayed, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue)
	if err != nil || replayed {
		t.Fatalf("CreateCluster: %v (replayed %v)", err, replayed)
	}
	if c.Phase != store.PhasePending || op.State != store.OpQueued || len(op.Steps) != 3 || op.RiverJobID == nil {
		t.Fatalf("unexpected cluster %+v / operation %+v", c, op)
	}
	var args []byte
	if err := b.pool.QueryRow(ctx, `SELECT args FROM river_job WHERE id = $1`, *op.RiverJobID).Scan(&args); err != nil {
		t.Fatalf("job not stored: %v", err)
	}
	var got map[string]any
	_ = json.Unmarshal(args, &got)
	if len(got) != 1 || got["operationId"] != op.ID.String() {
		t.Fatalf("job args = %s, want only the operation id", args)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'cluster.create' AND request_id = 'req-1'`); n != 1 {
		t.Fatalf("audit entries = %d", n)
	}

	// A failing enqueue rolls back the cluster and operation rows too.
	boom := errors.New("queue down")
	_, _, _, err = b.store.CreateCluster(ctx, b.actor, newCluster("staging"), func(ctx context.Context, tx store.Tx, op store.Operation) (int64, error) {
		if _, err := b.enqueue(ctx, tx, op); err != nil {
			return 0, err
		}
		return 0, boom // the job was inserted in tx, then the transaction fails
	})
	if !errors.Is(err, boom) {
		t.Fatalf("want the enqueue error, got %v", err)
	}
	if n := b.count(t, `SELECT count(*) FROM clusters WHERE name = 'staging'`); n != 0 {
		t.Fatalf("cluster row survived a failed enqueue")
	}
	if n := b.count(t, `SELECT count(*) FROM operations`); n != 1 {
		t.Fatalf("operations = %d, want 1", n)
	}
	if n := b.count(t, `SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("jobs = %d, want 1: the failed transaction's job must roll back", n)
	}
}

func TestCreateClusterConflictAndIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	nc := newCluster("prod")
	nc.IdempotencyKey, nc.RequestHash = "key-1", []byte("hash-1")
	c1, op1, _, err := b.store.CreateCluster(ctx, b.actor, nc, b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	c2, op2, replayed, err := b.store.CreateCluster(ctx, b.actor, nc, b.enqueue)
	if err != nil || !replayed || c2.ID != c1.ID || op2.ID != op1.ID {
		t.Fatalf("replay: %v replayed=%v ids %s/%s", err, replayed, c2.ID, op2.ID)
	}
	nc.RequestHash = []byte("hash-2")
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, nc, b.enqueue); !errors.Is(err, store.ErrIdempotencyMismatch) {
		t.Fatalf("same key, other body: %v", err)
	}
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	if n := b.count(t, `SELECT count(*) FROM river_job`); n != 1 {
		t.Fatalf("jobs = %d, want 1", n)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue); err != nil {
		t.Fatal(err)
	}
	other, err := b.store.CreateTenant(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Cluster(ctx, other.ID, "prod"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant sees the cluster: %v", err)
	}
	list, _, err := b.store.ListClusters(ctx, other.ID, store.ListClustersParams{Limit: 10})
	if err != nil || len(list) != 0 {
		t.Fatalf("other tenant lists %d clusters (%v)", len(list), err)
	}
	// The same name is free in another tenant.
	otherActor := store.Actor{TenantID: other.ID}
	if _, _, _, err := b.store.CreateCluster(ctx, otherActor, newCluster("prod"), b.enqueue); err != nil {
		t.Fatalf("same name in another tenant: %v", err)
	}
}

func TestListClustersPaginates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster(name), b.enqueue); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := b.store.ListClusters(ctx, b.actor.TenantID, store.ListClustersParams{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			names = append(names, c.Name)
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if got := len(names); got != 5 || names[0] != "a" || names[4] != "e" {
		t.Fatalf("pages gave %v", names)
	}
	if _, _, err := b.store.ListClusters(ctx, b.actor.TenantID, store.ListClustersParams{Limit: 2, Cursor: "garbage!"}); !errors.Is(err, store.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	failed, _, err := b.store.ListClusters(ctx, b.actor.TenantID, store.ListClustersParams{Limit: 10, Phase: store.PhaseFailed})
	if err != nil || len(failed) != 0 {
		t.Fatalf("phase filter: %d, %v", len(failed), err)
	}
}

func TestStepProgressAndResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, op, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.BeginOperation(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.StartStep(ctx, op.ID, "detect"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.FinishStep(ctx, op.ID, "detect", store.StepSucceeded, "provider hetzner"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.StartStep(ctx, op.ID, "credentials"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.FailStep(ctx, op.ID, "credentials", store.Failure{Message: "unreachable"}, false); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.Cluster(ctx, b.actor.TenantID, "prod")
	if err != nil || got.Phase != store.PhaseProvisioning {
		t.Fatalf("after a retryable failure: phase %s (%v)", got.Phase, err)
	}
	// Resuming: the job runs again; detect stays done, credentials gets attempt 2.
	if _, err := b.store.BeginOperation(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.StartStep(ctx, op.ID, "credentials"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.FailStep(ctx, op.ID, "credentials", store.Failure{Message: "rejected", Code: "CredentialsRejected"}, true); err != nil {
		t.Fatal(err)
	}
	op, err = b.store.Operation(ctx, b.actor.TenantID, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if op.State != store.OpFailed || op.Steps[0].State != store.StepSucceeded || op.Steps[0].Message != "provider hetzner" ||
		op.Steps[1].State != store.StepFailed || op.Steps[1].Attempts != 2 || op.Steps[1].Error != "rejected" || op.Steps[1].Failure.Code != "CredentialsRejected" ||
		op.Steps[2].State != store.StepPending {
		t.Fatalf("operation after failure: %+v", op)
	}
	got, _ = b.store.Cluster(ctx, b.actor.TenantID, "prod")
	if got.Phase != store.PhaseFailed || got.Message != "step credentials: rejected" {
		t.Fatalf("cluster after failure: %s %q", got.Phase, got.Message)
	}
	// A finished operation takes no more step updates.
	if _, err := b.store.StartStep(ctx, op.ID, "apply"); !errors.Is(err, store.ErrOperationNotActive) {
		t.Fatalf("step on an ended operation: %v", err)
	}
	if _, err := b.store.BeginOperation(ctx, op.ID); !errors.Is(err, store.ErrOperationNotActive) {
		t.Fatalf("begin an ended operation: %v", err)
	}
	_ = c
}

func TestDeprovisionCancelsActiveOperation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, op, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	var cancelled []int64
	cancel := func(_ context.Context, _ store.Tx, id int64) error { cancelled = append(cancelled, id); return nil }
	c, del, err := b.store.StartDeprovision(ctx, b.actor, "prod", []string{"delete"}, b.enqueue, cancel)
	if err != nil {
		t.Fatal(err)
	}
	if c.Phase != store.PhaseDeleting || del.Kind != store.OpDeprovision || len(cancelled) != 1 || cancelled[0] != *op.RiverJobID {
		t.Fatalf("deprovision: phase %s kind %s cancelled %v", c.Phase, del.Kind, cancelled)
	}
	prov, _ := b.store.Operation(ctx, b.actor.TenantID, op.ID)
	if prov.State != store.OpCancelled {
		t.Fatalf("provision operation state %s, want cancelled", prov.State)
	}
	// DELETE again returns the same deprovision operation.
	_, again, err := b.store.StartDeprovision(ctx, b.actor, "prod", []string{"delete"}, b.enqueue, cancel)
	if err != nil || again.ID != del.ID {
		t.Fatalf("second delete: %v, %s vs %s", err, again.ID, del.ID)
	}
	// Completing it frees the name while keeping history.
	if _, err := b.store.BeginOperation(ctx, del.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.store.CompleteOperation(ctx, del.ID, store.PhaseDeleted); err != nil {
		t.Fatal(err)
	}
	gone, err := b.store.Cluster(ctx, b.actor.TenantID, "prod")
	if err != nil || gone.Phase != store.PhaseDeleted || gone.DeletedAt == nil {
		t.Fatalf("deleted cluster: %+v %v", gone, err)
	}
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue); err != nil {
		t.Fatalf("name not reusable after delete: %v", err)
	}
	if _, _, err := b.store.StartDeprovision(ctx, store.Actor{TenantID: uuid.New()}, "prod", nil, b.enqueue, cancel); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete in another tenant: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	key, _ := seal.ParseKey(seal.NewKey())
	ring, _ := seal.NewKeyring(key)
	sealed, _ := ring.Seal([]byte(`{"hcloudToken":"tok"}`), []byte("aad"))
	nc := store.NewCredential{Name: "prod-credentials", Provider: "hetzner", KeysSet: []string{"hcloudToken"}, Fingerprint: "fp", Sealed: sealed}
	_, created, err := b.store.PutCredential(ctx, b.actor, nc)
	if err != nil || !created {
		t.Fatalf("put: %v created=%v", err, created)
	}
	_, created, err = b.store.PutCredential(ctx, b.actor, nc)
	if err != nil || created {
		t.Fatalf("replace: %v created=%v", err, created)
	}
	_, got, err := b.store.SealedCredential(ctx, b.actor.TenantID, "prod-credentials")
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := ring.Open(got, []byte("aad")); err != nil || string(plain) != `{"hcloudToken":"tok"}` {
		t.Fatalf("sealed round trip: %q %v", plain, err)
	}
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue); err != nil {
		t.Fatal(err)
	}
	if err := b.store.DeleteCredential(ctx, b.actor, "prod-credentials"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("deleting a credential in use: %v", err)
	}
	other, _ := b.store.CreateTenant(ctx, "globex")
	if _, err := b.store.Credential(ctx, other.ID, "prod-credentials"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant reads the credential: %v", err)
	}
	if err := b.store.DeleteCredential(ctx, b.actor, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	p, err := b.store.Authenticate(ctx, []byte("hash-acme"))
	if err != nil || !p.Admin || p.TenantName != "acme" {
		t.Fatalf("admin token: %+v %v", p, err)
	}
	// A new admin token replaces the old one.
	if _, err := b.store.EnsureAdminToken(ctx, "acme", []byte("hash-new")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Authenticate(ctx, []byte("hash-acme")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old admin token still works: %v", err)
	}
	if _, err := b.store.CreateToken(ctx, p.TenantID, "ci", []byte("hash-ci"), false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.CreateToken(ctx, p.TenantID, "ci", []byte("hash-ci2"), false, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate token name: %v", err)
	}
	ci, err := b.store.Authenticate(ctx, []byte("hash-ci"))
	if err != nil || ci.Admin || ci.TokenName != "ci" {
		t.Fatalf("ci token: %+v %v", ci, err)
	}
}

// TestLatestOperations: each cluster gets its own newest operation, with
// its steps in order and a failed step's record; clusters without one are
// left out.
func TestLatestOperations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a, aProv, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("a"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	bc, bProv, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("b"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.BeginOperation(ctx, bProv.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.StartStep(ctx, bProv.ID, "detect"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.FailStep(ctx, bProv.ID, "detect", store.Failure{Message: "no", Code: "TemplateInvalid"}, true); err != nil {
		t.Fatal(err)
	}
	// a's newest operation is its deprovision, not the provision it cancelled.
	cancel := func(context.Context, store.Tx, int64) error { return nil }
	_, aDel, err := b.store.StartDeprovision(ctx, b.actor, "a", []string{"delete"}, b.enqueue, cancel)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.store.LatestOperations(ctx, []uuid.UUID{a.ID, bc.ID, uuid.New()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d operations, want 2", len(got))
	}
	if op := got[a.ID]; op.ID != aDel.ID || op.ID == aProv.ID || len(op.Steps) != 1 || op.Steps[0].Name != "delete" {
		t.Fatalf("a's latest: %+v", op)
	}
	op := got[bc.ID]
	if op.ID != bProv.ID || len(op.Steps) != 3 || op.Steps[0].Name != "detect" || op.Steps[2].Name != "apply" {
		t.Fatalf("b's latest: %+v", op)
	}
	if st := op.Steps[0]; st.State != store.StepFailed || st.Failure.Code != "TemplateInvalid" {
		t.Fatalf("b's failed step: %+v", st)
	}
	if none, err := b.store.LatestOperations(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("no clusters: %v %v", none, err)
	}
}

// TestPruneEvents deletes, in batches, exactly the events older than the
// cut-off, and records the position of the last deleted.
func TestPruneEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const stale = 10500 // more than one batch
	if _, err := b.pool.Exec(ctx, `INSERT INTO events (tenant_id, cluster, type, data, at)
		SELECT $1, 'old', 'step', '{}', now() - interval '2 days' FROM generate_series(1, $2)`, b.actor.TenantID, stale); err != nil {
		t.Fatal(err)
	}
	var lastStale store.Position
	var tx int64
	if err := b.pool.QueryRow(ctx, `SELECT tx::text::bigint, id FROM events ORDER BY tx DESC, id DESC LIMIT 1`).Scan(&tx, &lastStale.ID); err != nil {
		t.Fatal(err)
	}
	lastStale.Tx = uint64(tx)
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("fresh"), b.enqueue); err != nil {
		t.Fatal(err)
	}
	fresh := b.count(t, `SELECT count(*) FROM events WHERE cluster = 'fresh'`)
	n, err := b.store.PruneEvents(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != stale {
		t.Fatalf("pruned %d, want %d: %v", n, stale, err)
	}
	if left := b.count(t, `SELECT count(*) FROM events`); left != fresh || fresh == 0 {
		t.Fatalf("%d events left, want the %d fresh ones", left, fresh)
	}
	if through, err := b.store.PrunedThrough(ctx); err != nil || through != lastStale {
		t.Fatalf("pruned through %d, want %d: %v", through, lastStale, err)
	}
	// Nothing more to prune: nothing changes.
	if n, err := b.store.PruneEvents(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second prune: %d %v", n, err)
	}
	if through, _ := b.store.PrunedThrough(ctx); through != lastStale {
		t.Fatalf("pruned through moved to %d", through)
	}
}

// TestActiveJob names the River job of a running operation only.
func TestActiveJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, op, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := b.store.ActiveJob(ctx, b.actor.TenantID, "prod"); err != nil || id != 0 {
		t.Fatalf("queued operation: job %d, %v; want none", id, err)
	}
	if _, err := b.store.BeginOperation(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if id, step, err := b.store.ActiveJob(ctx, b.actor.TenantID, "prod"); err != nil || id != *op.RiverJobID || step != "" {
		t.Fatalf("running operation: job %d at step %q, %v; want %d at no step yet", id, step, err, *op.RiverJobID)
	}
	if _, err := b.store.StartStep(ctx, op.ID, "detect"); err != nil {
		t.Fatal(err)
	}
	if _, step, err := b.store.ActiveJob(ctx, b.actor.TenantID, "prod"); err != nil || step != "detect" {
		t.Fatalf("running operation: step %q, %v; want detect", step, err)
	}
	for tenant, name := range map[uuid.UUID]string{uuid.New(): "prod", b.actor.TenantID: "nope"} {
		if id, _, err := b.store.ActiveJob(ctx, tenant, name); err != nil || id != 0 {
			t.Fatalf("%s/%s: job %d, %v; want none", tenant, name, id, err)
		}
	}
}

// TestEventWritersAreNotSerialised: a transaction that has written an
// event and is still open holds up no other writer. (Before migration
// 00017 every event writer took one advisory lock to commit, so the
// second cluster's creation waited for the first transaction to end.)
func TestEventWritersAreNotSerialised(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue); err != nil {
		t.Fatal(err)
	}
	open, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.Rollback(ctx) }()
	if _, err := open.Exec(ctx, `UPDATE clusters SET message = 'held open' WHERE name = 'prod'`); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, `SELECT count(*) FROM events WHERE cluster = 'prod'`); n != 2 { // the open one's is not visible
		t.Fatalf("%d events of prod, want 2", n)
	}
	// Another cluster of the same tenant, and one of another tenant.
	other, err := b.store.EnsureAdminToken(ctx, "globex", []byte("hash-globex"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		actor store.Actor
		name  string
	}{{b.actor, "staging"}, {store.Actor{TenantID: other.TenantID, TokenID: other.TokenID}, "prod"}} {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		start := time.Now()
		_, _, _, err := b.store.CreateCluster(wctx, w.actor, newCluster(w.name), b.enqueue)
		cancel()
		if err != nil {
			t.Fatalf("creating %s beside an open transaction with an event: %v after %s", w.name, err, time.Since(start))
		}
	}
	if err := open.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOutOfOrderEventIsRunAgain: a transaction given its id before another
// (here: its UPDATE waits for a row lock) writes an event of a cluster
// after that other, later transaction committed one of the same cluster;
// it would sort before it, so the event is refused (a serialization
// failure) and the store runs the transaction again, which succeeds with a
// later id: the cluster's events stay in the order of its changes. (This
// replaces TestDeadlockedWriteIsRunAgain: the deadlock it reproduced came
// from the global events lock, which migration 00017 removed.)
func TestOutOfOrderEventIsRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var logs bytes.Buffer
	st := store.New(b.pool, slog.New(slog.NewTextHandler(&logs, nil)))
	_, op, _, err := st.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	locker, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = locker.Rollback(ctx) }()
	if _, err := locker.Exec(ctx, `SELECT 1 FROM operation_steps WHERE operation_id = $1 AND name = 'detect' FOR UPDATE`, op.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- st.SetStepMessage(ctx, op.ID, "detect", "checking") }()
	// Once the message's UPDATE (which has its transaction id) waits for
	// the row, a later transaction writes an event of the same cluster.
	for b.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE clusters SET message = 'meanwhile' WHERE name = 'prod'`); err != nil {
		t.Fatal(err)
	}
	if err := locker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the step message was lost: %v", err)
	}
	var msg string
	if err := b.pool.QueryRow(ctx, `SELECT message FROM operation_steps WHERE operation_id = $1 AND name = 'detect'`, op.ID).Scan(&msg); err != nil || msg != "checking" {
		t.Fatalf("message %q: %v", msg, err)
	}
	rows, err := b.pool.Query(ctx, `SELECT type, coalesce(data->>'message', '') FROM events WHERE cluster = 'prod' ORDER BY tx, id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var typ, msg string
		err := r.Scan(&typ, &msg)
		return typ + ":" + msg, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "cluster.phase: operation: cluster.phase:meanwhile step:checking"; strings.Join(got, " ") != want {
		t.Fatalf("prod's events in stream order: %v, want %s", got, want)
	}
	if !strings.Contains(logs.String(), "running it again") || !strings.Contains(logs.String(), "40001") {
		t.Fatalf("the store did not run the transaction again: %s", logs.String())
	}
}

// TestPlacementBelongsToOneTenant: tenants racing for one namespace of a
// named management cluster: exactly one gets it, the others get
// ErrPlacementTaken, and the namespace stays the winner's; the winner
// places more clusters there.
func TestPlacementBelongsToOneTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const tenants = 8
	actors := make([]store.Actor, tenants)
	for i := range actors {
		tok, err := b.store.EnsureAdminToken(ctx, fmt.Sprintf("tenant-%d", i), []byte(fmt.Sprintf("hash-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		actors[i] = store.Actor{TenantID: tok.TenantID, TokenID: tok.TokenID}
	}
	placed := func(name string) store.NewCluster {
		nc := newCluster(name)
		nc.ManagementDomain, nc.Namespace = "shared.example.com", "default"
		return nc
	}
	errs := make([]error, tenants)
	var wg sync.WaitGroup
	for i := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _, errs[i] = b.store.CreateCluster(ctx, actors[i], placed("prod"), b.enqueue)
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = i
		case err == nil:
			t.Fatalf("tenants %d and %d both placed a cluster in the namespace", winner, i)
		case !errors.Is(err, store.ErrPlacementTaken):
			t.Fatalf("tenant %d: %v, want ErrPlacementTaken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no tenant got the namespace")
	}
	if _, _, _, err := b.store.CreateCluster(ctx, actors[winner], placed("staging"), b.enqueue); err != nil {
		t.Fatalf("the winner's second cluster: %v", err)
	}
	if n := b.count(t, `SELECT count(*) FROM clusters WHERE namespace = 'default' AND management_domain = 'shared.example.com'`); n != 2 {
		t.Fatalf("clusters in the namespace: %d", n)
	}
}

// TestIdempotencyKeyUnderConcurrency: 20 requests at once with one
// Idempotency-Key. With one body: one cluster, and every request gets it
// (none a 409 for the name). With 20 bodies (names): one cluster, the
// others ErrIdempotencyMismatch (a live key is never replaced).
func TestIdempotencyKeyUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const requests = 20
	run := func(key string, name func(i int) string) ([]store.Cluster, []error) {
		clusters, errs := make([]store.Cluster, requests), make([]error, requests)
		var wg sync.WaitGroup
		for i := 0; i < requests; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc := newCluster(name(i))
				nc.IdempotencyKey, nc.RequestHash = key, []byte("hash-of-"+name(i))
				clusters[i], _, _, errs[i] = b.store.CreateCluster(ctx, b.actor, nc, b.enqueue)
			}()
		}
		wg.Wait()
		return clusters, errs
	}

	clusters, errs := run("same-body", func(int) string { return "prod" })
	for i, err := range errs {
		if err != nil {
			t.Fatalf("same key, same body, request %d: %v (want the first request's cluster)", i, err)
		}
		if clusters[i].ID != clusters[0].ID {
			t.Fatalf("request %d got cluster %s, request 0 %s", i, clusters[i].ID, clusters[0].ID)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM clusters WHERE name = 'prod'`); n != 1 {
		t.Fatalf("clusters named prod: %d", n)
	}

	_, errs = run("many-bodies", func(i int) string { return fmt.Sprintf("c%d", i) })
	created := 0
	for i, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrIdempotencyMismatch):
			t.Fatalf("same key, another body, request %d: %v", i, err)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM clusters WHERE name LIKE 'c%'`); created != 1 || n != 1 {
		t.Fatalf("one key, %d bodies: %d created, %d clusters (want 1)", requests, created, n)
	}
}

// TestSameStepMessageWritesNothing: a wait check that finds nothing new
// sets the same message again; that writes no row version (so no event
// and no lock), a new message writes one.
func TestSameStepMessageWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, op, _, err := b.store.CreateCluster(ctx, b.actor, newCluster("prod"), b.enqueue)
	if err != nil {
		t.Fatal(err)
	}
	xmin := func() string {
		t.Helper()
		var v string
		if err := b.pool.QueryRow(ctx, `SELECT xmin::text FROM operation_steps WHERE operation_id = $1 AND name = 'detect'`, op.ID).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	events := func() int { return b.count(t, `SELECT count(*) FROM events WHERE type = 'step'`) }
	if err := b.store.SetStepMessage(ctx, op.ID, "detect", "waiting for CAPI"); err != nil {
		t.Fatal(err)
	}
	version, n := xmin(), events()
	for range 3 {
		if err := b.store.SetStepMessage(ctx, op.ID, "detect", "waiting for CAPI"); err != nil {
			t.Fatal(err)
		}
	}
	if xmin() != version || events() != n {
		t.Fatalf("the same message rewrote the row (xmin %s → %s) or emitted events (%d → %d)", version, xmin(), n, events())
	}
	if err := b.store.SetStepMessage(ctx, op.ID, "detect", "1/3 ready"); err != nil {
		t.Fatal(err)
	}
	if xmin() == version || events() != n+1 {
		t.Fatalf("a new message: xmin %s (was %s), events %d (was %d)", xmin(), version, events(), n)
	}
}
