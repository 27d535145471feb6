package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/migrations"
)

// TestMigrationGivesRunningOperationsTheNewSteps: operations queued or
// running when the service is upgraded to the pipeline that installs the
// CNI and CCM before waiting for Ready nodes (00010_pipeline_order.sql)
// get exactly the steps the new workers run, with what had already run
// kept; finished operations keep the steps they ran.
// migratedDownTo is a fresh, fully migrated database taken back down to
// schema version, and the goose provider to migrate it up again.
func migratedDownTo(t *testing.T, version int64) (*pgxpool.Pool, *goose.Provider) {
	t.Helper()
	pool := dbtest.NewPool(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = db.Close() })
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.DownTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	return pool, provider
}

func TestMigrationGivesRunningOperationsTheNewSteps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Back to the schema before the new pipeline, with operations of the
	// old one in it.
	pool, provider := migratedDownTo(t, 9)
	tenant := uuid.New()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO tenants (id, name) VALUES ($1, 'acme')`, tenant)
	oldSteps := []string{"detect", "credentials", "render", "apply", "wait", "kubeconfig", "bootstrap", "gitops"}
	operation := func(cluster, kind, state string, steps []string, stepStates map[string]string) uuid.UUID {
		t.Helper()
		cid, oid := uuid.New(), uuid.New()
		exec(`INSERT INTO clusters (id, tenant_id, name, provider, spec, phase) VALUES ($1, $2, $3, 'hetzner', '{}', 'Provisioning')`, cid, tenant, cluster)
		exec(`INSERT INTO operations (id, tenant_id, cluster_id, kind, state, step, generation) VALUES ($1, $2, $3, $4, $5, 'wait', 1)`, oid, tenant, cid, kind, state)
		for i, name := range steps {
			st := stepStates[name]
			if st == "" {
				st = "pending"
			}
			exec(`INSERT INTO operation_steps (operation_id, ordinal, name, state) VALUES ($1, $2, $3, $4)`, oid, i, name, st)
		}
		return oid
	}
	ran := map[string]string{"detect": "succeeded", "credentials": "succeeded", "render": "succeeded", "apply": "succeeded", "wait": "running"}
	waiting := operation("waiting", "provision", "running", oldSteps, ran)
	queued := operation("queued", "provision", "queued", oldSteps, nil)
	done := operation("done", "provision", "succeeded", oldSteps, map[string]string{"detect": "succeeded", "credentials": "succeeded",
		"render": "succeeded", "apply": "succeeded", "wait": "succeeded", "kubeconfig": "succeeded", "bootstrap": "succeeded", "gitops": "succeeded"})
	update := operation("updating", "update", "running", []string{"credentials", "render", "apply", "prune", "rollout", "bootstrap", "gitops"}, nil)

	if _, err := provider.Up(ctx); err != nil {
		t.Fatal(err)
	}
	catalog, err := app.LoadCatalog("") // the embedded templates
	if err != nil {
		t.Fatal(err)
	}
	pipeline := jobs.NewPipeline(jobs.Deps{Catalog: catalog})
	st := store.New(pool, nil)
	steps := func(id uuid.UUID) (names []string, states map[string]string) {
		t.Helper()
		op, err := st.OperationByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		states = map[string]string{}
		for _, s := range op.Steps {
			names = append(names, s.Name)
			states[s.Name] = string(s.State)
		}
		return names, states
	}

	for _, id := range []uuid.UUID{waiting, queued} {
		names, _ := steps(id)
		if want := pipeline.StepNames(store.OpProvision); !slices.Equal(names, want) {
			t.Fatalf("steps after the migration: %v, want what a new worker runs: %v", names, want)
		}
	}
	_, states := steps(waiting)
	for name, want := range map[string]string{
		"detect": "succeeded", "render": "succeeded", "credentials": "succeeded", "apply": "succeeded",
		"preflight":                 "skipped", // its place had passed: the credentials were applied before it existed
		"control-plane-initialized": "running", "kubeconfig": "pending", "cni-and-ccm": "pending",
		"nodes-ready": "pending", "addons": "pending", "gitops": "pending",
	} {
		if states[name] != want {
			t.Errorf("running operation, step %s: %s, want %s", name, states[name], want)
		}
	}
	if _, states := steps(queued); states["preflight"] != "pending" {
		t.Errorf("queued operation: preflight %s, want pending", states["preflight"])
	}
	if names, _ := steps(done); !slices.Equal(names, oldSteps) {
		t.Errorf("a finished operation's steps changed: %v", names)
	}
	if names, _ := steps(update); strings.Join(names, ",") != strings.Join(pipeline.StepNames(store.OpUpdate), ",") {
		t.Errorf("update operation: %v, want %v", names, pipeline.StepNames(store.OpUpdate))
	}
	var step string
	if err := pool.QueryRow(ctx, `SELECT step FROM operations WHERE id = $1`, waiting).Scan(&step); err != nil || step != "control-plane-initialized" {
		t.Errorf("operation's current step: %q (%v)", step, err)
	}
}
