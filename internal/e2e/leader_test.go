package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// replica is one server process of a fleet on one database.
type replica struct {
	name     string // a, b, c: the test's name for it
	p        *process
	identity string // its name in the watcher election (and observed_by)
	metrics  string // its /metrics URL
}

// observedWrite is a cluster's observed status as one sample of the rows
// found it: who wrote it last, and when.
type observedWrite struct {
	cluster, by string
	at          time.Time
}

// TestOneElectedWatcherAcrossReplicas: three server processes on one
// Postgres and one management cluster; 100 clusters submitted through all
// three in turn, while a stand-in for CAPI and the provider brings each up
// in stages. One replica at a time holds the management cluster's watcher
// lease and records observed status; it is killed (SIGKILL) mid-way;
// another takes the lease within its duration and carries on recording.
// Every cluster ends Provisioned with each step succeeded once, and the
// rows show one writer at a time: the first holder's writes all before
// the kill, the next holder's all after, none by the replica that never
// held the lease (wait steps write no observed status), and never two
// replicas reporting themselves leader at once.
//
// The first holder is started alone (so it wins the lease) with no
// workers: it runs the watcher and the API but no jobs, so killing it
// strands none (River's rescue of a killed worker's job is
// TestWorkerKilledResumesOnAnother's), and before the kill every change it
// records wakes a job on another replica.
func TestOneElectedWatcherAcrossReplicas(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	dbURL := dbtest.New(t)
	election := testElection(dbURL)
	adminToken := newAdminToken()
	common := []string{"DATABASE_URL=" + dbURL, "LOK8S_ADMIN_TOKEN=" + adminToken, "LOK8S_ENCRYPTION_KEY=" + seal.NewKey(),
		"LOK8S_MGMT_KUBECONFIG=" + kubeconfigFile(t, env), "LOK8S_TEMPLATES_DIR=" + benchTemplates(t),
		"LOK8S_CHECK_INTERVAL=2s", "LOK8S_WATCHED_CHECK_INTERVAL=10s", "LOK8S_PROVISION_TIMEOUT=5m",
		"LOK8S_MGMT_QPS=200", "LOK8S_MGMT_BURST=400"}
	start := func(name string, workers int) *replica {
		p := startProcess(t, append(common, fmt.Sprintf("LOK8S_WORKERS=%d", workers), "LOK8S_METRICS_ADDR=127.0.0.1:0")...)
		return &replica{name: name, p: p, identity: logged(t, p, "campaigning for the watcher lease", "identity"),
			metrics: "http://" + logged(t, p, "serving metrics", "addr") + "/metrics"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lease := &coordinationv1.Lease{}
	readLease := func() (holder string, renewed time.Time, transitions int32) {
		*lease = coordinationv1.Lease{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: election.Namespace, Name: election.Name}, lease); err != nil {
			if !apierrors.IsNotFound(err) {
				t.Logf("read the lease: %v", err)
			}
			return "", time.Time{}, 0
		}
		if lease.Spec.HolderIdentity != nil {
			holder = *lease.Spec.HolderIdentity
		}
		if lease.Spec.RenewTime != nil {
			renewed = lease.Spec.RenewTime.Time
		}
		if lease.Spec.LeaseTransitions != nil {
			transitions = *lease.Spec.LeaseTransitions
		}
		return holder, renewed, transitions
	}
	waitHolder := func(within time.Duration, ok func(string) bool) string {
		t.Helper()
		for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
			if h, _, _ := readLease(); ok(h) {
				return h
			}
			if time.Now().After(deadline) {
				h, _, _ := readLease()
				t.Fatalf("the lease's holder is %q after %s", h, within)
			}
		}
	}

	a := start("a", 0)
	waitHolder(30*time.Second, func(h string) bool { return h == a.identity })
	b, c := start("b", 8), start("c", 8)
	replicas := []*replica{a, b, c}
	byIdentity := map[string]*replica{a.identity: a, b.identity: b, c.identity: c}
	viaA := a.p.tenant(t, env, adminToken)
	viaA.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)

	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// The sampler: every 100 ms, who wrote each cluster's observed status
	// last and when, and how many live replicas report leading.
	var (
		mu         sync.Mutex
		writes     = map[observedWrite]bool{}
		maxLeaders int
		killed     bool
	)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			rows, err := db.Query(ctx, `SELECT name, observed_by, observed_at FROM clusters WHERE observed_at IS NOT NULL`)
			if err == nil {
				for rows.Next() {
					var w observedWrite
					if rows.Scan(&w.cluster, &w.by, &w.at) == nil {
						mu.Lock()
						writes[w] = true
						mu.Unlock()
					}
				}
				rows.Close()
			}
			mu.Lock()
			live := replicas
			if killed {
				live = replicas[1:]
			}
			mu.Unlock()
			leaders := 0
			for _, r := range live {
				if v, err := scrapeGauge(ctx, r.metrics, "lok8s_watcher_leader"); err == nil {
					leaders += int(v)
				}
			}
			mu.Lock()
			maxLeaders = max(maxLeaders, leaders)
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// The provider: each CAPI Cluster, once applied, comes up in three
	// stages seconds apart, each a change the watcher records.
	ns := viaA.namespace()
	played := make(chan error, 1)
	var playing atomic.Int64
	go playStagedProvider(ctx, env, db, ns, &playing, played)

	// 100 clusters through the three replicas in turn.
	const clusters = 100
	// The seed without addons or GitOps, as the benchmark's: the provider
	// catalog of benchTemplates requires none.
	seed := seedSpecWithout(t, seedBootstrap, seedGitOps)
	if !strings.Contains(seed, "\n  name: prod\n") {
		t.Fatal("the seed spec's name is no longer prod")
	}
	submitted := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clusters)
	names := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range names {
				r := replicas[i%len(replicas)]
				body := strings.Replace(seed, "\n  name: prod\n", fmt.Sprintf("\n  name: fleet-%03d\n", i), 1)
				if err := post(r.p.url+"/v1/clusters", viaA.token, body); err != nil {
					errs <- fmt.Errorf("via %s: %w", r.name, err)
				}
			}
		})
	}
	for i := range clusters {
		names <- i
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("100 clusters submitted in %s", time.Since(submitted).Round(time.Millisecond))

	// phases counts the clusters Provisioned and Failed (-1, -1 when the
	// database did not answer: a busy shared Postgres may refuse a
	// connection for a moment).
	phases := func() (provisioned, failed int) {
		t.Helper()
		if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE phase = 'Provisioned'), count(*) FILTER (WHERE phase = 'Failed') FROM clusters`).
			Scan(&provisioned, &failed); err != nil {
			t.Logf("count phases: %v", err)
			return -1, -1
		}
		return provisioned, failed
	}
	// Mid-way: the provider has begun a third of the clusters, so that
	// most of the changes to record come after the kill.
	defer func() {
		if t.Failed() {
			t.Logf("replica logs (warnings and errors):\n%s", warnings(a.p, b.p, c.p))
		}
	}()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, f := phases(); f > 0 {
			t.Fatalf("%d clusters Failed before the kill", f)
		}
		if playing.Load() >= clusters/3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provider began only %d clusters in 90s", playing.Load())
		}
	}

	p, _ := phases()
	t.Logf("the provider began %d clusters, %d Provisioned, %s after the first POST: killing a", playing.Load(), p, time.Since(submitted).Round(time.Millisecond))
	_, lastRenewByA, transitions := readLease()
	mu.Lock()
	killed = true
	mu.Unlock()
	killedAt := time.Now()
	if err := a.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.p.wait()
	next := waitHolder(3*testLeaseDuration, func(h string) bool { return h == b.identity || h == c.identity })
	takenAt := time.Now()
	_, _, transitionsAfter := readLease()
	acquired := lease.Spec.AcquireTime.Time
	newLeader := byIdentity[next]
	t.Logf("replica %s took the lease %s after the kill (lease duration %s); acquired %s after a's last renewal",
		newLeader.name, takenAt.Sub(killedAt).Round(time.Millisecond), election.LeaseDuration, acquired.Sub(lastRenewByA).Round(time.Millisecond))
	// Another replica takes over once the lease lapses, not before: a
	// lease duration after the holder's last renewal (a candidate counts
	// it from when it last saw the record change, up to one jittered
	// retry period later), plus up to one more retry period until its next
	// try, and some slack for a loaded machine.
	jittered := time.Duration(1.2 * float64(election.RetryPeriod))
	limit := election.LeaseDuration + 2*jittered + 2*time.Second
	if since := acquired.Sub(lastRenewByA); since < election.LeaseDuration || since > limit || takenAt.Sub(killedAt) > limit {
		t.Errorf("the lease was taken %s after the kill, %s after a's last renewal; want between the lease duration %s and %s",
			takenAt.Sub(killedAt), since, election.LeaseDuration, limit)
	}
	if transitionsAfter != transitions+1 {
		t.Errorf("lease transitions %d → %d, want one", transitions, transitionsAfter)
	}

	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		p, f := phases()
		if p >= 0 && p+f == clusters {
			if f > 0 {
				var name, msg string
				_ = db.QueryRow(ctx, `SELECT name, message FROM clusters WHERE phase = 'Failed' LIMIT 1`).Scan(&name, &msg)
				t.Fatalf("%d clusters Failed, e.g. %s: %s", f, name, msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clusters Provisioned 120s after the kill; the others:\n%s", p, clusters, unfinished(t, db))
		}
	}
	t.Logf("all %d clusters Provisioned %s after the first POST", clusters, time.Since(submitted).Round(time.Millisecond))
	select {
	case err := <-played:
		t.Fatalf("the provider stand-in: %v", err)
	default:
	}
	// The last stage's change reaches the rows shortly after the phase.
	time.Sleep(time.Second)
	cancel()
	<-sampled

	// Each step of each provision ran to success once.
	var badSteps []string
	rows, err := db.Query(context.Background(), `
		SELECT c.name, s.name, s.state, s.attempts FROM operation_steps s
		JOIN operations o ON o.id = s.operation_id JOIN clusters c ON c.id = o.cluster_id
		WHERE s.state NOT IN ('succeeded', 'skipped') OR (s.name IN ('detect', 'credentials', 'render', 'apply') AND s.attempts <> 1)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cluster, step, state string
		var attempts int
		if err := rows.Scan(&cluster, &step, &state, &attempts); err != nil {
			t.Fatal(err)
		}
		badSteps = append(badSteps, fmt.Sprintf("%s %s: %s after %d attempts", cluster, step, state, attempts))
	}
	rows.Close()
	var ops, succeeded int
	if err := db.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE state = 'succeeded') FROM operations`).Scan(&ops, &succeeded); err != nil {
		t.Fatal(err)
	}
	if len(badSteps) > 0 || ops != clusters || succeeded != clusters {
		t.Fatalf("%d operations (%d succeeded); steps not run to success once: %v", ops, succeeded, badSteps)
	}

	// One writer at a time: a's writes all before the kill, the next
	// holder's all after a's last, and nobody else's.
	mu.Lock()
	defer mu.Unlock()
	first, last := map[string]time.Time{}, map[string]time.Time{}
	clustersBy := map[string]map[string]bool{}
	for w := range writes {
		if f, ok := first[w.by]; !ok || w.at.Before(f) {
			first[w.by] = w.at
		}
		if w.at.After(last[w.by]) {
			last[w.by] = w.at
		}
		if clustersBy[w.by] == nil {
			clustersBy[w.by] = map[string]bool{}
		}
		clustersBy[w.by][w.cluster] = true
	}
	var summary []string
	for by := range first {
		name := "unknown"
		if r := byIdentity[by]; r != nil {
			name = r.name
		}
		summary = append(summary, fmt.Sprintf("%s (%s): %d clusters, %s – %s", name, by, len(clustersBy[by]),
			first[by].Format("15:04:05.000"), last[by].Format("15:04:05.000")))
	}
	sort.Strings(summary)
	t.Logf("observed status writers (%d samples; kill at %s):\n  %s", len(writes), killedAt.Format("15:04:05.000"), strings.Join(summary, "\n  "))
	if len(first) != 2 || first[a.identity].IsZero() || first[next].IsZero() {
		t.Fatalf("observed status was written by %d replicas; want exactly a (the first holder) and %s (the next):\n  %s",
			len(first), newLeader.name, strings.Join(summary, "\n  "))
	}
	if !last[a.identity].Before(killedAt) {
		t.Errorf("a wrote observed status at %s, after it was killed at %s", last[a.identity], killedAt)
	}
	if !first[next].After(last[a.identity]) {
		t.Errorf("%s wrote observed status at %s, before a's last write at %s: two writers at once", newLeader.name, first[next], last[a.identity])
	}
	// Observed status kept updating after the kill, by the new holder.
	if n := len(clustersBy[next]); n < clusters/2 {
		t.Errorf("the new holder recorded observed status of %d clusters after the kill; want at least %d", n, clusters/2)
	}
	if maxLeaders != 1 {
		t.Errorf("at most %d replicas reported lok8s_watcher_leader 1 at once; want exactly one", maxLeaders)
	}
}

// logged is the string attribute key of the process's first log record
// msg (waiting up to 20s for it).
func logged(t *testing.T, p *process, msg, key string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		sc := bufio.NewScanner(strings.NewReader(p.log()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				if v, _ := line[key].(string); v != "" {
					return v
				}
			}
		}
	}
	t.Fatalf("the process never logged %q with %s:\n%s", msg, key, p.log())
	return ""
}

// post submits spec YAML to url with token, expecting 202.
func post(url, token, spec string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(spec))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /v1/clusters: %d: %s", resp.StatusCode, body)
	}
	return nil
}

// scrapeGauge sums family's samples in the /metrics at url.
func scrapeGauge(ctx context.Context, url, family string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for line := range bytes.Lines(data) {
		var v float64
		if s := string(line); strings.HasPrefix(s, family+"{") || strings.HasPrefix(s, family+" ") {
			if _, err := fmt.Sscanf(s[strings.LastIndexByte(s, ' ')+1:], "%g", &v); err == nil {
				sum += v
			}
		}
	}
	return sum, nil
}

// playStagedProvider stands in for CAPI and the provider in namespace
// until ctx ends: the clusters whose objects the service has applied (the
// apply step succeeded, in db) are started in that order, one each
// providerPace (a cloud bringing up machines at its own rate, so that
// changes keep coming for the length of the test); each is reported
// infrastructure-ready a second after it starts, its control plane
// initialized and available (kubeconfig Secret written) a second after
// that, and its pools' machines ready a second after that. A failure is
// sent on errs; started counts the clusters begun.
func playStagedProvider(ctx context.Context, env *testenv.Env, db *pgxpool.Pool, namespace string, started *atomic.Int64, errs chan<- error) {
	seen := map[string]bool{}
	var pending []string
	var lastStart time.Time
	var wg sync.WaitGroup
	defer wg.Wait()
	report := func(err error) {
		if err != nil && ctx.Err() == nil {
			select {
			case errs <- err:
			default:
			}
		}
	}
	for ctx.Err() == nil {
		var applied []string
		rows, err := db.Query(ctx, `
			SELECT c.name FROM clusters c JOIN operations o ON o.cluster_id = c.id
			JOIN operation_steps s ON s.operation_id = o.id WHERE s.name = 'apply' AND s.state = 'succeeded'`)
		if err == nil {
			applied, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		report(err)
		for _, name := range applied {
			if !seen[name] {
				seen[name] = true
				pending = append(pending, name)
			}
		}
		if len(pending) > 0 && time.Since(lastStart) >= providerPace {
			name := pending[0]
			pending, lastStart = pending[1:], time.Now()
			started.Add(1)
			wg.Go(func() {
				stages := []func() error{
					func() error { return markInfrastructureReady(ctx, env, namespace, name) },
					func() error { return markProvisioned(ctx, env, namespace, name, env.Kubeconfig()) },
					func() error { return markPoolsReady(ctx, env, namespace, name) },
				}
				for _, stage := range stages {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
					for attempt := 1; ; attempt++ {
						err := stage()
						if err == nil || ctx.Err() != nil {
							break
						}
						if attempt == 10 {
							report(fmt.Errorf("%s: %w", name, err))
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			})
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// providerPace is how often the provider stand-in starts bringing up
// another cluster.
const providerPace = 300 * time.Millisecond

// markInfrastructureReady reports the CAPI Cluster's infrastructure
// provisioned and its control plane not yet initialized, as CAPI does
// while the first control-plane machine boots.
func markInfrastructureReady(ctx context.Context, env *testenv.Env, namespace, name string) error {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(mgmt.ClusterGVK)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	status := map[string]any{
		"phase": "Provisioning",
		"conditions": []any{
			map[string]any{"type": "InfrastructureReady", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": now},
			map[string]any{"type": "ControlPlaneInitialized", "status": "False", "reason": "WaitingForControlPlane", "message": "first machine booting", "lastTransitionTime": now},
		},
		"initialization": map[string]any{"infrastructureProvisioned": true, "controlPlaneInitialized": false},
	}
	if err := unstructured.SetNestedField(obj.Object, status, "status"); err != nil {
		return err
	}
	return env.Client.Status().Update(ctx, obj)
}

// unfinished describes the clusters not Provisioned: their steps not done.
func unfinished(t *testing.T, db *pgxpool.Pool) string {
	rows, err := db.Query(context.Background(), `
		SELECT c.name, c.phase, s.name, s.state, s.attempts, s.message, s.error, coalesce(c.observed::text, '')
		FROM clusters c JOIN operations o ON o.cluster_id = c.id JOIN operation_steps s ON s.operation_id = o.id
		WHERE c.phase <> 'Provisioned' AND s.state NOT IN ('succeeded', 'skipped') ORDER BY c.name, s.ordinal`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		var name, phase, step, state, msg, stepErr, observed string
		var attempts int
		if err := rows.Scan(&name, &phase, &step, &state, &attempts, &msg, &stepErr, &observed); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&out, "  %s %s: %s %s (%d attempts) %q %q observed %s\n", name, phase, step, state, attempts, msg, stepErr, observed)
	}
	return out.String()
}

// warnings are the processes' log lines above info.
func warnings(ps ...*process) string {
	var out strings.Builder
	for i, p := range ps {
		for line := range strings.Lines(p.log()) {
			if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
				fmt.Fprintf(&out, "  %c: %s", 'a'+i, line)
			}
		}
	}
	return out.String()
}
