package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestShedBeyondMaxInFlight: with MaxInFlight requests in the handler, one
// more is answered at once with 503 overloaded and Retry-After (it does
// not wait); event streams, /healthz and /readyz pass; a slot freed is
// taken again.
func TestShedBeyondMaxInFlight(t *testing.T) {
	s := &Server{logger: slog.New(slog.DiscardHandler), inFlight: make(chan struct{}, 2)}
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	h := s.shed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		if r.URL.Path == "/v1/clusters/slow" {
			<-release
		}
		w.WriteHeader(http.StatusOK)
	}))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/clusters/slow", nil))
		})
		<-entered
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/clusters", nil))
	var p Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusServiceUnavailable || p.Type != problemBase+"overloaded" || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("the third request: %d %s, Retry-After %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	// Overloaded, the answer at the connection cap, is the same problem
	// and Retry-After, without what only a request has.
	body, retryAfter := Overloaded()
	var atCap Problem
	if err := json.Unmarshal(body, &atCap); err != nil {
		t.Fatalf("Overloaded's body %s: %v", body, err)
	}
	p.Instance, p.RequestID = "", ""
	if fmt.Sprint(atCap) != fmt.Sprint(p) || fmt.Sprint(retryAfter) != rec.Header().Get("Retry-After") {
		t.Fatalf("Overloaded() is %s, Retry-After %d; the shed request got %+v, Retry-After %q", body, retryAfter, p, rec.Header().Get("Retry-After"))
	}
	for _, path := range []string{"/v1/events", "/v1/clusters/prod/events", "/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s while full: %d", path, rec.Code)
		}
	}

	close(release)
	wg.Wait()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/clusters", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("after the slots freed: %d", rec.Code)
	}
}

// TestCancelledRequestIsNoError: a request whose client went away (its
// context cancelled) mid-call is recorded with 499 and logged at no level
// above INFO (the access log's line), not as a 500 at ERROR.
func TestCancelledRequestIsNoError(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	s.writeProblem(rec, httptest.NewRequest(http.MethodGet, "/v1/clusters", nil).WithContext(ctx),
		fmt.Errorf("list clusters: %w", context.Canceled))
	if rec.Code != statusClientClosedRequest || strings.Contains(logs.String(), "ERROR") || strings.Contains(logs.String(), "WARN") {
		t.Fatalf("cancelled: %d, logs %s", rec.Code, logs.String())
	}
	// The same error while the client is still there is the service's.
	rec = httptest.NewRecorder()
	s.writeProblem(rec, httptest.NewRequest(http.MethodGet, "/v1/clusters", nil), fmt.Errorf("list clusters: %w", context.Canceled))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(logs.String(), "ERROR") {
		t.Fatalf("an internal cancellation: %d, logs %s", rec.Code, logs.String())
	}
}
