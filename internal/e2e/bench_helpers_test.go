package e2e

// Helpers of BenchmarkProvisionMany (bench_test.go). They copy the little of
// harness_test.go a benchmark needs, for testing.TB and with the service's
// lifetime in the caller's hands; every name starts with "bench" so the two
// files can change independently. Both send requests with harness_test.go's
// request and decodeObject.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// benchAppName marks the service's Postgres connections in pg_stat_activity,
// benchMeasureName the benchmark's own (its sampler and reports).
const (
	benchAppName     = "lok8s-bench-service"
	benchMeasureName = "lok8s-bench-measure"
)

type benchConfig struct {
	workers       int
	checkInterval time.Duration
	watched       time.Duration // the wait steps' interval when the watcher wakes them
	dbParams      string        // appended to the database URL, e.g. pool_max_conns=20
	mgmtQPS       int           // requests/s to the management cluster (burst twice that)
	wrapTransport func(http.RoundTripper) http.RoundTripper
	logs          *benchLogCounter
}

// benchService is a running service with a fresh tenant, for a benchmark.
type benchService struct {
	tb     testing.TB
	url    string
	db     *pgxpool.Pool // the benchmark's own pool on the service's database
	env    *testenv.Env
	token  string
	tenant string
	client *http.Client
}

// startBenchService starts the whole app as startService does; stop ends it
// (and must be called before the benchmark returns).
func startBenchService(tb testing.TB, c benchConfig) (s *benchService, stop func()) {
	tb.Helper()
	env := testenv.Shared(tb)
	kubeconfig := kubeconfigFile(tb, env)
	dbURL := dbtest.New(tb)
	serviceURL := dbURL + benchQuerySep(dbURL) + "application_name=" + benchAppName
	if c.dbParams != "" {
		serviceURL += "&" + c.dbParams
	}
	admin := newAdminToken()
	key, _ := seal.ParseKey(seal.NewKey())
	// The service's own lease timing (watch.DefaultLeaseDuration, …), not
	// the tests' 4 s one: under the load of thousands of clusters the
	// apiserver can take seconds to answer a renewal, and each lease lost
	// restarts the watcher, which lists every object again.
	election := testElection(dbURL)
	election.LeaseDuration, election.RenewDeadline, election.RetryPeriod = 0, 0, 0
	cfg := app.Config{
		Addr: "127.0.0.1:0", DatabaseURL: serviceURL, AdminToken: admin,
		EncryptionKey: key, MgmtKubeconfig: kubeconfig, Election: election,
		TemplatesDir: benchTemplates(tb), MgmtQPS: float32(c.mgmtQPS), MgmtBurst: 2 * c.mgmtQPS,
		Workers: c.workers, CheckInterval: c.checkInterval, WatchedCheckInterval: c.watched, ProvisionTimeout: time.Hour,
		JobMaxAttempts: 6, ShutdownTimeout: 30 * time.Second,
		WrapManagementTransport: c.wrapTransport,
		Logger:                  slog.New(c.logs),
	}
	addr, stopService := serve(tb, cfg, 45*time.Second)
	pool, err := pgxpool.New(context.Background(), dbURL+benchQuerySep(dbURL)+"application_name="+benchMeasureName)
	if err != nil {
		stopService()
		tb.Fatal(err)
	}
	stop = func() {
		pool.Close()
		stopService()
	}
	s = &benchService{tb: tb, url: "http://" + addr, db: pool, env: env,
		// No OpenAPI validation here: it would cost the client CPU the service competes for.
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 5 * time.Minute}}
	s.tenant = randomName("bench-")
	if _, err := s.do(http.MethodPost, "/v1/tenants", admin, "application/json", []byte(`{"name":"`+s.tenant+`"}`), http.StatusCreated); err != nil {
		stop()
		tb.Fatal(err)
	}
	tok, err := s.do(http.MethodPost, "/v1/tenants/"+s.tenant+"/tokens", admin, "application/json", []byte(`{"name":"bench"}`), http.StatusCreated)
	if err != nil {
		stop()
		tb.Fatal(err)
	}
	s.token, _ = tok["token"].(string)
	return s, stop
}

func benchQuerySep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

