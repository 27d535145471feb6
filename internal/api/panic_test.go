package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPanicIsAProblem: a handler that panics, reached through the server's
// own middleware chain (routes), answers 500 problem+json with the request
// id and logs the panic at ERROR, instead of net/http dropping the
// connection with no answer. The panic here is real: /readyz on a server
// with no store dereferences it.
func TestPanicIsAProblem(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	srv := httptest.NewServer(s.routes())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v (the connection was dropped: the panic was not recovered)", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("body is not a problem: %v: %s", err, body)
	}
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Type") != "application/problem+json" ||
		p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Fatalf("panic answered %d %s %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Request-Id"), body)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "panic") {
		t.Fatalf("the panic was not logged at ERROR: %s", logs.String())
	}
}
