package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/store"
)

// sseEvent is one event read from a stream.
type sseEvent struct {
	ID   string // opaque
	Type string
	Data map[string]any
}

// stream is an open event stream.
type stream struct {
	events     chan sseEvent
	heartbeats chan struct{}
	cancel     func()
	status     int
}

// openStream GETs path with token and Last-Event-ID (when not empty) and
// reads its events in the background.
func (b *bundle) openStream(path, token, lastEventID string) *stream {
	b.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // the reader goroutine closes it when the stream ends
	if err != nil {
		cancel()
		b.t.Fatal(err)
	}
	s := &stream{events: make(chan sseEvent, 1000), heartbeats: make(chan struct{}, 100), cancel: cancel, status: resp.StatusCode}
	b.t.Cleanup(cancel)
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return s
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		b.t.Errorf("Content-Type %q", ct)
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": heartbeat":
				select {
				case s.heartbeats <- struct{}{}:
				default:
				}
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.Data)
			case line == "" && (ev.ID != "" || ev.Type != ""):
				s.events <- ev
				ev = sseEvent{}
			}
		}
	}()
	return s
}

// next returns the next event, failing after timeout.
func (s *stream) next(t *testing.T, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event in %s", timeout)
		return sseEvent{}
	}
}

// collect reads events until want of them arrived or timeout passed.
func (s *stream) collect(t *testing.T, want int, timeout time.Duration) []sseEvent {
	t.Helper()
	var out []sseEvent
	deadline := time.After(timeout)
	for len(out) < want {
		select {
		case ev := <-s.events:
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("got %d events of %d in %s: %v", len(out), want, timeout, out)
		}
	}
	return out
}

func (s *stream) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-s.events:
		t.Fatalf("unexpected event %s %s: %v", ev.ID, ev.Type, ev.Data)
	case <-time.After(d):
	}
}

func (b *bundle) createNamed(token, name string) {
	b.t.Helper()
	b.putHetznerCredential(token, name+"-credentials")
	spec := strings.NewReplacer("name: prod", "name: "+name, "secretName: prod-credentials", "secretName: "+name+"-credentials").Replace(string(seedSpec(b.t)))
	b.expect(b.do(http.MethodPost, "/v1/clusters", token, "application/yaml", []byte(spec)), http.StatusAccepted)
}

func TestEventStreamInOrderAndResumed(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{events: true})
	s := b.openStream("/v1/events", b.adminToken, "")
	if s.status != http.StatusOK {
		t.Fatalf("stream: %d", s.status)
	}
	b.createNamed(b.adminToken, "alpha")
	got := s.collect(t, 2, 5*time.Second)
	if got[0].Type != "cluster.phase" || got[0].Data["phase"] != "Pending" || got[0].Data["cluster"] != "alpha" ||
		got[1].Type != "operation" || got[1].Data["state"] != "queued" || got[1].Data["kind"] != "provision" ||
		got[0].ID == "" || got[1].ID == got[0].ID || got[0].Data["id"] != got[0].ID {
		t.Fatalf("events: %+v", got)
	}
	if got[0].Data["type"] != "cluster.phase" || got[0].Data["at"] == nil {
		t.Fatalf("data is not typed: %v", got[0].Data)
	}
	// A heartbeat comes while nothing happens.
	select {
	case <-s.heartbeats:
	case <-time.After(2 * time.Second):
		t.Fatal("no heartbeat")
	}
	last := got[1].ID
	s.cancel() // the connection drops

	b.expect(b.do(http.MethodDelete, "/v1/clusters/alpha", b.adminToken, "", nil), http.StatusAccepted)
	b.createNamed(b.adminToken, "beta")
	resumed := b.openStream("/v1/events", b.adminToken, last)
	missed := resumed.collect(t, 5, 5*time.Second)
	var kinds []string
	seen := map[string]bool{last: true}
	for _, ev := range missed {
		if seen[ev.ID] {
			t.Fatalf("event id %s repeated", ev.ID)
		}
		seen[ev.ID] = true
		kinds = append(kinds, ev.Data["cluster"].(string)+":"+ev.Type)
	}
	// alpha: its provisioning cancelled, Deleting, the deprovision queued; beta: Pending, queued.
	want := "alpha:operation alpha:cluster.phase alpha:operation beta:cluster.phase beta:operation"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("after resuming: %s, want %s", got, want)
	}
	resumed.quiet(t, 300*time.Millisecond)

	// One cluster's stream carries only its events; an unknown one is a 404.
	alpha := b.openStream("/v1/clusters/alpha/events", b.adminToken, api.FromStart)
	for _, ev := range alpha.collect(t, 4, 5*time.Second) {
		if ev.Data["cluster"] != "alpha" {
			t.Fatalf("cluster stream carried %v", ev.Data)
		}
	}
	if nope := b.openStream("/v1/clusters/nope/events", b.adminToken, ""); nope.status != http.StatusNotFound {
		t.Fatalf("unknown cluster stream: %d", nope.status)
	}
	if bad := b.openStream("/v1/events", b.adminToken, "yesterday"); bad.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad Last-Event-ID: %d", bad.status)
	}
	if anon := b.openStream("/v1/events", "", ""); anon.status != http.StatusUnauthorized {
		t.Fatalf("stream without a token: %d", anon.status)
	}
}