func (s *benchService) namespace() string { return "lok8s-" + s.tenant }

// do sends a request (token "" is the tenant's) and returns the decoded
// JSON object; it never calls Fatal, so goroutines may use it.
func (s *benchService) do(method, path, token, contentType string, body []byte, want int) (map[string]any, error) {
	status, data, err := request(s.client, s.url, cmp.Or(token, s.token), method, path, contentType, body)
	if err != nil {
		return nil, err
	}
	if status != want {
		return nil, fmt.Errorf("%s %s: %d, want %d: %s", method, path, status, want, data)
	}
	out, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return out, nil
}

// playInfrastructureProvider is the harness's, returning its error instead
// of failing the benchmark (it runs in goroutines).
func (s *benchService) playInfrastructureProvider(ctx context.Context, name string) error {
	if err := markProvisioned(ctx, s.env, s.namespace(), name, s.env.Kubeconfig()); err != nil {
		return err
	}
	return markPoolsReady(ctx, s.env, s.namespace(), name)
}

// benchTemplates is the repository's provider catalog with the Hetzner
// provider's addon requirement (a CNI and a CCM) taken out, so that the
// benchmark's specs need no addons: it measures the service's pipeline,
// not Helm installing charts into one shared workload cluster.
func benchTemplates(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	testenv.CopyTree(tb, "../../templates", dir)
	path := filepath.Join(dir, "providers", "hetzner", "provider.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	without := strings.Replace(string(raw), "\n  addons: [cni, ccm]\n", "\n", 1)
	if without == string(raw) {
		tb.Fatal("templates/providers/hetzner/provider.yaml no longer requires addons as the benchmark expects")
	}
	if err := os.WriteFile(path, []byte(without), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// markPoolsReady reports every MachineDeployment of the cluster ready, as
// CAPI does once its machines' nodes are Ready.
func markPoolsReady(ctx context.Context, env *testenv.Env, namespace, name string) error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mgmt.MachineDeploymentGVK.GroupVersion().WithKind("MachineDeploymentList"))
	if err := env.Client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{mgmt.ClusterNameLabel: name}); err != nil {
		return fmt.Errorf("list pools of %s: %w", name, err)
	}
	for i := range list.Items {
		md := &list.Items[i]
		replicas, _, _ := unstructured.NestedInt64(md.Object, "spec", "replicas")
		status := map[string]any{"observedGeneration": md.GetGeneration(), "replicas": replicas, "readyReplicas": replicas,
			"availableReplicas": replicas, "upToDateReplicas": replicas}
		if err := unstructured.SetNestedField(md.Object, status, "status"); err != nil {
			return err
		}
		if err := env.Client.Status().Update(ctx, md); err != nil {
			return fmt.Errorf("pool %s ready: %w", md.GetName(), err)
		}
	}
	return nil
}

// benchLogCounter is the service's slog handler: it counts records by
// message and prints the first 20 warnings and errors (a benchmark's log
// is always printed, so info lines are only counted).
type benchLogCounter struct {
	mu     sync.Mutex
	counts map[string]int
	shown  int
}

func newBenchLogCounter() *benchLogCounter {
	return &benchLogCounter{counts: map[string]int{}}
}

func (h *benchLogCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *benchLogCounter) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *benchLogCounter) WithGroup(string) slog.Handler                { return h }

func (h *benchLogCounter) Handle(_ context.Context, r slog.Record) error {
	key := r.Level.String() + " " + r.Message
	h.mu.Lock()
	h.counts[key]++
	show := r.Level >= slog.LevelWarn && h.shown < 20
	if show {
		h.shown++
	}
	h.mu.Unlock()
	if show {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		// Not tb.Logf: a benchmark's log is cut at 10 lines.
		fmt.Fprintf(os.Stdout, "service %s: %s%s\n", r.Level, r.Message, b.String())
	}
	return nil
}

func (h *benchLogCounter) snapshot() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.counts))
	for k, v := range h.counts {
		out[k] = v
	}
	return out
}

// benchRequests counts management apiserver requests by phase and by
// "verb resource", and the busiest second of each kind.
type benchRequests struct {
	start  time.Time
	phase  atomic.Int32
	mu     sync.Mutex
	counts []map[string]int         // per phase
	perSec map[string]map[int64]int // kind → second since start → requests
}

