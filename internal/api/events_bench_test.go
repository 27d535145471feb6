package api_test

// BenchmarkEventStreams: LOK8S_BENCH_STREAMS (default 500) concurrent SSE
// clients on one server while LOK8S_BENCH_CHANGING (default 100) clusters
// change state (created, then deleted: 5 events each). It prints the time
// from each change to its delivery (p50, p99, max over every client and
// event) and the process's heap with the streams open. Run:
//
//	go test ./internal/api -run '^$' -bench BenchmarkEventStreams -benchtime=1x

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkEventStreams(b *testing.B) {
	streams, changing := benchEnv("LOK8S_BENCH_STREAMS", 500), benchEnv("LOK8S_BENCH_CHANGING", 100)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := setupWith(b, setupOptions{events: true})
		for c := 0; c < changing; c++ {
			s.putHetznerCredential(s.adminToken, fmt.Sprintf("c%d-credentials", c))
		}
		want := changing * 5
		transport := &http.Transport{MaxIdleConnsPerHost: streams, MaxConnsPerHost: 0}
		client := &http.Client{Transport: transport}
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var latencies []time.Duration
		var wg, connected sync.WaitGroup
		for c := 0; c < streams; c++ {
			wg.Add(1)
			connected.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/events", nil)
				req.Header.Set("Authorization", "Bearer "+s.adminToken)
				resp, err := client.Do(req)
				connected.Done()
				if err != nil {
					return
				}
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
				got := 0
				var mine []time.Duration
				for got < want && sc.Scan() {
					line := sc.Text()
					if !strings.HasPrefix(line, "data: ") {
						continue
					}
					var ev struct{ At time.Time }
					if json.Unmarshal([]byte(line[len("data: "):]), &ev) == nil {
						mine = append(mine, time.Since(ev.At))
						got++
					}
				}
				mu.Lock()
				latencies = append(latencies, mine...)
				mu.Unlock()
			}()
		}
		connected.Wait()
		time.Sleep(200 * time.Millisecond) // every stream subscribed
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heapIdle, goroutines := ms.HeapInuse, runtime.NumGoroutine()

		b.StartTimer()
		start := time.Now()
		for c := 0; c < changing; c++ {
			s.createNamed(s.adminToken, fmt.Sprintf("c%d", c))
		}
		for c := 0; c < changing; c++ {
			s.expect(s.do(http.MethodDelete, fmt.Sprintf("/v1/clusters/c%d", c), s.adminToken, "", nil), http.StatusAccepted)
		}
		runtime.ReadMemStats(&ms)
		heapBusy := ms.HeapInuse
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			b.Errorf("not every stream got its %d events in 2 minutes", want)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()

		sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
		pct := func(q float64) time.Duration {
			if len(latencies) == 0 {
				return 0
			}
			return latencies[int(q*float64(len(latencies)-1))]
		}
		fmt.Printf("BenchmarkEventStreams: %d streams, %d clusters changing (%d events each stream): %d deliveries in %s\n",
			streams, changing, want, len(latencies), elapsed.Round(time.Millisecond))
		fmt.Printf("  change → delivery: p50 %s  p99 %s  max %s\n", pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), pct(1).Round(time.Millisecond))
		fmt.Printf("  heap in use (server and clients in one process): %.1f MiB with the streams open and idle, %.1f MiB while changing; %d goroutines open\n",
			float64(heapIdle)/(1<<20), float64(heapBusy)/(1<<20), goroutines)
		b.ReportMetric(float64(pct(0.5))/float64(time.Millisecond), "ms-p50")
		b.ReportMetric(float64(pct(0.99))/float64(time.Millisecond), "ms-p99")
		b.ReportMetric(float64(heapBusy)/(1<<20), "MiB-heap")
		if len(latencies) != streams*want {
			b.Errorf("deliveries %d, want %d", len(latencies), streams*want)
		}
	}
}
