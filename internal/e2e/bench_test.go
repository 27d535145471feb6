package e2e

// BenchmarkProvisionMany submits many clusters at once through the HTTP API
// against the shared envtest management cluster and reports how the service
// copes. Run it (no Makefile needed) with:
//
//	export KUBEBUILDER_ASSETS=$(hack/test-assets.sh)
//	go test ./internal/e2e -run '^$' -bench BenchmarkProvisionMany -benchtime=1x
//
// Knobs (environment):
//
//	LOK8S_BENCH_CLUSTERS        clusters submitted at once (default 200; `make test` runs 10 as a smoke run)
//	LOK8S_BENCH_WORKERS         River worker slots (default 10, the server's default)
//	LOK8S_BENCH_CHECK_INTERVAL  how often wait re-checks the CAPI Cluster without a watcher (default 2s)
//	LOK8S_BENCH_WATCHED_INTERVAL how often it re-checks when the watcher wakes it (default: the server's, 2m)
//	LOK8S_BENCH_WAIT_HOLD       how long all clusters are left in wait (default max(5s, 3 check intervals))
//	LOK8S_BENCH_TIMEOUT         hard deadline of one run (default 10m)
//	LOK8S_BENCH_DB_PARAMS       appended to the service's database URL, e.g. pool_max_conns=20
//	LOK8S_BENCH_MGMT_QPS        requests/s to the management cluster (default 50, the server's; burst twice that)
//
// `make bench` passes BENCH_CLUSTERS, BENCH_MGMT_QPS and BENCH_WATCHED_INTERVAL through.
//
// Each b.N iteration runs the whole scenario once, on a service and
// database of its own; ns/op is one scenario from the first POST to all
// Provisioned (service start-up excluded), and the other metrics are means
// over the iterations (-benchtime=1x runs one). Everything is measured in
// one process: heap figures include the benchmark's own clients.
//
// The scenario: one tenant, one credential, N clusters (the seed's hcloud
// spec renamed, without addons and GitOps) POSTed concurrently → time until every cluster's apply step
// succeeded ("all-applied") → all clusters held in wait while River's
// running jobs (worker slots in use) are sampled every 100 ms → the
// benchmark plays the infrastructure provider for all → time until all
// are Provisioned (the provider reports each cluster's control plane and
// pools ready at once: the service's pipeline is measured, not a cloud's
// pace; the provisioning tests play a faithful cloud). Management apiserver requests are counted through the
// service's transport (WrapManagementTransport), by phase and by verb;
// checks are the attempts of the provision's wait steps
// (control-plane-initialized, kubeconfig, nodes-ready), per second of
// each phase; per cluster, "reported → Provisioned" runs from the moment
// the benchmark finished playing the provider for it to its operation's end.

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/testenv"
)

type benchParams struct {
	clusters      int
	workers       int
	checkInterval time.Duration
	watched       time.Duration
	hold          time.Duration
	timeout       time.Duration
	dbParams      string
	mgmtQPS       int
	seed          string
}

func BenchmarkProvisionMany(b *testing.B) {
	p := benchParams{
		clusters:      benchEnvInt(b, "LOK8S_BENCH_CLUSTERS", 200),
		workers:       benchEnvInt(b, "LOK8S_BENCH_WORKERS", 10),
		checkInterval: benchEnvDuration(b, "LOK8S_BENCH_CHECK_INTERVAL", 2*time.Second),
		watched:       benchEnvDuration(b, "LOK8S_BENCH_WATCHED_INTERVAL", jobs.DefaultWatchedCheckInterval),
		timeout:       benchEnvDuration(b, "LOK8S_BENCH_TIMEOUT", 10*time.Minute),
		dbParams:      os.Getenv("LOK8S_BENCH_DB_PARAMS"),
		mgmtQPS:       benchEnvInt(b, "LOK8S_BENCH_MGMT_QPS", 50),
	}
	p.hold = benchEnvDuration(b, "LOK8S_BENCH_WAIT_HOLD", max(5*time.Second, 3*p.checkInterval))
	seed, err := os.ReadFile("../../examples/prod.yaml")
	if err != nil {
		b.Fatal(err)
	}
	// The service's own throughput, not Helm's: the seed without its
	// addons and GitOps (the benchmark's provider catalog needs none, see
	// benchTemplates).
	p.seed = string(seed)
	for _, section := range []string{seedBootstrap, seedGitOps} {
		without := strings.Replace(p.seed, section, "", 1)
		if without == p.seed {
			b.Fatalf("examples/prod.yaml no longer has the section the benchmark removes:\n%s", section)
		}
		p.seed = without
	}
	if !strings.Contains(benchWithName(p.seed, "x"), "\n  name: x\n") {
		b.Fatal("examples/prod.yaml: cannot rename its metadata.name")
	}
	b.StopTimer()
	_ = testenv.Shared(b) // start envtest outside the measured time

	sums := map[string]float64{}
	var order []string
	for range b.N {
		for _, m := range benchScenario(b, p) {
			if _, ok := sums[m.unit]; !ok {
				order = append(order, m.unit)
			}
			sums[m.unit] += m.value
		}
	}
	for _, unit := range order {
		b.ReportMetric(sums[unit]/float64(b.N), unit)
	}
}

