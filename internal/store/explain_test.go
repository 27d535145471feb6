package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/store"
)

// recorder is a pgx tracer that keeps every query a store call sends.
type recorder struct {
	mu      sync.Mutex
	queries []recorded
}

type recorded struct {
	sql  string
	args []any
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, recorded{d.SQL, d.Args})
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.queries
	r.queries = nil
	return out
}

// recordingPool opens a pool on a fresh database, whose queries rec keeps.
func recordingPool(t *testing.T) (*pgxpool.Pool, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg, err := pgxpool.ParseConfig(dbtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, rec
}

// TestHotQueriesUseIndexes: with thousands of rows (10,000 clusters of one
// tenant, deleted ones among them, their operations, steps and events,
// 2,000 credentials and tokens), every query of the API's hot reads —
// cluster by name, by id and by domain (/api), a list page, the status's operation and steps, the
// operation history, events after an id, a credential by name, a token by
// hash, the change feed's look — is planned without a sequential scan of a big table.
func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rec := recordingPool(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tenant, other := uuid.New(), uuid.New()
	exec(`INSERT INTO tenants (id, name) VALUES ($1, 'acme'), ($2, 'globex')`, tenant, other)
	exec(`INSERT INTO clusters (id, tenant_id, name, provider, spec, phase, deleted_at)
		SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN $2::uuid ELSE $1::uuid END, 'c-' || (i % 9000), 'hetzner',
		       json_build_object('spec', json_build_object('cluster', json_build_object('domain', 'c-' || (i % 9000) || '.example.com'))),
		       'Provisioned', CASE WHEN i >= 9000 THEN now() END
		FROM generate_series(0, 10999) i`, tenant, other)
	exec(`INSERT INTO operations (id, tenant_id, cluster_id, kind, state, step, generation)
		SELECT gen_random_uuid(), tenant_id, id, 'provision', 'succeeded', 'gitops', 1 FROM clusters`)
	exec(`INSERT INTO operation_steps (operation_id, ordinal, name, state)
		SELECT o.id, s, 'step-' || s, 'succeeded' FROM operations o, generate_series(0, 10) s`)
	exec(`INSERT INTO credentials (id, tenant_id, name, provider, keys_set, fingerprint, key_id, nonce, ciphertext)
		SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN $1::uuid ELSE $2::uuid END, 'cred-' || i, 'hetzner', '{}', '', 'k', '\x00', '\x00'
		FROM generate_series(0, 1999) i`, tenant, other)
	exec(`INSERT INTO api_tokens (id, tenant_id, name, token_hash)
		SELECT gen_random_uuid(), $1, 'tok-' || i, sha256(i::text::bytea) FROM generate_series(0, 1999) i`, tenant)
	// The change log as writers leave it: a few keys per transaction (the
	// bulk inserts above wrote thousands in each of a few).
	exec(`DELETE FROM changes`)
	exec(`INSERT INTO changes (tx, key) SELECT greatest(1, pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1 - i / 2)::text::xid8, 'c:' || i
		FROM generate_series(0, 3999) i`)
	exec(`ANALYZE`)

	st := store.New(pool, nil)
	// position is where event id stands in the stream (streams resume there).
	position := func(id int64) store.Position {
		var tx int64
		if err := pool.QueryRow(ctx, `SELECT tx::text::bigint FROM events WHERE id = $1`, id).Scan(&tx); err != nil {
			t.Fatalf("event %d: %v", id, err)
		}
		return store.Position{Tx: uint64(tx), ID: id}
	}
	c, err := st.Cluster(ctx, tenant, "c-4321")
	if err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		name string
		read func() error
	}{
		{"cluster by name", func() error { _, err := st.Cluster(ctx, tenant, "c-1234"); return err }},
		{"list page", func() error {
			_, cursor, err := st.ListClusters(ctx, tenant, store.ListClustersParams{Limit: 50})
			if err == nil {
				_, _, err = st.ListClusters(ctx, tenant, store.ListClustersParams{Limit: 50, Cursor: cursor})
			}
			return err
		}},
		{"latest operation (status)", func() error { _, err := st.LatestOperation(ctx, c.ID); return err }},
		{"latest operations (list)", func() error { _, err := st.LatestOperations(ctx, []uuid.UUID{c.ID}); return err }},
		{"operations", func() error { _, err := st.Operations(ctx, tenant, c.ID, 20); return err }},
		{"events after id", func() error {
			_, _, err := st.EventsAfter(ctx, tenant, "", position(20000), 100)
			return err
		}},
		{"a cluster's events after id", func() error {
			_, _, err := st.EventsAfter(ctx, tenant, "c-4321", position(100), 100)
			return err
		}},
		{"changes since the feed's last look", func() error {
			_, cursor, _, err := st.Changes(ctx, store.ChangeCursor{})
			if err == nil {
				_, _, _, err = st.Changes(ctx, cursor)
			}
			return err
		}},
		{"cluster by id (/api)", func() error { _, err := st.ClusterOfTenant(ctx, tenant, c.ID); return err }},
		{"clusters by domain (/api)", func() error { _, err := st.ClustersByDomain(ctx, tenant, "c-1234.example.com"); return err }},
		{"credential by name", func() error { _, err := st.Credential(ctx, tenant, "cred-1000"); return err }},
		{"token by hash", func() error {
			_, err := st.Authenticate(ctx, []byte("no such hash, but the lookup is the same"))
			if err != nil && strings.Contains(err.Error(), "not found") {
				err = nil
			}
			return err
		}},
	}
	big := []string{"clusters", "operations", "operation_steps", "events", "credentials", "api_tokens", "changes"}
	for _, r := range reads {
		rec.take() // the EXPLAINs of the read before
		if err := r.read(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		queries := rec.take()
		if len(queries) == 0 {
			t.Fatalf("%s: no query recorded", r.name)
		}
		for _, q := range queries {
			if !strings.HasPrefix(strings.TrimSpace(strings.ToUpper(q.sql)), "SELECT") && !strings.Contains(strings.ToUpper(q.sql), "SELECT") {
				continue // a write (last use of a token): not a read's plan
			}
			var plan []map[string]any
			if err := pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.sql, q.args...).Scan(&plan); err != nil {
				t.Fatalf("%s: EXPLAIN %s: %v", r.name, q.sql, err)
			}
			for _, scan := range seqScans(plan[0]["Plan"].(map[string]any)) {
				for _, b := range big {
					if scan == b {
						raw, _ := json.MarshalIndent(plan, "", " ")
						t.Errorf("%s: sequential scan of %s in\n%s\nplan: %s", r.name, scan, q.sql, raw)
					}
				}
			}
		}
	}
}

