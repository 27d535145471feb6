package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
)

// BenchmarkStatusReads (make bench-reads) measures GET
// /v1/clusters/{name}/status of the real server process against a
// reference measured in the same run: kube-apiserver (envtest, with etcd)
// answering a GET of one CAPI Cluster. Both hold LOK8S_BENCH_READS_CLUSTERS
// clusters (10,000); the same load tool (vegeta, as a library, HTTP/1.1
// keep-alive) drives both with the same schedule: every cluster once
// (cold), 1,000 and 2,000 requests/s of random clusters, and as fast as 64
// workers go (the most each serves). Then the service alone at twice its
// most, beyond LOK8S_MAX_IN_FLIGHT, with its RSS before, during and after.
// LOK8S_BENCH_READS_LOG, when set, is where the server's log (an access
// log line a request) is copied at the end.
func BenchmarkStatusReads(b *testing.B) {
	n := benchEnvInt(b, "LOK8S_BENCH_READS_CLUSTERS", 10000)
	dur := benchEnvDuration(b, "LOK8S_BENCH_READS_DURATION", 5*time.Second)
	maxWorkers := uint64(benchEnvInt(b, "LOK8S_BENCH_READS_WORKERS", 64))
	b.StopTimer()
	env := testenv.Shared(b)

	// The service: an API-only replica on a fresh database.
	dbURL := dbtest.New(b)
	adminToken := newAdminToken()
	metricsAddr := freeAddr(b)
	proc := benchReadsServer(b, "DATABASE_URL="+dbURL, "LOK8S_ADMIN_TOKEN="+adminToken,
		"LOK8S_ENCRYPTION_KEY="+seal.NewKey(), "LOK8S_MGMT_KUBECONFIG="+kubeconfigFile(b, env), "LOK8S_WORKERS=0",
		"LOK8S_METRICS_ADDR="+metricsAddr)
	token := benchReadsTenant(b, proc.url, adminToken)
	start := time.Now()
	benchReadsSeedDB(b, dbURL, n)
	seedDB := time.Since(start)

	// The reference: as many CAPI Clusters in envtest.
	start = time.Now()
	apiPath := benchReadsSeedAPIServer(b, env, n)
	seedAPI := time.Since(start)
	b.Logf("seeded %d clusters: Postgres %v, kube-apiserver %v", n, seedDB.Round(time.Millisecond), seedAPI.Round(time.Millisecond))

	name := func(i int) string { return fmt.Sprintf("c%05d", i) }
	service := benchSide{name: "service", client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}},
		target: func(i int) (string, http.Header) {
			return proc.url + "/v1/clusters/" + name(i) + "/status", http.Header{"Authorization": {"Bearer " + token}}
		}}
	apiTransport, apiHeader := benchAPIServerTransport(b, env.Config)
	apiserver := benchSide{name: "kube-apiserver", client: &http.Client{Transport: apiTransport},
		target: func(i int) (string, http.Header) {
			return strings.TrimSuffix(env.Config.Host, "/") + apiPath + name(i), apiHeader.Clone()
		}}
	// Both answer the same clusters: check once.
	for _, side := range []benchSide{service, apiserver} {
		if code, body := side.get(b, 0); code != http.StatusOK {
			url, _ := side.target(0)
			b.Fatalf("%s answered %d to %s: %s", side.name, code, url, body)
		}
	}

	rss := &rssSampler{pid: proc.Process.Pid, metricsURL: "http://" + metricsAddr + "/metrics"}
	type row struct {
		phase string
		m     [2]*vegeta.Metrics
	}
	var rows []row
	run := func(phase string, rate int, cold bool) [2]*vegeta.Metrics {
		var out [2]*vegeta.Metrics
		for i, side := range []benchSide{service, apiserver} {
			out[i] = side.attack(n, rate, dur, maxWorkers, cold)
		}
		rows = append(rows, row{phase, out})
		return out
	}
	loadBefore := loadavg()
	rssBefore := rss.read()
	run("every cluster once, 2,000/s (cold)", 2000, true)
	rssWarm := rss.read()
	run("1,000/s", 1000, false)
	run("2,000/s", 2000, false)
	most := run(fmt.Sprintf("most (%d workers)", maxWorkers), 0, false)

	// Overload: twice the most the service served, as an open-loop rate.
	over := int(2 * most[0].Throughput)
	warmMem := rss.memory()
	stop := rss.sample(50 * time.Millisecond)
	overload := service.attack(n, over, dur, 4096, false)
	rssPeak, peakMem := stop()
	settle := min(3*time.Second, 3*dur)
	time.Sleep(settle)
	rssAfter := rss.read()

	w := os.Stdout
	fmt.Fprintf(w, "\nload average (1, 5, 15 min) at the start %s, at the end %s: the 2 CPUs are shared by everything running\n", loadBefore, loadavg())
	fmt.Fprintf(w, "status reads, %d clusters; service: GET /v1/clusters/{name}/status (real server process); reference: kube-apiserver GET of the CAPI Cluster\n", n)
	fmt.Fprintf(w, "%-36s %-15s %9s %9s %9s %9s %8s\n", "load", "side", "rps", "p50", "p99", "max", "errors")
	for _, r := range rows {
		for i, side := range []string{"service", "kube-apiserver"} {
			m := r.m[i]
			fmt.Fprintf(w, "%-36s %-15s %9.0f %9s %9s %9s %8d\n", r.phase, side, m.Throughput,
				msOf(m.Latencies.P50), msOf(m.Latencies.P99), msOf(m.Latencies.Max), errorsOf(m))
		}
	}
	ratio := most[0].Throughput / most[1].Throughput
	fmt.Fprintf(w, "most served: service %.0f/s, kube-apiserver %.0f/s: ratio %.2f×\n", most[0].Throughput, most[1].Throughput, ratio)
	maxConns := cmp.Or(os.Getenv("LOK8S_MAX_CONNS"), strconv.Itoa(app.DefaultMaxConns)) // the server inherits the environment
	fmt.Fprintf(w, "overload at %d/s (2× the most; LOK8S_MAX_IN_FLIGHT 256, LOK8S_MAX_CONNS %s): %.0f/s answered 200, p50 %s p99 %s max %s, status codes %v\n",
		over, maxConns, overload.Throughput, msOf(overload.Latencies.P50), msOf(overload.Latencies.P99), msOf(overload.Latencies.Max), codes(overload))
	fmt.Fprintf(w, "server RSS: at start %d MB, after the cold pass %d MB, peak at 2× %d MB, %v after %d MB\n",
		rssBefore>>20, rssWarm>>20, rssPeak>>20, settle, rssAfter>>20)
	fmt.Fprintf(w, "server memory (Go runtime, MB), before the overload / at the sample nearest its RSS peak: %s\n", warmMem.against(peakMem))
	at1k, at2k := rows[1].m[0], rows[2].m[0]
	goal := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "goals: p99 ≤ 5 ms at 1,000/s: %s (%s); no errors at 2,000/s: %s (%d); ≥ 3× kube-apiserver: %s (%.2f×); RSS < 200 MB at 2×: %s (%d MB)\n",
		goal(at1k.Latencies.P99 <= 5*time.Millisecond), msOf(at1k.Latencies.P99), goal(errorsOf(at2k) == 0), errorsOf(at2k),
		goal(ratio >= 3), ratio, goal(rssPeak < 200<<20), rssPeak>>20)
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(at1k.Latencies.P99.Microseconds())/1000, "p99-ms@1000/s")
	b.ReportMetric(most[0].Throughput, "service-rps")
	b.ReportMetric(most[1].Throughput, "apiserver-rps")
	b.ReportMetric(float64(rssPeak>>20), "rss-MB@2x")
}

