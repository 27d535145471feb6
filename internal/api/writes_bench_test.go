package api_test

// BenchmarkCreateClusters: POST /v1/clusters from LOK8S_BENCH_WRITERS
// (default 32) concurrent clients through the real handler (no OpenAPI
// validator, the production pool of 20 connections, an event hub running)
// against a real Postgres, for LOK8S_BENCH_SECONDS (default 10) each, the
// clusters spread over LOK8S_BENCH_TENANTS tenants (default 1). It runs
// each mode on a fresh database: as the code is, with the events trigger
// taking the global advisory lock it took before migration 00017 (the
// reference), with the triggers notifying in the writing transaction as
// before migration 00080, then without the change log (no streams or read
// models would wake), without the event triggers at all (to show what
// each costs), and the store alone (the reference: the same transaction
// without HTTP or the spec's parsing, storeAlone), and prints for each the
// clusters per second sustained, POST p50/p99, the CPU per POST of this
// process and of its Postgres backends, and the database sessions sampled
// waiting on a lock.
// LOK8S_BENCH_MODES, a regular expression, runs only the modes it matches
// (e.g. "as is$" to profile the code as it is), LOK8S_BENCH_SQL=1
// prints how often each statement was sent per POST, and
// LOK8S_BENCH_SQL_BEFORE is SQL run on each mode's database before it
// starts (to try a schema change: an index dropped, a trigger changed). Run:
//
//	make bench-writes
//	go test ./internal/api -run '^$' -bench BenchmarkCreateClusters -benchtime=1x
//	LOK8S_BENCH_MODES='as is$' go test ./internal/api -run '^$' -bench BenchmarkCreateClusters -benchtime=1x -cpuprofile cpu.out

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/procstat"
	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/migrations"
)

// oldEmit is lok8s_emit as migration 00006 wrote it: every event writer
// takes one advisory lock, held until its transaction ends.
var oldEmit = fmt.Sprintf(`
CREATE OR REPLACE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(%d);
    INSERT INTO events (tenant_id, cluster_id, cluster, type, data)
    VALUES (tenant, cluster_id, cluster, kind, data) RETURNING id INTO event_id;
    PERFORM pg_notify('lok8s_events', tenant::text || ':' || event_id::text);
END;
$$ LANGUAGE plpgsql`, store.LockEventsCommitOrder)

// withoutAnnouncing is lok8s_emit as migration 00017 wrote it, without the
// NOTIFY and without recording a change (the bench also disables the read
// model's triggers).
const withoutAnnouncing = `
CREATE OR REPLACE FUNCTION lok8s_emit(tenant uuid, cluster_id uuid, cluster text, kind text, data jsonb) RETURNS void AS $$
DECLARE
    me xid8 := pg_current_xact_id();
BEGIN
    IF EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = lok8s_emit.tenant AND e.cluster = lok8s_emit.cluster AND e.tx > me) THEN
        RAISE EXCEPTION 'out of order' USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO events (tenant_id, cluster_id, cluster, type, data, tx) VALUES (tenant, cluster_id, cluster, kind, data, me);
END;
$$ LANGUAGE plpgsql`