// seqScans lists the relations a plan scans sequentially.
func seqScans(node map[string]any) []string {
	var out []string
	if node["Node Type"] == "Seq Scan" {
		out = append(out, node["Relation Name"].(string))
	}
	if kids, ok := node["Plans"].([]any); ok {
		for _, k := range kids {
			out = append(out, seqScans(k.(map[string]any))...)
		}
	}
	return out
}

// TestChangesReadByIndexWithoutStatistics: the change feed's look reads the
// rows since its previous look by index even before the change log has
// statistics (a new database, or autovacuum off or not yet round): the
// feed looks every 10 ms, and a sequential scan reads every row kept (up
// to an hour's writes) each time.
func TestChangesReadByIndexWithoutStatistics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, rec := recordingPool(t)
	for _, sql := range []string{
		`ALTER TABLE changes SET (autovacuum_enabled = false)`, // no ANALYZE behind the test's back
		// 20,000 keys, two per transaction, of transactions already ended.
		`INSERT INTO changes (tx, key) SELECT greatest(1, pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1 - i / 2)::text::xid8, 'c:' || i
		FROM generate_series(0, 19999) i`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var stats int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stats WHERE tablename = 'changes'`).Scan(&stats); err != nil || stats != 0 {
		t.Fatalf("the change log has statistics (%d, %v); the test needs none", stats, err)
	}
	st := store.New(pool, nil)
	_, cursor, _, err := st.Changes(ctx, store.ChangeCursor{})
	if err != nil {
		t.Fatal(err)
	}
	rec.take()
	if _, _, _, err := st.Changes(ctx, cursor); err != nil {
		t.Fatal(err)
	}
	looks := rec.take()
	if len(looks) != 1 {
		t.Fatalf("a look sent %d queries, want 1", len(looks))
	}
	var plan []map[string]any
	if err := pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+looks[0].sql, looks[0].args...).Scan(&plan); err != nil {
		t.Fatalf("EXPLAIN %s: %v", looks[0].sql, err)
	}
	for _, scan := range seqScans(plan[0]["Plan"].(map[string]any)) {
		if scan == "changes" {
			raw, _ := json.MarshalIndent(plan, "", " ")
			t.Fatalf("sequential scan of changes in\n%s\nplan: %s", looks[0].sql, raw)
		}
	}
}