func msOf(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func errorsOf(m *vegeta.Metrics) int {
	return int(m.Requests) - m.StatusCodes["200"]
}

func codes(m *vegeta.Metrics) string {
	keys := make([]string, 0, len(m.StatusCodes))
	for k := range m.StatusCodes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m.StatusCodes[k]))
	}
	return strings.Join(parts, ", ")
}

// benchSide is one server the load tool drives.
type benchSide struct {
	name   string
	client *http.Client
	target func(i int) (string, http.Header)
}

func (s benchSide) get(b *testing.B, i int) (int, []byte) {
	url, h := s.target(i)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header = h
	resp, err := s.client.Do(req)
	if err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// attack sends GETs at rate (0: as fast as maxWorkers go): of every
// cluster once, in turn, when inOrder (however long that takes: a side
// slower than rate takes longer, and every cluster is read), else of
// random ones for dur.
func (s benchSide) attack(n, rate int, dur time.Duration, maxWorkers uint64, inOrder bool) *vegeta.Metrics {
	var next atomic.Int64
	targeter := func(t *vegeta.Target) error {
		i := rand.IntN(n)
		if inOrder {
			i = int(next.Add(1)-1) % n
		}
		t.Method = http.MethodGet
		t.URL, t.Header = s.target(i)
		return nil
	}
	workers := uint64(64)
	if rate == 0 {
		workers = maxWorkers
	}
	attacker := vegeta.NewAttacker(vegeta.Client(s.client), vegeta.Timeout(10*time.Second),
		vegeta.Workers(workers), vegeta.MaxWorkers(maxWorkers))
	var pacer vegeta.Pacer = vegeta.Rate{Freq: rate, Per: time.Second}
	if inOrder {
		pacer, dur = hitsPacer{Pacer: pacer, hits: uint64(n)}, 0
	}
	m := &vegeta.Metrics{}
	for res := range attacker.Attack(targeter, pacer, dur, s.name) {
		m.Add(res)
	}
	m.Close()
	return m
}

// hitsPacer paces as its Pacer does and stops after hits requests.
type hitsPacer struct {
	vegeta.Pacer
	hits uint64
}

func (p hitsPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= p.hits {
		return 0, true
	}
	return p.Pacer.Pace(elapsed, hits)
}

// benchReadsTenant makes the tenant whose token reads, and its first
// cluster (the seed spec, through the API), which the database seed copies.
func benchReadsTenant(b *testing.B, url, adminToken string) string {
	do := func(method, path, token, contentType, body string, want int) []byte {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
		}
		return data
	}
	do(http.MethodPost, "/v1/tenants", adminToken, "application/json", `{"name":"bench"}`, http.StatusCreated)
	var tok struct{ Token string }
	if err := json.Unmarshal(do(http.MethodPost, "/v1/tenants/bench/tokens", adminToken, "application/json", `{"name":"load"}`, http.StatusCreated), &tok); err != nil {
		b.Fatal(err)
	}
	do(http.MethodPut, "/v1/credentials/prod-credentials", tok.Token, "application/json",
		`{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`, http.StatusCreated)
	seed, err := os.ReadFile("../../examples/prod.yaml")
	if err != nil {
		b.Fatal(err)
	}
	do(http.MethodPost, "/v1/clusters", tok.Token, "application/yaml", string(seed), http.StatusAccepted)
	return tok.Token
}