func newBenchRequests(phases int) *benchRequests {
	r := &benchRequests{start: time.Now(), perSec: map[string]map[int64]int{}}
	for range phases {
		r.counts = append(r.counts, map[string]int{})
	}
	return r
}

func (r *benchRequests) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		kind := benchRequestKind(req)
		sec := int64(time.Since(r.start) / time.Second)
		r.mu.Lock()
		r.counts[r.phase.Load()][kind]++
		if r.perSec[kind] == nil {
			r.perSec[kind] = map[int64]int{}
		}
		r.perSec[kind][sec]++
		r.mu.Unlock()
		return next.RoundTrip(req)
	})
}

func (r *benchRequests) phaseCounts(phase int) (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out, total := map[string]int{}, 0
	for k, v := range r.counts[phase] {
		out[k] = v
		total += v
	}
	return out, total
}

// peak is the most requests of kind seen in one second.
func (r *benchRequests) peak(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := 0
	for _, v := range r.perSec[kind] {
		m = max(m, v)
	}
	return m
}

// benchRequestKind names a request "verb resource[/subresource]" as the
// apiserver's audit log would (get, list, watch, apply, patch, create,
// update, delete), or "discovery".
func benchRequestKind(r *http.Request) string {
	p := strings.Trim(r.URL.Path, "/")
	var rest []string
	switch {
	case strings.HasPrefix(p, "api/v1/"):
		rest = strings.Split(strings.TrimPrefix(p, "api/v1/"), "/")
	case strings.HasPrefix(p, "apis/"):
		parts := strings.Split(strings.TrimPrefix(p, "apis/"), "/")
		if len(parts) <= 2 {
			return "discovery"
		}
		rest = parts[2:]
	default:
		return "discovery"
	}
	var resource, sub string
	var named bool
	if rest[0] == "namespaces" && len(rest) >= 3 {
		resource, named = rest[2], len(rest) >= 4
		if len(rest) >= 5 {
			sub = rest[4]
		}
	} else {
		resource, named = rest[0], len(rest) >= 2
		if len(rest) >= 3 {
			sub = rest[2]
		}
	}
	if sub != "" {
		resource += "/" + sub
	}
	verb := strings.ToLower(r.Method)
	switch r.Method {
	case http.MethodGet:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPatch:
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch") {
			verb = "apply"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	}
	return verb + " " + resource
}

// benchSample is one reading of the service's database.
type benchSample struct {
	at        time.Time
	phase     int
	running   int // river_job rows in state running: worker slots in use
	ready     int // available and due: jobs waiting for a worker slot
	snoozed   int // available or scheduled, due later
	applied   int // provision operations whose apply step succeeded
	inWait    int // ... whose control-plane-initialized step is running (snoozing or checking)
	provd     int // clusters Provisioned
	checks    int // attempts of the provision wait steps, summed
	failed    int // clusters Failed
	dbConns   int // the service's Postgres connections
	dbBusy    int // ... not idle (active or in a transaction)
	dbWaiting int // ... active and waiting on a lock
	// From the service's goroutines (it runs in this process):
	working   int // River jobs executing in a worker (slots really in use)
	throttled int // ... of them waiting in client-go's client-side rate limiter
	dbAcquire int // goroutines waiting for a connection of a pgx pool
}

const benchSampleSQL = `
SELECT
  (SELECT count(*) FROM river_job WHERE state = 'running'),
  (SELECT count(*) FROM river_job WHERE state = 'available' AND scheduled_at <= now()),
  (SELECT count(*) FROM river_job WHERE (state = 'available' AND scheduled_at > now()) OR state = 'scheduled'),
  (SELECT count(*) FROM operation_steps s JOIN operations o ON o.id = s.operation_id
     WHERE o.kind = 'provision' AND s.name = 'apply' AND s.state = 'succeeded'),
  (SELECT count(*) FROM operation_steps s JOIN operations o ON o.id = s.operation_id
     WHERE o.kind = 'provision' AND s.name = 'control-plane-initialized' AND s.state = 'running'),
  (SELECT count(*) FROM clusters WHERE phase = 'Provisioned'),
  (SELECT coalesce(sum(s.attempts), 0) FROM operation_steps s JOIN operations o ON o.id = s.operation_id
     WHERE o.kind = 'provision' AND s.name IN ('control-plane-initialized', 'kubeconfig', 'nodes-ready')),
  (SELECT count(*) FROM clusters WHERE phase = 'Failed'),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND state <> 'idle'),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND wait_event_type = 'Lock')`

