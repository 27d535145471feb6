package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/testenv"
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
	s := startService(t, options{wrapTransport: countCAPIReads(&reads), watchedCheckInterval: 10 * time.Minute})
	checkWaitsAreWoken(t, s, &reads)
}

// TestWaitChecksOnAReplicaWithoutTheWatcher: a replica that works the job
// but does not hold the management cluster's watcher lease reads the
// observed status the lease holder's watcher recorded in the store, and is
// woken by that watcher: no GET of the CAPI Cluster from it either, and the
// watched interval between wakes. The lease holder runs no workers, so
// every check is the other replica's.
func TestWaitChecksOnAReplicaWithoutTheWatcher(t *testing.T) {
	t.Parallel()
	env := testenv.Shared(t)
	dbURL := dbtest.New(t)
	adminToken := newAdminToken()
	key := seal.NewKey()
	leader := startService(t, options{dbURL: dbURL, adminToken: adminToken, encryptionKey: key, apiOnly: true})
	election := testElection(dbURL)
	deadline := time.Now().Add(30 * time.Second)
	for {
		lease := &coordinationv1.Lease{}
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: election.Namespace, Name: election.Name}, lease)
		if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API-only replica took no watcher lease within 30s (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	var reads atomic.Int64
	worker := startService(t, options{dbURL: dbURL, adminToken: adminToken, encryptionKey: key, tenant: leader.tenant, token: leader.token,
		wrapTransport: countCAPIReads(&reads), watchedCheckInterval: 10 * time.Minute})
	// The worker learns who leads at its first try for the lease.
	time.Sleep(2 * election.RetryPeriod)
	checkWaitsAreWoken(t, worker, &reads)
}

// countCAPIReads counts the requests a wait check would make to read a
// CAPI Cluster and its pools from the apiserver.
func countCAPIReads(reads *atomic.Int64) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch benchRequestKind(r) {
			case "get clusters", "list machinedeployments", "list machinepools":
				reads.Add(1)
			}
			return next.RoundTrip(r)
		})
	}
}

// checkWaitsAreWoken provisions a cluster through s and checks its
// control-plane wait: the check snoozes the watched interval, each change
// of the CAPI Cluster's status wakes it, none of those checks reads the
// apiserver (reads counts what s sent), and the cluster is Provisioned
// once the cloud plays it.
func checkWaitsAreWoken(t *testing.T, s *service, reads *atomic.Int64) {
	t.Helper()
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
		cluster := s.get(mgmt.ClusterGVK, s.namespace(), "prod")
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