// TestEventStreamAcrossReplicas: a change made through one server reaches
// a stream served by another on the same database (NOTIFY).
func TestEventStreamAcrossReplicas(t *testing.T) {
	t.Parallel()
	a := setupWith(t, setupOptions{events: true})
	b := setupWith(t, setupOptions{events: true, dbURL: a.dbURL})
	s := b.openStream("/v1/events", b.adminToken, "")
	// The second server's start replaced the admin token; both take it.
	a.createNamed(b.adminToken, "gamma")
	ev := s.next(t, 5*time.Second)
	if ev.Data["cluster"] != "gamma" || ev.Type != "cluster.phase" {
		t.Fatalf("event from the other replica: %+v", ev)
	}
}

func TestEventStreamTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{events: true})
	other := b.newTenant("globex")
	theirs := b.openStream("/v1/events", other, api.FromStart)
	b.createNamed(b.adminToken, "secret-project")
	theirs.quiet(t, 500*time.Millisecond)
	b.createNamed(other, "their-own")
	for _, ev := range theirs.collect(t, 2, 5*time.Second) {
		if ev.Data["cluster"] != "their-own" {
			t.Fatalf("tenant globex saw %v", ev.Data)
		}
	}
}

// TestStalledClientDoesNotSlowOthers keeps one stream open without reading
// it while many events are written: the writers and another stream go on.
func TestStalledClientDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{events: true})
	// A client that never reads its response body.
	req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+b.adminToken)
	req.Header.Set("Last-Event-ID", api.FromStart)
	stalled, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close()

	live := b.openStream("/v1/events", b.adminToken, "")
	start := time.Now()
	const clusters = 40
	for i := 0; i < clusters; i++ {
		b.createNamed(b.adminToken, "c"+strconv.Itoa(i))
	}
	writing := time.Since(start)
	live.collect(t, 2*clusters, 10*time.Second)
	if writing > 20*time.Second {
		t.Fatalf("writers took %s beside a stalled stream", writing)
	}
}

// TestEventStreamAfterPruning: events older than the retention are pruned;
// a stream resumed from before the pruned ones starts with a stream.gap
// event naming the last id pruned, then carries on with what remains; one
// resumed from after them gets no gap.
func TestEventStreamAfterPruning(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{events: true})
	live := b.openStream("/v1/events", b.adminToken, "")
	b.createNamed(b.adminToken, "alpha")
	old := live.collect(t, 2, 5*time.Second)
	st := store.New(b.pool, nil)
	// Everything so far is "older than the retention".
	n, err := st.PruneEvents(context.Background(), time.Now().Add(time.Hour))
	if err != nil || n < 2 {
		t.Fatalf("pruned %d events: %v", n, err)
	}
	pruned, err := st.PrunedThrough(context.Background())
	if err != nil || pruned == (store.Position{}) {
		t.Fatalf("pruned through %d: %v", pruned, err)
	}
	b.createNamed(b.adminToken, "beta")
	fresh := live.collect(t, 2, 5*time.Second)

	resumed := b.openStream("/v1/events", b.adminToken, old[0].ID)
	gap := resumed.next(t, 5*time.Second)
	if gap.Type != "stream.gap" || gap.ID != "" || len(gap.Data) != 2 || gap.Data["message"] == nil {
		t.Fatalf("first event after resuming from a pruned id: %+v", gap)
	}
	if got := resumed.collect(t, 2, 5*time.Second); got[0].Data["cluster"] != "beta" || got[1].Data["cluster"] != "beta" ||
		got[0].Type != fresh[0].Type || got[1].Type != fresh[1].Type {
		t.Fatalf("after the gap: %+v, want %+v", got, fresh)
	}

	current := b.openStream("/v1/events", b.adminToken, fresh[0].ID)
	if ev := current.next(t, 5*time.Second); ev.Type == "stream.gap" || ev.Type != fresh[1].Type || ev.Data["cluster"] != "beta" {
		t.Fatalf("resuming after the pruned events: %+v", ev)
	}
}