func (s *benchService) sample(ctx context.Context, phase int) (benchSample, error) {
	x := benchSample{at: time.Now(), phase: phase}
	err := s.db.QueryRow(ctx, benchSampleSQL, benchAppName).Scan(&x.running, &x.ready, &x.snoozed,
		&x.applied, &x.inWait, &x.provd, &x.checks, &x.failed, &x.dbConns, &x.dbBusy, &x.dbWaiting)
	x.working, x.throttled, x.dbAcquire = benchGoroutines()
	return x, err
}

// benchGoroutines reads this process's goroutine stacks: how many run a
// River job's Work, how many of those wait in client-go's rate limiter,
// and how many goroutines (workers or API handlers) wait for a pooled
// Postgres connection. A river_job row stays "running" until River's
// completer flushes it, so this is the closer count of busy slots.
func benchGoroutines() (working, throttled, dbAcquire int) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	for _, block := range strings.Split(buf.String(), "\n\n") {
		var n int
		if _, err := fmt.Sscanf(block, "%d @", &n); err != nil {
			continue
		}
		if strings.Contains(block, "jobs.(*provisionWorker).Work") {
			working += n
			if strings.Contains(block, "flowcontrol.(*tokenBucket") {
				throttled += n
			}
		}
		if strings.Contains(block, "pgxpool.(*Pool).Acquire") && strings.Contains(block, "puddle") {
			dbAcquire += n
		}
	}
	return working, throttled, dbAcquire
}

// benchStats summarises samples of one phase.
type benchStats struct {
	n                                      int
	runningMax, readyMax, dbBusyMax, dbMax int
	runningMean, readyMean, dbBusyMean     float64
	dbWaitingMax                           int
	workingMax, throttledMax, dbAcquireMax int
	workingMean, throttledMean             float64
	// checksPerSec: wait-step attempts per second over the phase's samples.
	checksPerSec float64
}

func benchSummarise(samples []benchSample, phase int) benchStats {
	var st benchStats
	var run, ready, busy, working, throttled int
	var first, last *benchSample
	for i, x := range samples {
		if x.phase != phase {
			continue
		}
		if first == nil {
			first = &samples[i]
		}
		last = &samples[i]
		st.n++
		run, ready, busy = run+x.running, ready+x.ready, busy+x.dbBusy
		working, throttled = working+x.working, throttled+x.throttled
		st.workingMax, st.throttledMax, st.dbAcquireMax = max(st.workingMax, x.working), max(st.throttledMax, x.throttled), max(st.dbAcquireMax, x.dbAcquire)
		st.runningMax, st.readyMax = max(st.runningMax, x.running), max(st.readyMax, x.ready)
		st.dbBusyMax, st.dbMax, st.dbWaitingMax = max(st.dbBusyMax, x.dbBusy), max(st.dbMax, x.dbConns), max(st.dbWaitingMax, x.dbWaiting)
	}
	if first != nil && last.at.After(first.at) {
		st.checksPerSec = float64(last.checks-first.checks) / last.at.Sub(first.at).Seconds()
	}
	if st.n > 0 {
		st.runningMean, st.readyMean, st.dbBusyMean = float64(run)/float64(st.n), float64(ready)/float64(st.n), float64(busy)/float64(st.n)
		st.workingMean, st.throttledMean = float64(working)/float64(st.n), float64(throttled)/float64(st.n)
	}
	return st
}