func BenchmarkCreateClusters(b *testing.B) {
	writers := benchEnv("LOK8S_BENCH_WRITERS", 32)
	seconds := benchEnv("LOK8S_BENCH_SECONDS", 10)
	tenants := benchEnv("LOK8S_BENCH_TENANTS", 1)
	modes, err := regexp.Compile(os.Getenv("LOK8S_BENCH_MODES"))
	if err != nil {
		b.Fatalf("LOK8S_BENCH_MODES: %v", err)
	}
	for i := 0; i < b.N; i++ {
		for _, mode := range []string{"global lock (before 00017, reference)", "NOTIFY in the writing transaction (before 00080)", "as is",
			"as is without the change log (what announcing costs; streams and read models would not wake)",
			"as is without the event triggers (what events cost in all; no events)",
			storeAlone} {
			if !modes.MatchString(mode) {
				continue
			}
			// Each mode in its own sub-benchmark, so its server, pools, feed
			// and River client are closed before the next one starts (five
			// modes' pools at once would pass Postgres's 100 connections).
			b.Run(mode, func(b *testing.B) {
				b.StopTimer()
				s := setupWith(b, setupOptions{events: true, bench: true})
				if os.Getenv("LOK8S_BENCH_SQL") != "" {
					s.queries.bySQL = map[string]int64{}
				}
				switch {
				case strings.HasPrefix(mode, "global lock"):
					if _, err := s.pool.Exec(context.Background(), oldEmit); err != nil {
						b.Fatal(err)
					}
				case strings.HasPrefix(mode, "NOTIFY"):
					if _, err := s.pool.Exec(context.Background(), notifyingTriggers(b)); err != nil {
						b.Fatal(err)
					}
				case strings.HasSuffix(mode, "would not wake)"):
					// Neither the events' change nor the read model's.
					if _, err := s.pool.Exec(context.Background(), withoutAnnouncing); err != nil {
						b.Fatal(err)
					}
					if _, err := s.pool.Exec(context.Background(), `ALTER TABLE clusters DISABLE TRIGGER clusters_reads;
						ALTER TABLE operations DISABLE TRIGGER operations_reads`); err != nil {
						b.Fatal(err)
					}
				case strings.HasSuffix(mode, "no events)"):
					if _, err := s.pool.Exec(context.Background(), `ALTER TABLE clusters DISABLE TRIGGER clusters_events;
						ALTER TABLE operations DISABLE TRIGGER operations_events`); err != nil {
						b.Fatal(err)
					}
				}
				tokens := []string{s.adminToken}
				for t := 1; t < tenants; t++ {
					tokens = append(tokens, s.newTenant(fmt.Sprintf("tenant-%d", t)))
				}
				for _, tok := range tokens {
					s.putHetznerCredential(tok, "prod-credentials")
				}
				if extra := os.Getenv("LOK8S_BENCH_SQL_BEFORE"); extra != "" {
					if _, err := s.pool.Exec(context.Background(), extra); err != nil {
						b.Fatalf("LOK8S_BENCH_SQL_BEFORE: %v", err)
					}
				}
				create := postCluster(b, s, tokens, writers)
				if mode == storeAlone {
					create = storeCluster(b, s, tokens)
				}
				b.StartTimer()
				r := benchWrites(b, s, create, writers, time.Duration(seconds)*time.Second)
				b.StopTimer()
				fmt.Printf("BenchmarkCreateClusters, %s: %d writers, %d tenant(s), %s\n", mode, writers, tenants, r.duration.Round(time.Millisecond))
				fmt.Printf("  %d clusters created: %.0f clusters/s; POST p50 %s  p99 %s  max %s; %d errors\n",
					r.created, float64(r.created)/r.duration.Seconds(), r.pct(0.5), r.pct(0.99), r.pct(1), r.errors)
				fmt.Printf("  %.1f round trips to Postgres per POST (%.1f statements)\n",
					float64(r.roundTrips)/float64(max(r.created, 1)), float64(r.statements)/float64(max(r.created, 1)))
				if s.queries.bySQL != nil {
					printStatements(s.queries, r.created)
				}
				perPOST := func(d time.Duration) float64 {
					return float64(d) / float64(time.Millisecond) / float64(max(r.created, 1))
				}
				fmt.Printf("  CPU per POST: %.2f ms in this process (server and clients), %.2f ms in its Postgres backends (of which the change feed's %.2f ms): at most %.0f POST/s on %d cores\n",
					perPOST(r.selfCPU), perPOST(r.pgCPU), perPOST(r.feedCPU), float64(runtime.NumCPU())*1000/(perPOST(r.selfCPU)+perPOST(r.pgCPU)), runtime.NumCPU())
				fmt.Printf("  one Postgres on %d cores of its own, at this CPU per POST, would take at most %.0f POST/s\n",
					runtime.NumCPU(), float64(runtime.NumCPU())*1000/perPOST(r.pgCPU))
				fmt.Printf("  DB sessions of this database, sampled every 50 ms: mean %.1f active, %.1f waiting on a lock (%s)\n",
					r.active, r.waiting, r.waits)
				if mode == "as is" {
					b.ReportMetric(float64(r.created)/r.duration.Seconds(), "clusters/s")
					b.ReportMetric(float64(r.pct(0.99))/float64(time.Millisecond), "ms-p99")
				}
				if r.errors > 0 {
					b.Errorf("%s: %d POSTs failed: %s", mode, r.errors, r.firstError)
				}
			})
		}
	}
}