// TestEventIDsRevealNothing: the store's event ids are one sequence for
// all tenants; what a stream sends instead says nothing of it. The same
// event has another id on another stream, no id is a number, and one
// tenant's id does not open for another (nor a made-up one).
func TestEventIDsRevealNothing(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{events: true})
	other := b.newTenant("globex")
	one := b.openStream("/v1/events", b.adminToken, "")
	two := b.openStream("/v1/events", b.adminToken, "")
	b.createNamed(b.adminToken, "alpha")
	b.createNamed(other, "busy") // another tenant's events advance the store's sequence
	b.createNamed(b.adminToken, "beta")
	a, c := one.collect(t, 4, 5*time.Second), two.collect(t, 4, 5*time.Second)
	for i := range a {
		if a[i].ID == c[i].ID || a[i].Type != c[i].Type {
			t.Fatalf("event %d: ids %q and %q on two streams", i, a[i].ID, c[i].ID)
		}
		if _, err := strconv.ParseInt(a[i].ID, 10, 64); err == nil {
			t.Fatalf("a numeric event id: %q", a[i].ID)
		}
	}
	// The opaque id resumes the stream it came from.
	resumed := b.openStream("/v1/events", b.adminToken, a[1].ID)
	if ev := resumed.next(t, 5*time.Second); ev.Data["cluster"] != "beta" || ev.Type != a[2].Type {
		t.Fatalf("resumed after alpha's events: %+v", ev)
	}
	for name, id := range map[string]string{"another tenant's": a[1].ID, "a number": "17", "made up": "bm90LWFuLWlk"} {
		if s := b.openStream("/v1/events", other, id); s.status != http.StatusUnprocessableEntity {
			t.Errorf("%s Last-Event-ID: %d, want 422", name, s.status)
		}
	}
}

// TestLateCommitIsDeliveredInOrder: a transaction writes an event of alpha
// and stays open while beta is created (its events get later ids and are
// committed first). The stream holds beta's events back until the open
// transaction commits, then delivers alpha's first: delivering beta's at
// once would have put alpha's behind the stream's position, never to be
// sent, nor on resuming.
func TestLateCommitIsDeliveredInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupWith(t, setupOptions{events: true})
	b.createNamed(b.adminToken, "alpha")
	s := b.openStream("/v1/events", b.adminToken, "")
	late, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = late.Rollback(ctx) }()
	if _, err := late.Exec(ctx, `UPDATE clusters SET message = 'late' WHERE name = 'alpha'`); err != nil {
		t.Fatal(err)
	}
	b.createNamed(b.adminToken, "beta")
	time.Sleep(300 * time.Millisecond) // the stream has read, and been woken by beta's NOTIFY
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := s.collect(t, 3, 5*time.Second)
	kinds := func(evs []sseEvent) string {
		var out []string
		for _, ev := range evs {
			out = append(out, ev.Data["cluster"].(string)+":"+ev.Type)
		}
		return strings.Join(out, " ")
	}
	if k := kinds(got); k != "alpha:cluster.phase beta:cluster.phase beta:operation" || got[0].Data["message"] != "late" {
		t.Fatalf("events: %s (%v)", k, got[0].Data)
	}
	s.quiet(t, 300*time.Millisecond)
	// Resumed from alpha's late event: beta's, and nothing else.
	resumed := b.openStream("/v1/events", b.adminToken, got[0].ID)
	if k := kinds(resumed.collect(t, 2, 5*time.Second)); k != "beta:cluster.phase beta:operation" {
		t.Fatalf("resumed: %s", k)
	}
	resumed.quiet(t, 300*time.Millisecond)
}

// TestHeldBackEventsComeWhenTheBlockerAborts: events held back behind a
// transaction in flight come once it ends, even when it ends without a
// NOTIFY (rolled back, having written no event): the stream looks again
// by itself, well before its next heartbeat.
func TestHeldBackEventsComeWhenTheBlockerAborts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupWith(t, setupOptions{events: true, heartbeat: time.Minute})
	s := b.openStream("/v1/events", b.adminToken, "")
	blocker, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(ctx) }()
	if _, err := blocker.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // a transaction id, no event
		t.Fatal(err)
	}
	b.createNamed(b.adminToken, "beta")
	time.Sleep(300 * time.Millisecond)
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.collect(t, 2, 3*time.Second); got[0].Data["cluster"] != "beta" || got[1].Data["cluster"] != "beta" {
		t.Fatalf("events: %+v", got)
	}
}