type benchMetric struct {
	value float64
	unit  string
}

// The phases requests and samples are attributed to.
const (
	benchPhaseApply     = iota // first POST → all applied
	benchPhaseWait             // all applied → the provider plays its part
	benchPhaseProvision        // → all Provisioned
	benchPhases
)

var benchPhaseNames = [benchPhases]string{"submit→all-applied", "held in wait", "→all-Provisioned"}

func benchScenario(b *testing.B, p benchParams) []benchMetric {
	b.Helper()
	logs := newBenchLogCounter()
	reqs := newBenchRequests(benchPhases)
	s, stop := startBenchService(b, benchConfig{
		workers: p.workers, checkInterval: p.checkInterval, watched: p.watched, dbParams: p.dbParams, mgmtQPS: p.mgmtQPS,
		wrapTransport: reqs.wrap, logs: logs,
	})
	defer stop()
	if _, err := s.do(http.MethodPut, "/v1/credentials/prod-credentials", "", "application/json",
		[]byte(`{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`), http.StatusCreated); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	heapBase := benchHeap()

	// The sampler reads the service's database every 100 ms or, when a
	// count takes longer than 20 ms (thousands of clusters on a busy
	// machine), every five times as long as the last one took: it keeps
	// to a fifth of a Postgres core, not taking the CPU it measures.
	var (
		mu      sync.Mutex
		samples []benchSample
		last    benchSample
		sampErr error
	)
	samplerDone := make(chan struct{})
	stopSampler := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for {
			began := time.Now()
			x, err := s.sample(ctx, int(reqs.phase.Load()))
			took := time.Since(began)
			mu.Lock()
			if err == nil {
				samples, last = append(samples, x), x
			} else if ctx.Err() == nil {
				sampErr = err
			}
			mu.Unlock()
			select {
			case <-time.After(max(100*time.Millisecond, 5*took) - took):
			case <-stopSampler:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { close(stopSampler); <-samplerDone }()

	fail := func(format string, args ...any) {
		b.Helper()
		seenCtx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		mu.Lock()
		l, serr := last, sampErr
		mu.Unlock()
		var req strings.Builder
		for ph := range benchPhases {
			counts, total := reqs.phaseCounts(ph)
			if total > 0 {
				fmt.Fprintf(&req, "  %s: %d requests\n%s", benchPhaseNames[ph], total, benchKinds(reqs, counts, p.clusters, false))
			}
		}
		b.Fatalf("%s\nwhat it saw (phase %s, %d clusters):\n  last sample: %+v (sampler error: %v)\n%s  service log records: %v\n  apiserver requests:\n%s",
			fmt.Sprintf(format, args...), benchPhaseNames[reqs.phase.Load()], p.clusters, l, serr, s.benchSeen(seenCtx), logs.snapshot(), req.String())
	}
	// waitFor polls the sampler's readings until done says so.
	waitFor := func(what string, done func(benchSample) bool) {
		b.Helper()
		for {
			mu.Lock()
			l := last
			mu.Unlock()
			if l.failed > 0 {
				fail("%d clusters Failed while waiting for %s", l.failed, what)
			}
			if !l.at.IsZero() && done(l) {
				return
			}
			select {
			case <-ctx.Done():
				fail("deadline (%s) passed while waiting for %s", p.timeout, what)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	// Submit all clusters at once.
	names := make([]string, p.clusters)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%04d", i)
	}
	latencies := make([]time.Duration, p.clusters)
	errs := make([]error, p.clusters)
	var overloaded atomic.Int64
	conns := make(chan struct{}, benchConns)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(benchWithName(p.seed, name))
			<-gate
			t := time.Now()
			// The client opens at most benchConns connections (the
			// server refuses more than 512 not yet authenticated).
			conns <- struct{}{}
			defer func() { <-conns }()
			for {
				_, errs[i] = s.do(http.MethodPost, "/v1/clusters", "", "application/yaml", body, http.StatusAccepted)
				// A replica past LOK8S_MAX_IN_FLIGHT answers 503 with
				// Retry-After (1 s): retry as a client would.
				if errs[i] == nil || !strings.Contains(errs[i].Error(), ": 503, want 202") {
					break
				}
				overloaded.Add(1)
				time.Sleep(time.Second)
			}
			latencies[i] = time.Since(t)
		}()
	}
	loadStart := benchLoadAvg()
	cpuStart := s.readCPU(ctx)
	b.StartTimer()
	t0 := time.Now()
	close(gate)
	wg.Wait()
	postsDone := time.Since(t0)
	var postErrs []string
	for _, err := range errs {
		if err != nil {
			postErrs = append(postErrs, err.Error())
		}
	}
	if len(postErrs) > 0 {
		fail("%d of %d POSTs failed, e.g.: %s", len(postErrs), p.clusters, strings.Join(postErrs[:min(3, len(postErrs))], "; "))
	}

	waitFor("all clusters applied", func(x benchSample) bool { return x.applied >= p.clusters })
	reqs.phase.Store(benchPhaseWait)
	waitStart := time.Now()
	b.StopTimer()
	applyFinished, applyLatencies, err := s.benchApplyTimes(ctx)
	if err != nil {
		fail("read apply times: %v", err)
	}
	allApplied := applyFinished.Sub(t0)
	cpuApplied := s.readCPU(ctx).sub(cpuStart)
	heapApplied := benchHeap()
	goroutines := runtime.NumGoroutine()
	b.StartTimer()

	// All clusters sit in wait: hold them there and watch the worker slots.
	select {
	case <-ctx.Done():
		fail("deadline (%s) passed while holding the clusters in wait", p.timeout)
	case <-time.After(p.hold):
	}
	mu.Lock()
	l := last
	mu.Unlock()
	if l.inWait != p.clusters || l.failed > 0 {
		fail("after the hold, %d of %d clusters are in wait and %d Failed", l.inWait, p.clusters, l.failed)
	}
	held := time.Since(waitStart)

	// Play the infrastructure provider for every cluster.
	reqs.phase.Store(benchPhaseProvision)
	tPlay := time.Now()
	work := make(chan string)
	playErrs := make(chan error, p.clusters)
	var playedMu sync.Mutex
	playedAt := make(map[string]time.Time, p.clusters)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := s.playInfrastructureProvider(ctx, name); err != nil {
					playErrs <- err
				}
				playedMu.Lock()
				playedAt[name] = time.Now()
				playedMu.Unlock()
			}
		}()
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(playErrs)
	if err := <-playErrs; err != nil {
		fail("playing the infrastructure provider: %v", err)
	}
	played := time.Since(tPlay)
	waitFor("all clusters Provisioned", func(x benchSample) bool { return x.provd >= p.clusters })
	b.StopTimer()
	mu.Lock()
	all := append([]benchSample(nil), samples...)
	mu.Unlock()

	// What the API says of every cluster.
	var bad []string
	var badMu sync.Mutex
	names2 := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names2 {
				st, err := s.do(http.MethodGet, "/v1/clusters/"+name+"/status", "", "", nil, http.StatusOK)
				if err == nil && (st["phase"] != "Provisioned" || stepState(st, "kubeconfig") != "succeeded") {
					err = fmt.Errorf("%s: phase %v, kubeconfig step %q", name, st["phase"], stepState(st, "kubeconfig"))
				}
				if err != nil {
					badMu.Lock()
					bad = append(bad, err.Error())
					badMu.Unlock()
				}
			}
		}()
	}
	for _, name := range names {
		names2 <- name
	}
	close(names2)
	wg.Wait()
	if len(bad) > 0 {
		fail("%d clusters are not Provisioned through the API, e.g. %s", len(bad), strings.Join(bad[:min(3, len(bad))], "; "))
	}
	var waitChecksAvg float64
	var waitChecksMax int
	if err := s.db.QueryRow(ctx, `SELECT avg(attempts)::float8, max(attempts) FROM operation_steps WHERE name = 'control-plane-initialized'`).
		Scan(&waitChecksAvg, &waitChecksMax); err != nil {
		fail("read wait attempts: %v", err)
	}
	lastProvisioned, reported, err := s.benchReportedToProvisioned(ctx, playedAt)
	if err != nil {
		fail("read provision times: %v", err)
	}
	allProvisioned := lastProvisioned.Sub(tPlay)
	floor, err := s.applyFloor(ctx, false)
	if err != nil {
		fail("the reference (the same objects applied by a bare client): %v", err)
	}
	floorCreate, err := s.applyFloor(ctx, true)
	if err != nil {
		fail("the reference (the same objects created by a bare client): %v", err)
	}

	// Report.
	n := float64(p.clusters)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	applySt, waitSt, provSt := benchSummarise(all, benchPhaseApply), benchSummarise(all, benchPhaseWait), benchSummarise(all, benchPhaseProvision)
	applyReqs, applyTotal := reqs.phaseCounts(benchPhaseApply)
	waitReqs, waitTotal := reqs.phaseCounts(benchPhaseWait)
	provReqs, provTotal := reqs.phaseCounts(benchPhaseProvision)
	total := applyTotal + waitTotal + provTotal
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }

	var r strings.Builder
	fmt.Fprintf(&r, "BenchmarkProvisionMany: %d clusters, %d workers, check interval %s (watched %s), %d CPUs, DB params %q, management %d requests/s\n",
		p.clusters, p.workers, p.checkInterval, p.watched, runtime.NumCPU(), p.dbParams, p.mgmtQPS)
	fmt.Fprintf(&r, "  load average (1, 5, 15 min; the machine's, not only this run's): %s at the first POST, %s at the end\n", loadStart, benchLoadAvg())
	fmt.Fprintf(&r, "  POST /v1/clusters ×%d at once (%d connections): all answered in %s; latency (with retries after 503) p50 %s  p99 %s  max %s; 503 overloaded answers: %d\n",
		p.clusters, benchConns, postsDone.Round(time.Millisecond), benchPct(latencies, 0.50), benchPct(latencies, 0.99), latencies[len(latencies)-1].Round(time.Millisecond), overloaded.Load())
	fmt.Fprintf(&r, "  all-applied: %s after the first POST; per cluster (created → apply succeeded) p50 %s  p99 %s\n",
		allApplied.Round(time.Millisecond), benchPct(applyLatencies, 0.50), benchPct(applyLatencies, 0.99))
	fmt.Fprintf(&r, "  CPU per cluster, first POST → all applied (bench_cpu_test.go): %s\n", cpuApplied.perCluster(p.clusters))
	fmt.Fprintf(&r, "  reference, same run (bench_floor_test.go): %s\n", floor)
	fmt.Fprintf(&r, "  reference, same run (bench_floor_test.go): %s\n", floorCreate)
	fmt.Fprintf(&r, "  worker slots (%d), sampled every 100 ms (or 5× a count's time): river_job rows 'running' | jobs in Work (goroutines), of them in client-go's rate limiter | due jobs waiting for a slot | service DB:\n", p.workers)
	for _, x := range []struct {
		name string
		st   benchStats
	}{{benchPhaseNames[0], applySt}, {benchPhaseNames[1] + fmt.Sprintf(" (%s)", held.Round(time.Millisecond)), waitSt}, {benchPhaseNames[2], provSt}} {
		fmt.Fprintf(&r, "    %-26s running max %2d mean %5.2f | working max %2d mean %5.2f, throttled max %2d mean %5.2f | due max %3d mean %5.1f | conns max %d, busy max %d mean %.2f, lock waits max %d, pool waiters max %d (%d samples)\n",
			x.name, x.st.runningMax, x.st.runningMean, x.st.workingMax, x.st.workingMean, x.st.throttledMax, x.st.throttledMean,
			x.st.readyMax, x.st.readyMean, x.st.dbMax, x.st.dbBusyMax, x.st.dbBusyMean, x.st.dbWaitingMax, x.st.dbAcquireMax, x.st.n)
	}
	fmt.Fprintf(&r, "  wait checks: control-plane-initialized per cluster mean %.1f, max %d; checks/s (all wait steps) %s %.1f | %s %.1f | %s %.1f\n",
		waitChecksAvg, waitChecksMax, benchPhaseNames[0], applySt.checksPerSec, benchPhaseNames[1], waitSt.checksPerSec, benchPhaseNames[2], provSt.checksPerSec)
	fmt.Fprintf(&r, "  heap in use after all applied: %.1f MiB (%.1f MiB before submitting; %.1f KiB/cluster); %d goroutines\n",
		mib(heapApplied), mib(heapBase), (mib(heapApplied)-mib(heapBase))*1024/n, goroutines)
	fmt.Fprintf(&r, "  all-Provisioned: %s after the provider started playing (playing took %s); per cluster, reported → Provisioned p50 %s  p99 %s  max %s\n",
		allProvisioned.Round(time.Millisecond), played.Round(time.Millisecond), benchPct(reported, 0.50), benchPct(reported, 0.99), benchPct(reported, 1))
	fmt.Fprintf(&r, "  management apiserver requests: %d in all, %.1f per cluster\n", total, float64(total)/n)
	fmt.Fprintf(&r, "   %s: %d (%.2f/cluster)\n%s", benchPhaseNames[0], applyTotal, float64(applyTotal)/n, benchKinds(reqs, applyReqs, p.clusters, true))
	fmt.Fprintf(&r, "   %s for %s: %d (%.2f/cluster, %.3f/cluster/s)\n%s", benchPhaseNames[1], held.Round(time.Millisecond), waitTotal, float64(waitTotal)/n, float64(waitTotal)/n/held.Seconds(), benchKinds(reqs, waitReqs, p.clusters, false))
	fmt.Fprintf(&r, "   %s: %d (%.2f/cluster)\n%s", benchPhaseNames[2], provTotal, float64(provTotal)/n, benchKinds(reqs, provReqs, p.clusters, false))
	fmt.Fprintf(&r, "  service log records: %v\n", logs.snapshot())
	// A benchmark's log is cut at 10 lines: the report goes to stdout.
	fmt.Fprint(os.Stdout, r.String())

	return []benchMetric{
		{allApplied.Seconds(), "s-all-applied"},
		{floor.took.Seconds(), "s-floor-applied"},
		{floorCreate.took.Seconds(), "s-floor-created"},
		{ms(benchPct(latencies, 0.50)), "ms-post-p50"},
		{ms(benchPct(latencies, 0.99)), "ms-post-p99"},
		{float64(waitSt.runningMax), "wait-slots-max"},
		{waitSt.runningMean, "wait-slots-mean"},
		{waitSt.workingMean, "wait-working-mean"},
		{waitSt.throttledMean, "wait-throttled-mean"},
		{float64(total) / n, "apireq/cluster"},
		{float64(applyTotal) / n, "apireq-to-applied/cluster"},
		{float64(waitTotal) / n / held.Seconds(), "apireq-in-wait/cluster/s"},
		{mib(heapApplied), "MiB-heap-applied"},
		{allProvisioned.Seconds(), "s-all-provisioned"},
		{benchPct(reported, 0.99).Seconds(), "s-reported-to-provisioned-p99"},
		{waitSt.checksPerSec, "wait-checks/s"},
	}
}