// benchReadsSeedDB copies the tenant's cluster prod n times (c00000…) with
// its operation and steps, in SQL, and gives every copy a status half way
// through provisioning: steps done, one running with progress, CAPI's
// conditions and replicas.
func benchReadsSeedDB(b *testing.B, dbURL string, n int) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	observed := `{"phase":"Provisioned","conditions":[
		{"type":"Available","status":"False","reason":"WaitingForWorkers","message":"0 of 3 workers ready","lastTransitionTime":"2026-12-03T09:00:00Z"},
		{"type":"ControlPlaneAvailable","status":"True","reason":"Available","lastTransitionTime":"2026-12-03T08:58:00Z"},
		{"type":"InfrastructureReady","status":"True","reason":"Ready","lastTransitionTime":"2026-12-03T08:55:00Z"}],
		"initialization":{"infrastructureProvisioned":true,"controlPlaneInitialized":true},
		"controlPlane":{"desired":3,"ready":3,"available":3,"upToDate":3},
		"workers":{"desired":3,"ready":0,"available":0,"upToDate":3},
		"pools":{"general":{"desired":3,"ready":0,"available":0,"upToDate":3}}}`
	stmts := []string{
		// The copies are not news: no events, no announcements.
		`SET session_replication_role = replica`,
		`INSERT INTO clusters (id, tenant_id, name, provider, management_domain, namespace, spec, generation, machines, phase, message, observed)
		 SELECT gen_random_uuid(), c.tenant_id, 'c' || lpad(i::text, 5, '0'), c.provider, c.management_domain, c.namespace, c.spec,
		        1, c.machines, 'Provisioning', '', $2::jsonb
		 FROM clusters c, generate_series(0, $1 - 1) i WHERE c.name = 'prod'`,
		`INSERT INTO operations (id, tenant_id, cluster_id, kind, state, step, generation, requested_by, started_at)
		 SELECT gen_random_uuid(), n.tenant_id, n.id, o.kind, 'running', 'nodes-ready', 1, o.requested_by, now()
		 FROM clusters n, operations o WHERE n.name <> 'prod' AND o.cluster_id = (SELECT id FROM clusters WHERE name = 'prod')`,
		`INSERT INTO operation_steps (operation_id, ordinal, name, state, attempts, message, started_at, finished_at)
		 SELECT o.id, s.ordinal, s.name,
		        CASE WHEN s.name = 'nodes-ready' THEN 'running' WHEN s.ordinal < (SELECT ordinal FROM operation_steps x WHERE x.operation_id = s.operation_id AND x.name = 'nodes-ready') THEN 'succeeded' ELSE 'pending' END,
		        CASE WHEN s.name = 'nodes-ready' THEN 12 WHEN s.ordinal < (SELECT ordinal FROM operation_steps x WHERE x.operation_id = s.operation_id AND x.name = 'nodes-ready') THEN 1 ELSE 0 END,
		        CASE WHEN s.name = 'nodes-ready' THEN 'control plane available, 3/3 machines ready; pool general 0/3 ready' ELSE '' END,
		        CASE WHEN s.ordinal <= (SELECT ordinal FROM operation_steps x WHERE x.operation_id = s.operation_id AND x.name = 'nodes-ready') THEN now() - interval '5 minutes' END,
		        CASE WHEN s.ordinal < (SELECT ordinal FROM operation_steps x WHERE x.operation_id = s.operation_id AND x.name = 'nodes-ready') THEN now() - interval '4 minutes' END
		 FROM operations o, operation_steps s
		 WHERE o.cluster_id <> (SELECT id FROM clusters WHERE name = 'prod')
		   AND s.operation_id = (SELECT id FROM operations WHERE cluster_id = (SELECT id FROM clusters WHERE name = 'prod'))`,
		`SET session_replication_role = DEFAULT`,
		`ANALYZE`,
	}
	for i, s := range stmts {
		var args []any
		if i == 1 {
			args = []any{n, observed}
		}
		if _, err := conn.Exec(ctx, s, args...); err != nil {
			b.Fatalf("seed: %v\n%s", err, s)
		}
	}
}

