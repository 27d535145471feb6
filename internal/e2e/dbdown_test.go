package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/dbtest"
)

// TestDatabaseDownAnswers503: while Postgres does not answer, the API says
// so with 503 and Retry-After (a client may retry), not a 500; once it is
// back, requests succeed again.
func TestDatabaseDownAnswers503(t *testing.T) {
	t.Parallel()
	direct, err := url.Parse(dbtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackholeProxy(t, direct.Host)
	viaProxy := *direct
	viaProxy.Host = proxy.ln.Addr().String()
	s := startService(t, options{dbURL: viaProxy.String()})
	s.mustDo(http.MethodGet, "/v1/clusters", "", "", nil, http.StatusOK)

	proxy.refuse(true)
	req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/clusters", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" ||
		!strings.HasSuffix(p["type"].(string), "/unavailable") {
		t.Fatalf("with the database down: %d, Retry-After %q, %v", resp.StatusCode, resp.Header.Get("Retry-After"), p)
	}

	proxy.refuse(false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _ := s.do(http.MethodGet, "/v1/clusters", "", "", nil)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the database came back: %d", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