// benchLoadAvg is the first three fields of /proc/loadavg ("?" where there is none).
func benchLoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// benchConns is how many requests the benchmark's client sends at once.
const benchConns = 128

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchReportedToProvisioned returns when the last provision operation
// finished and, sorted, how long each cluster took from the moment the
// provider was played for it to the end of its provision operation.
func (s *benchService) benchReportedToProvisioned(ctx context.Context, playedAt map[string]time.Time) (time.Time, []time.Duration, error) {
	rows, err := s.db.Query(ctx, `
		SELECT c.name, o.finished_at FROM operations o JOIN clusters c ON c.id = o.cluster_id
		WHERE o.kind = 'provision' AND o.state = 'succeeded'`)
	if err != nil {
		return time.Time{}, nil, err
	}
	defer rows.Close()
	var lastDone time.Time
	var out []time.Duration
	for rows.Next() {
		var name string
		var finished time.Time
		if err := rows.Scan(&name, &finished); err != nil {
			return time.Time{}, nil, err
		}
		if at, ok := playedAt[name]; ok {
			out = append(out, max(0, finished.Sub(at)))
		}
		if finished.After(lastDone) {
			lastDone = finished
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return lastDone, out, rows.Err()
}

// benchApplyTimes returns when the last apply step finished and, per
// cluster, how long from its creation until its apply step finished.
func (s *benchService) benchApplyTimes(ctx context.Context) (time.Time, []time.Duration, error) {
	rows, err := s.db.Query(ctx, `
		SELECT c.created_at, st.finished_at FROM operation_steps st
		JOIN operations o ON o.id = st.operation_id JOIN clusters c ON c.id = o.cluster_id
		WHERE o.kind = 'provision' AND st.name = 'apply' AND st.state = 'succeeded'`)
	if err != nil {
		return time.Time{}, nil, err
	}
	defer rows.Close()
	var lastDone time.Time
	var out []time.Duration
	for rows.Next() {
		var created, finished time.Time
		if err := rows.Scan(&created, &finished); err != nil {
			return time.Time{}, nil, err
		}
		if finished.After(lastDone) {
			lastDone = finished
		}
		out = append(out, finished.Sub(created))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return lastDone, out, rows.Err()
}

func benchPct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))].Round(time.Millisecond)
}

// benchHeap is the heap in use after a collection.
func benchHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

func benchEnvDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration such as 2s", name, v)
	}
	return d
}