// benchReadsSeedAPIServer creates n CAPI Clusters (c00000…, the spec the
// hcloud flavor renders) in a namespace of their own, and returns the path
// their GETs take, up to the name.
func benchReadsSeedAPIServer(b *testing.B, env *testenv.Env, n int) string {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-reads-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side limit
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	gvr := mgmt.ClusterGVK.GroupVersion().WithResource("clusters")
	clusters := dyn.Resource(gvr).Namespace(ns.Name)
	var wg sync.WaitGroup
	var failed atomic.Value
	next := atomic.Int64{}
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil {
					return
				}
				name := fmt.Sprintf("c%05d", i)
				obj := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
					"metadata": map[string]any{"name": name, "labels": map[string]any{mgmt.ClusterNameLabel: name}},
					"spec": map[string]any{
						"clusterNetwork": map[string]any{
							"pods":     map[string]any{"cidrBlocks": []any{"10.244.0.0/16"}},
							"services": map[string]any{"cidrBlocks": []any{"10.96.0.0/12"}},
						},
						"controlPlaneRef":   map[string]any{"apiGroup": "controlplane.cluster.x-k8s.io", "kind": "KubeadmControlPlane", "name": name + "-control-plane"},
						"infrastructureRef": map[string]any{"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "HetznerCluster", "name": name},
					},
				}}
				if _, err := clusters.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("create CAPI Clusters: %v", err)
	}
	return "/apis/cluster.x-k8s.io/v1beta2/namespaces/" + ns.Name + "/clusters/"
}

// benchAPIServerTransport is an HTTP/1.1 keep-alive transport to the
// apiserver with the admin's credentials, as the load tool has for the
// service (client-go's own would multiplex HTTP/2 and limit the rate).
func benchAPIServerTransport(b *testing.B, cfg *rest.Config) (http.RoundTripper, http.Header) {
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	h := http.Header{"Accept": {"application/json"}}
	if cfg.BearerToken != "" {
		h.Set("Authorization", "Bearer "+cfg.BearerToken)
	}
	return &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 1024, ForceAttemptHTTP2: false}, h
}

// rssSampler reads a process's resident set size from /proc, and what
// its Go runtime holds from its /metrics.
type rssSampler struct {
	pid        int
	metricsURL string
}

