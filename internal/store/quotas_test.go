package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/store"
)

func limit(n int32) *int32 { return &n }

func sized(name string, machines int64) store.NewCluster {
	nc := newCluster(name)
	nc.Machines = machines
	return nc
}

// TestQuotaIsHeldAtCreateAndUpdate: a tenant's live clusters, each
// cluster's machines and its machines in all are bounded by what the admin
// set; a deleted cluster frees its share; shrinking always passes, even
// under a quota lowered below what is in use; another tenant is not
// counted.
func TestQuotaIsHeldAtCreateAndUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	quotaErr := func(t *testing.T, err error, quota string, lim, used, requested int64) {
		t.Helper()
		var qe *store.QuotaExceededError
		if !errors.As(err, &qe) || !errors.Is(err, store.ErrQuotaExceeded) {
			t.Fatalf("want a quota error on %s, got %v", quota, err)
		}
		if want := (store.QuotaExceededError{Quota: quota, Limit: lim, Used: used, Requested: requested}); *qe != want {
			t.Fatalf("quota error %+v, want %+v", *qe, want)
		}
	}

	// No quota: no limit.
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, sized("a", 40), b.enqueue); err != nil {
		t.Fatal(err)
	}
	if err := b.store.SetQuota(ctx, b.actor, b.actor.TenantID, store.Quota{Clusters: limit(2), MachinesPerCluster: limit(50), Machines: limit(60)}); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := b.store.CreateCluster(ctx, b.actor, sized("b", 51), b.enqueue)
	quotaErr(t, err, store.QuotaMachinesPerCluster, 50, 0, 51)
	_, _, _, err = b.store.CreateCluster(ctx, b.actor, sized("b", 21), b.enqueue)
	quotaErr(t, err, store.QuotaMachines, 60, 40, 21)
	if _, _, _, err := b.store.CreateCluster(ctx, b.actor, sized("b", 20), b.enqueue); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = b.store.CreateCluster(ctx, b.actor, sized("c", 0), b.enqueue)
	quotaErr(t, err, store.QuotaClusters, 2, 2, 1)
	if err := b.store.CheckQuota(ctx, b.actor.TenantID, 0); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Fatalf("dry-run check: %v", err)
	}
	if n := b.count(t, `SELECT count(*) FROM clusters WHERE name = 'c'`); n != 0 {
		t.Fatalf("a refused cluster was stored")
	}

	// Updates: growth is held against the others' use, not the cluster's own.
	finish := func(name string) {
		t.Helper()
		if _, err := b.pool.Exec(ctx, `UPDATE operations SET state = 'succeeded' WHERE cluster_id = (SELECT id FROM clusters WHERE name = $1)`, name); err != nil {
			t.Fatal(err)
		}
	}
	finish("b")
	_, _, err = b.store.UpdateSpec(ctx, b.actor, "b", 0, newCluster("b").Spec, "", 21, []string{"apply"}, b.enqueue)
	quotaErr(t, err, store.QuotaMachines, 60, 40, 21)
	c, _, err := b.store.UpdateSpec(ctx, b.actor, "b", 0, newCluster("b").Spec, "", 15, []string{"apply"}, b.enqueue)
	if err != nil || c.Machines != 15 {
		t.Fatalf("scale down: %v (machines %d)", err, c.Machines)
	}
	q, u, err := b.store.Quota(ctx, b.actor.TenantID)
	if err != nil || *q.Machines != 60 || u != (store.Usage{Clusters: 2, Machines: 55}) {
		t.Fatalf("quota %+v usage %+v: %v", q, u, err)
	}

	// A quota lowered below use refuses growth only.
	if err := b.store.SetQuota(ctx, b.actor, b.actor.TenantID, store.Quota{Machines: limit(10)}); err != nil {
		t.Fatal(err)
	}
	finish("b")
	if _, _, err := b.store.UpdateSpec(ctx, b.actor, "b", 0, newCluster("b").Spec, "", 12, []string{"apply"}, b.enqueue); err != nil {
		t.Fatalf("shrinking under a lowered quota: %v", err)
	}
	finish("b")
	_, _, err = b.store.UpdateSpec(ctx, b.actor, "b", 0, newCluster("b").Spec, "", 13, []string{"apply"}, b.enqueue)
	quotaErr(t, err, store.QuotaMachines, 10, 40, 13)

	// A deleted cluster frees its share; another tenant's use is not counted.
	if _, err := b.pool.Exec(ctx, `UPDATE clusters SET deleted_at = now(), phase = 'Deleted' WHERE name = 'a'`); err != nil {
		t.Fatal(err)
	}
	other, err := b.store.EnsureAdminToken(ctx, "globex", []byte("hash-globex"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.store.CreateCluster(ctx, store.Actor{TenantID: other.TenantID, TokenID: other.TokenID}, sized("big", 500), b.enqueue); err != nil {
		t.Fatal(err)
	}
	if _, u, _ := b.store.Quota(ctx, b.actor.TenantID); u != (store.Usage{Clusters: 1, Machines: 12}) {
		t.Fatalf("usage after delete %+v", u)
	}
}

// TestQuotaUnderConcurrency: 10 creates racing for a quota of 3 clusters
// give exactly 3.
func TestQuotaUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if err := b.store.SetQuota(ctx, b.actor, b.actor.TenantID, store.Quota{Clusters: limit(3)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			_, _, _, errs[i] = b.store.CreateCluster(ctx, b.actor, sized(fmt.Sprintf("c%d", i), 1), b.enqueue)
		})
	}
	wg.Wait()
	created, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case errors.Is(err, store.ErrQuotaExceeded):
			refused++
		default:
			t.Errorf("create: %v", err)
		}
	}
	if created != 3 || refused != 7 {
		t.Fatalf("%d created, %d refused; want 3 and 7", created, refused)
	}
}

// TestMigrationCountsExistingMachines: clusters stored before quotas
// (00014_quotas.sql) get their machines from the stored, defaulted spec:
// the control plane's (not EKS's) and every pool's.
func TestMigrationCountsExistingMachines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, provider := migratedDownTo(t, 13)
	tenant := uuid.New()
	if _, err := pool.Exec(ctx, `INSERT INTO tenants (id, name) VALUES ($1, 'acme')`, tenant); err != nil {
		t.Fatal(err)
	}
	specs := map[string]string{
		"hetzner": `{"spec":{"hcloud":{"controlPlane":{"replicas":3},"workers":{"a":{"replicas":2},"b":{"replicas":1}}},"hrobot":{"workers":{"m":{"replicas":4}}},"bootstrap":["cilium"]}}`,
		"eks":     `{"spec":{"aws":{"flavor":"eks","controlPlane":{"replicas":3},"workers":{"a":{"replicas":5}}}}}`,
		"ec2":     `{"spec":{"aws":{"controlPlane":{"replicas":1},"workers":{}}}}`,
	}
	for name, spec := range specs {
		if _, err := pool.Exec(ctx, `INSERT INTO clusters (id, tenant_id, name, provider, spec, phase) VALUES ($1, $2, $3, 'x', $4, 'Provisioned')`,
			uuid.New(), tenant, name, spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := provider.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"hetzner": 10, "eks": 5, "ec2": 1} {
		var got int
		if err := pool.QueryRow(ctx, `SELECT machines FROM clusters WHERE name = $1`, name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %d machines, want %d", name, got, want)
		}
	}
}