// feedApplication is the application_name of the change feed's
// connection in these tests, so the bench can tell its backend apart.
const feedApplication = "lok8s-change-feed"

// notifyingTriggers is the SQL that puts back the triggers' NOTIFY in the
// writing transaction: migration 00080's Down, but for dropping the change
// log (the feed keeps reading it, and finds nothing).
func notifyingTriggers(b *testing.B) string {
	up, err := fs.ReadFile(migrations.FS, "00080_changes.sql")
	if err != nil {
		b.Fatal(err)
	}
	_, down, ok := strings.Cut(string(up), "-- +goose Down")
	if !ok {
		b.Fatal("00080_changes.sql: no Down section")
	}
	down, _, ok = strings.Cut(down, "DROP FUNCTION lok8s_announce")
	if !ok {
		b.Fatal("00080_changes.sql: the Down section no longer drops lok8s_announce last")
	}
	return down
}

type writesResult struct {
	created, errors int64
	roundTrips      int64 // to Postgres, all writers: a statement or a batch each
	statements      int64 // sent to Postgres, all writers
	selfCPU, pgCPU  time.Duration
	feedCPU         time.Duration // of pgCPU, the change feed's backend
	firstError      string
	duration        time.Duration
	latencies       []time.Duration
	active, waiting float64
	waits           string
}

func (r *writesResult) pct(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(q*float64(len(r.latencies)-1))].Round(100 * time.Microsecond)
}

// storeAlone is the reference mode: the same transaction as a POST's,
// written by calling the store from the benchmark, without HTTP,
// authentication, the spec's parsing and validation, or the credential's
// lookup: what the service's own work costs is the difference from "as is".
const storeAlone = "the store alone (reference: a POST's transaction without HTTP or the spec's parsing)"

// createFunc creates cluster n; it returns "" or what went wrong.
type createFunc func(ctx context.Context, n int64) string

// postCluster POSTs the README's cluster, named c<n>, with tokens[n%len].
func postCluster(b *testing.B, s *bundle, tokens []string, writers int) createFunc {
	spec := string(seedSpec(b))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	return func(ctx context.Context, n int64) string {
		body := strings.Replace(spec, "name: prod", fmt.Sprintf("name: c%d", n), 1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/clusters", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokens[int(n)%len(tokens)])
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body) // to the end, or the client dials a new connection for the next POST
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Sprintf("status %d: %.512s", resp.StatusCode, answer)
		}
		return ""
	}
}

// storeCluster writes cluster c<n> of tokens[n%len]'s tenant through
// store.CreateCluster, with the row a POST of the README's cluster stores:
// one cluster per token is POSTed first and its row copied.
func storeCluster(b *testing.B, s *bundle, tokens []string) createFunc {
	ctx := context.Background()
	type template struct {
		actor store.Actor
		nc    store.NewCluster
	}
	var templates []template
	for i, tok := range tokens {
		name := fmt.Sprintf("template-%d", i)
		body := strings.Replace(string(seedSpec(b)), "name: prod", "name: "+name, 1)
		if r := s.do(http.MethodPost, "/v1/clusters", tok, "application/yaml", []byte(body)); r.status != http.StatusAccepted {
			b.Fatalf("POST %s: %d %s", name, r.status, r.body)
		}
		t := template{nc: store.NewCluster{Steps: s.steps(store.OpProvision)}}
		err := s.pool.QueryRow(ctx, `
			SELECT c.tenant_id, t.id, c.provider, c.management_domain, c.namespace, c.spec, coalesce(c.spec_shape, ''), c.machines
			FROM clusters c JOIN api_tokens t ON t.tenant_id = c.tenant_id AND t.token_hash = $2
			WHERE c.name = $1`, name, api.HashToken(tok)).Scan(&t.actor.TenantID, &t.actor.TokenID,
			&t.nc.Provider, &t.nc.ManagementDomain, &t.nc.Namespace, &t.nc.Spec, &t.nc.SpecShape, &t.nc.Machines)
		if err != nil {
			b.Fatalf("read %s's row: %v", name, err)
		}
		templates = append(templates, t)
	}
	return func(ctx context.Context, n int64) string {
		t := templates[int(n)%len(templates)]
		nc := t.nc
		nc.Name = fmt.Sprintf("c%d", n)
		if _, _, _, err := s.store.CreateCluster(ctx, t.actor, nc, s.enqueue); err != nil {
			return err.Error()
		}
		return ""
	}
}

