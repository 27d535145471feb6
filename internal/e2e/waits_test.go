package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestWaitChecksReadTheWatchersCache: once the management cluster's
// watcher has synced, a wait check reads the CAPI Cluster and its pools
// from the watcher's cache, not from the apiserver, and snoozes the
// watched interval (ten minutes here, cut to the two-minute deadline)
// rather than the check interval (200 ms): the watcher wakes it on each change of what CAPI reports, and
// the change that makes the cluster ready finishes the wait at once.
func TestWaitChecksReadTheWatchersCache(t *testing.T) {
	t.Parallel()
	var reads atomic.Int64
	count := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch benchRequestKind(r) {
			case "get clusters", "list machinedeployments", "list machinepools":
				reads.Add(1)
			}
			return next.RoundTrip(r)
		})
	}
	s := startService(t, options{wrapTransport: count, watchedCheckInterval: 10 * time.Minute})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	s.waitJobState("provision", "scheduled")
	ctx := context.Background()
	var dueIn float64
	if err := s.db.QueryRow(ctx, `SELECT extract(epoch FROM scheduled_at - now())::float8 FROM river_job WHERE kind = 'provision' ORDER BY id DESC LIMIT 1`).Scan(&dueIn); err != nil {
		t.Fatal(err)
	}
	// The watched interval (10m), cut to the deadline (the harness's
	// provision timeout, 2m): far from the check interval (200ms).
	if due := time.Duration(dueIn * float64(time.Second)).Round(time.Millisecond); due < time.Minute {
		t.Fatalf("the waiting job's next check is due in %s; want the watched interval (cut to the 2m deadline), not the check interval", due)
	}

	// Three changes of the CAPI Cluster's status, none of them the one
	// waited for: each wakes the check, which reads the cache.
	before, attempts := reads.Load(), s.stepAttempts("control-plane-initialized")
	for i := range 3 {
		cluster := s.get(clusterGVK, s.namespace(), "prod")
		conds, _, _ := unstructured.NestedSlice(cluster.Object, "status", "conditions")
		conds = slices.DeleteFunc(conds, func(c any) bool { return c.(map[string]any)["type"] == "InfrastructureReady" })
		conds = append(conds, map[string]any{"type": "InfrastructureReady", "status": "False", "reason": "Provisioning",
			"message": fmt.Sprintf("step %d", i), "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)})
		if err := unstructured.SetNestedSlice(cluster.Object, conds, "status", "conditions"); err != nil {
			t.Fatal(err)
		}
		if err := s.env.Client.Status().Update(ctx, cluster); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for s.stepAttempts("control-plane-initialized") < attempts+i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("change %d did not wake the wait check within 30s", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	s.waitJobState("provision", "scheduled")
	if n := reads.Load() - before; n != 0 {
		t.Fatalf("%d GETs of the CAPI Cluster or LISTs of its pools during %d woken checks; want none (read from the watcher's cache)",
			n, s.stepAttempts("control-plane-initialized")-attempts)
	}

	s.playCloud("prod")
	start := time.Now()
	done := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Provisioned" || st["phase"] == "Failed" })
	if done["phase"] != "Provisioned" {
		t.Fatalf("phase %v: %v", done["phase"], done["error"])
	}
	t.Logf("Provisioned %s after the cloud began, with checks snoozing 10m between wakes", time.Since(start).Round(time.Millisecond))
}

// stepAttempts is how often step of the latest provision ran.
func (s *service) stepAttempts(step string) int {
	s.t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), `
		SELECT st.attempts FROM operation_steps st JOIN operations o ON o.id = st.operation_id
		WHERE o.kind = 'provision' AND st.name = $1 ORDER BY o.created_at DESC LIMIT 1`, step).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}