// goMemory is what the server's Go runtime reports (Prometheus's Go
// collector): the process's RSS at that moment, and the parts that make
// up most of it.
type goMemory struct {
	rss                                              int64
	heapInuse, heapIdle, heapReleased, stack, nextGC float64
	goroutines, goSys, heapAlloc, otherSys           float64
}

// goMemoryMetrics are the series goMemory reads, by name.
var goMemoryMetrics = map[string]func(*goMemory) *float64{
	"go_memstats_heap_inuse_bytes":    func(m *goMemory) *float64 { return &m.heapInuse },
	"go_memstats_heap_idle_bytes":     func(m *goMemory) *float64 { return &m.heapIdle },
	"go_memstats_heap_released_bytes": func(m *goMemory) *float64 { return &m.heapReleased },
	"go_memstats_heap_alloc_bytes":    func(m *goMemory) *float64 { return &m.heapAlloc },
	"go_memstats_stack_inuse_bytes":   func(m *goMemory) *float64 { return &m.stack },
	"go_memstats_next_gc_bytes":       func(m *goMemory) *float64 { return &m.nextGC },
	"go_memstats_sys_bytes":           func(m *goMemory) *float64 { return &m.goSys },
	"go_memstats_other_sys_bytes":     func(m *goMemory) *float64 { return &m.otherSys },
	"go_goroutines":                   func(m *goMemory) *float64 { return &m.goroutines },
}

// memory scrapes the server's /metrics (zero values when it cannot).
func (r *rssSampler) memory() goMemory {
	m := goMemory{rss: r.read()}
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if field, known := goMemoryMetrics[name]; ok && known {
			*field(&m), _ = strconv.ParseFloat(value, 64)
		}
	}
	return m
}

// against prints m and peak side by side.
func (m goMemory) against(peak goMemory) string {
	mb := func(v float64) string { return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) }
	return fmt.Sprintf("RSS %d / %d, heap in use %s / %s (allocated %s / %s), heap idle not released %s / %s, next GC at %s / %s, stacks %s / %s, runtime's own %s / %s, Go total %s / %s; goroutines %.0f / %.0f",
		m.rss>>20, peak.rss>>20, mb(m.heapInuse), mb(peak.heapInuse), mb(m.heapAlloc), mb(peak.heapAlloc),
		mb(m.heapIdle-m.heapReleased), mb(peak.heapIdle-peak.heapReleased), mb(m.nextGC), mb(peak.nextGC),
		mb(m.stack), mb(peak.stack), mb(m.otherSys), mb(peak.otherSys), mb(m.goSys-m.heapReleased), mb(peak.goSys-peak.heapReleased),
		m.goroutines, peak.goroutines)
}

// read returns the RSS in bytes, or -1 when it cannot be read.
func (r *rssSampler) read() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid))
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// sample reads the RSS every interval, and the Go runtime's figures every
// 5 intervals (a scrape costs the server a little), until the returned
// function is called, which returns the largest RSS seen and the scrape
// whose RSS was largest.
func (r *rssSampler) sample(every time.Duration) func() (int64, goMemory) {
	var peak int64
	var peakMem goMemory
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			if v := r.read(); v > peak {
				peak = v
			}
			if i%5 == 0 {
				if m := r.memory(); m.rss > peakMem.rss {
					peakMem = m
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, goMemory) { close(done); <-stopped; return peak, peakMem }
}

// benchReadsServer starts the server binary with env, its log (one JSON
// line a request) going to a file rather than through the benchmark, and
// returns its process once it answers /healthz; proc.url is its base URL.
func benchReadsServer(b *testing.B, env ...string) *benchProcess {
	addr := freeAddr(b)
	logFile, err := os.Create(filepath.Join(b.TempDir(), "server.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(serverBinary(b), "serve")
	cmd.Env = append(append(append(os.Environ(), "LOK8S_ADDR="+addr, "LOK8S_LOG_FORMAT=json"), leaseOf(env)...), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if keep := os.Getenv("LOK8S_BENCH_READS_LOG"); keep != "" {
			if data, err := os.ReadFile(logFile.Name()); err == nil {
				_ = os.WriteFile(keep, data, 0o644)
			}
		}
	})
	p := &benchProcess{Cmd: cmd, url: "http://" + addr}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(p.url + "/healthz"); err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			b.Fatalf("the server did not start:\n%s", log)
		}
	}
}

type benchProcess struct {
	*exec.Cmd
	url string
}

// loadavg is /proc/loadavg's three load averages.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