// benchWrites creates clusters from writers goroutines for d and samples
// pg_stat_activity meanwhile.
func benchWrites(b *testing.B, s *bundle, create createFunc, writers int, d time.Duration) *writesResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r := &writesResult{}
	var mu sync.Mutex
	var seq atomic.Int64
	var wg sync.WaitGroup

	// Sampler: this database's sessions, active and waiting on a lock (on
	// a connection of its own: its queries are not counted).
	sampler, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer sampler.Close(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		waits := map[string]int{}
		var samples, active, waiting int
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				if samples > 0 {
					r.active, r.waiting = float64(active)/float64(samples), float64(waiting)/float64(samples)
				}
				var parts []string
				for k, v := range waits {
					parts = append(parts, fmt.Sprintf("%s %d", k, v))
				}
				sort.Strings(parts)
				r.waits = "sampled waits: " + strings.Join(parts, ", ")
				if len(parts) == 0 {
					r.waits = "no lock waits sampled"
				}
				return
			case <-tick.C:
			}
			rows, err := sampler.Query(context.Background(), `
				SELECT state = 'active', coalesce(wait_event_type, ''), coalesce(wait_event, '') FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
			if err != nil {
				continue
			}
			samples++
			for rows.Next() {
				var isActive bool
				var typ, ev string
				if rows.Scan(&isActive, &typ, &ev) != nil {
					continue
				}
				if isActive {
					active++
				}
				if typ == "Lock" {
					waiting++
					waits["Lock:"+ev]++
				}
			}
			rows.Close()
		}
	}()

	start, queries, statements := time.Now(), s.queries.n.Load(), s.queries.statements.Load()
	if s.queries.bySQL != nil {
		s.queries.mu.Lock()
		clear(s.queries.bySQL) // the setup's
		s.queries.mu.Unlock()
	}
	selfCPU, pgStart := processCPU(), backendCPU(b, sampler)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				problem := create(context.WithoutCancel(ctx), seq.Add(1))
				took := time.Since(t0)
				mu.Lock()
				if problem == "" {
					r.created++
					mine = append(mine, took)
				} else {
					r.errors++
					if r.firstError == "" {
						r.firstError = problem
					}
				}
				mu.Unlock()
			}
			mu.Lock()
			r.latencies = append(r.latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.duration = time.Since(start)
	r.roundTrips = s.queries.n.Load() - queries
	r.statements = s.queries.statements.Load() - statements
	r.selfCPU = processCPU() - selfCPU
	for pid, t := range backendCPU(b, sampler) {
		r.pgCPU += t.cpu - pgStart[pid].cpu
		if t.feed {
			r.feedCPU += t.cpu - pgStart[pid].cpu
		}
	}
	<-sampled
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	return r
}

// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendUse is a Postgres backend's CPU time so far, and whether it is the
// change feed's.
type backendUse struct {
	cpu  time.Duration
	feed bool
}

// backendCPU is the CPU time used so far by each Postgres backend of this
// database, read from /proc (Postgres on this machine); empty elsewhere.
func backendCPU(b *testing.B, conn *pgx.Conn) map[int]backendUse {
	out := map[int]backendUse{}
	rows, err := conn.Query(context.Background(), `SELECT pid, application_name = $1 FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`, feedApplication)
	if err != nil {
		b.Fatal(err)
	}
	type backend struct {
		PID  int32
		Feed bool
	}
	backends, err := pgx.CollectRows(rows, pgx.RowToStructByPos[backend])
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		pid := be.PID
		st, ok := procstat.Read(int(pid))
		if !ok {
			continue
		}
		out[int(pid)] = backendUse{cpu: st.CPU, feed: be.Feed}
	}
	return out
}

// printStatements prints each statement sent during the run and how often
// per POST, most frequent first.
func printStatements(q *queryCounter, created int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	type stmt struct {
		sql string
		n   int64
	}
	var all []stmt
	for sql, n := range q.bySQL {
		all = append(all, stmt{sql, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].sql < all[j].sql })
	for _, st := range all {
		sql := st.sql
		if len(sql) > 150 {
			sql = sql[:150] + "…"
		}
		fmt.Printf("    %6.2f  %s\n", float64(st.n)/float64(max(created, 1)), sql)
	}
}
