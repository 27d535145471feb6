package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/store"
)

// TestObservedStatusContract ties the three readers of a cluster's observed
// status to the one Go type that declares it, mgmt.Status (its JSON is what
// the watcher writes to clusters.observed): the cluster.observed event the
// database trigger builds from that JSON carries each of its fields under
// its JSON name (phase as capiPhase, as in the API's status view; the
// failure pair is not sent), with the same value; and app.js reads only
// names the event carries. A renamed JSON tag, a field added to mgmt.Status
// without a decision here, a trigger key or a page script field that drifts
// fails it.
func TestObservedStatusContract(t *testing.T) {
	t.Parallel()
	renamed := map[string]string{"phase": "capiPhase"}
	withheld := []string{"failureReason", "failureMessage"}

	// Every field set, so that omitempty drops none.
	at := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	status := mgmt.Status{
		Phase:          "Provisioned",
		Conditions:     []mgmt.Condition{{Type: "Available", Status: "True", Reason: "Ready", Message: "ok", LastTransitionTime: &at}},
		Initialization: &mgmt.Initialization{InfrastructureProvisioned: true, ControlPlaneInitialized: true},
		ControlPlane:   &mgmt.Replicas{Desired: 3, Ready: 2, Available: 2, UpToDate: 3},
		Workers:        &mgmt.Replicas{Desired: 4, Ready: 4, Available: 4, UpToDate: 4},
		Pools:          map[string]mgmt.Replicas{"general": {Desired: 4, Ready: 4, Available: 4, UpToDate: 4}},
		Tenant:         "acme",
		FailureReason:  "r", FailureMessage: "m",
	}
	raw, err := json.Marshal(status)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}

	event := observedEvent(t, raw)
	for name, value := range fields {
		if slices.Contains(withheld, name) {
			if _, ok := event[name]; ok {
				t.Errorf("the cluster.observed event carries %s, which is not shown", name)
			}
			continue
		}
		key := name
		if r, ok := renamed[name]; ok {
			key = r
		}
		got, ok := event[key]
		if !ok {
			t.Errorf("mgmt.Status's %q is not in the cluster.observed event (keys %v): the trigger (lok8s_cluster_events) does not read it", name, keys(event))
			continue
		}
		if !jsonEqual(t, got, value) {
			t.Errorf("event %s = %s, want %s", key, got, value)
		}
	}

	// app.js: what its cluster.observed handlers read of the event (ev.X)
	// and of its replica counters (r.X).
	src, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	var replicas map[string]json.RawMessage
	if err := json.Unmarshal(fields["controlPlane"], &replicas); err != nil {
		t.Fatal(err)
	}
	read := 0
	for _, block := range observedHandlers(string(src)) {
		for _, m := range regexp.MustCompile(`\bev\.(\w+)`).FindAllStringSubmatch(block, -1) {
			read++
			if _, ok := event[m[1]]; !ok {
				t.Errorf("app.js reads ev.%s of cluster.observed, which the event does not carry (keys %v)", m[1], keys(event))
			}
		}
		for _, m := range regexp.MustCompile(`\br\.(\w+)`).FindAllStringSubmatch(block, -1) {
			if _, ok := replicas[m[1]]; !ok {
				t.Errorf("app.js reads %s of a replica counter, which mgmt.Replicas does not have (%v)", m[1], keys(replicas))
			}
		}
	}
	if read == 0 {
		t.Fatal("found no cluster.observed handler reading the event in app.js")
	}
}

// observedEvent writes observed to a cluster's row in a migrated database
// and returns the data of the cluster.observed event the trigger emitted.
func observedEvent(t *testing.T, observed []byte) map[string]json.RawMessage {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	st := store.New(pool, slog.New(slog.DiscardHandler))
	admin, err := st.EnsureAdminToken(ctx, "acme", []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	noJob := func(context.Context, store.Tx, store.Operation) (int64, error) { return 0, nil }
	c, _, _, err := st.CreateCluster(ctx, store.Actor{TenantID: admin.TenantID, TokenID: admin.TokenID}, store.NewCluster{
		Name: "prod", Provider: "hetzner", Spec: json.RawMessage(`{"metadata":{"name":"prod"}}`), Steps: []string{"detect"},
	}, noJob)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetObservedByName(ctx, c.TenantID, c.Name, observed, "test"); err != nil {
		t.Fatal(err)
	}
	var data map[string]json.RawMessage
	if err := pool.QueryRow(ctx, `SELECT data FROM events WHERE cluster_id = $1 AND type = 'cluster.observed'`, c.ID).Scan(&data); err != nil {
		t.Fatalf("the cluster.observed event: %v", err)
	}
	return data
}

// observedHandlers returns the bodies of app.js's `type === 'cluster.observed'`
// branches.
func observedHandlers(src string) []string {
	var blocks []string
	const marker = "type === 'cluster.observed')"
	for i := strings.Index(src, marker); i >= 0; {
		start := i + strings.Index(src[i:], "{")
		depth, end := 0, start
		for ; end < len(src); end++ {
			if src[end] == '{' {
				depth++
			} else if src[end] == '}' {
				if depth--; depth == 0 {
					break
				}
			}
		}
		blocks = append(blocks, src[start:end])
		next := strings.Index(src[end:], marker)
		if next < 0 {
			break
		}
		i = end + next
	}
	return blocks
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