// benchSeen describes where the clusters are, for a failure message.
func (s *benchService) benchSeen(ctx context.Context) string {
	var b strings.Builder
	rows, err := s.db.Query(ctx, `
		SELECT s.name, s.state, count(*), max(s.attempts), coalesce(max(nullif(s.error, '')), '')
		FROM operation_steps s JOIN operations o ON o.id = s.operation_id
		WHERE o.kind = 'provision' GROUP BY s.ordinal, s.name, s.state ORDER BY s.ordinal, s.state`)
	if err != nil {
		return "cannot read steps: " + err.Error()
	}
	defer rows.Close()
	for rows.Next() {
		var name, state, errMsg string
		var n, attempts int
		if err := rows.Scan(&name, &state, &n, &attempts, &errMsg); err != nil {
			return b.String() + "cannot read steps: " + err.Error()
		}
		fmt.Fprintf(&b, "  step %-12s %-10s %4d clusters (max attempts %d) %s\n", name, state, n, attempts, benchTrim(errMsg, 200))
	}
	phases, _ := s.db.Query(ctx, `SELECT phase, count(*), coalesce(max(nullif(message, '')), '') FROM clusters GROUP BY phase ORDER BY phase`)
	if phases != nil {
		defer phases.Close()
		for phases.Next() {
			var phase, msg string
			var n int
			_ = phases.Scan(&phase, &n, &msg)
			fmt.Fprintf(&b, "  phase %-12s %4d clusters %s\n", phase, n, benchTrim(msg, 200))
		}
	}
	var jobs string
	_ = s.db.QueryRow(ctx, `SELECT coalesce(string_agg(state || '=' || n, ' '), '') FROM (SELECT state::text, count(*) n FROM river_job GROUP BY 1 ORDER BY 1) j`).Scan(&jobs)
	fmt.Fprintf(&b, "  river_job %s\n", jobs)
	return b.String()
}

func benchTrim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// benchKinds formats request counts per cluster, busiest first.
func benchKinds(r *benchRequests, counts map[string]int, clusters int, withPeak bool) string {
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if counts[kinds[i]] != counts[kinds[j]] {
			return counts[kinds[i]] > counts[kinds[j]]
		}
		return kinds[i] < kinds[j]
	})
	var b strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&b, "    %-44s %6d  %6.2f/cluster", k, counts[k], float64(counts[k])/float64(clusters))
		if withPeak {
			fmt.Fprintf(&b, "  peak %d/s", r.peak(k))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// benchWithName returns the seed spec renamed to name.
func benchWithName(seed, name string) string {
	return strings.Replace(seed, "\n  name: prod\n", "\n  name: "+name+"\n", 1)
}

// markProvisioned writes the kubeconfig Secret of the CAPI Cluster
// namespace/name and then reports it as CAPI reports a cluster whose
// control plane is initialized and Available at once. Only the benchmark
// uses it, to measure the service's own throughput; the provisioning tests
// use the cloud stand-in (cloud_test.go), which brings a cluster up only as
// far as the addons the service installs allow.
func markProvisioned(ctx context.Context, env *testenv.Env, namespace, name string, kubeconfig []byte) error {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(mgmt.ClusterGVK)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		return fmt.Errorf("get cluster %s: %w", name, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-kubeconfig", Namespace: namespace,
			Labels: map[string]string{mgmt.ClusterNameLabel: name}},
		Type: "cluster.x-k8s.io/secret",
		Data: map[string][]byte{"value": kubeconfig},
	}
	if err := env.Client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create kubeconfig secret of %s: %w", name, err)
	}
	now := metav1.Now().UTC().Format(time.RFC3339)
	cond := func(t string) map[string]any {
		return map[string]any{"type": t, "status": "True", "reason": "Available", "message": "", "lastTransitionTime": now}
	}
	status := map[string]any{
		"phase":          "Provisioned",
		"conditions":     []any{cond("Available"), cond("ControlPlaneAvailable"), cond("InfrastructureReady"), cond("ControlPlaneInitialized")},
		"controlPlane":   map[string]any{"desiredReplicas": int64(3), "replicas": int64(3), "readyReplicas": int64(3), "availableReplicas": int64(3), "upToDateReplicas": int64(3)},
		"initialization": map[string]any{"infrastructureProvisioned": true, "controlPlaneInitialized": true},
	}
	if err := unstructured.SetNestedField(obj.Object, status, "status"); err != nil {
		return err
	}
	if err := env.Client.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("update cluster %s status: %w", name, err)
	}
	return nil
}
