package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/store"
)

// openStream opens GET /v1/events with the session cookie and returns a
// channel closed when the stream ends.
func (s *service) openStream(session string) <-chan struct{} {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/events", nil)
	req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: session})
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed by the goroutine when the stream ends
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		s.t.Fatalf("open stream: %s", resp.Status)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	s.t.Cleanup(func() { resp.Body.Close() })
	return ended
}

// TestRotatingTheAdminTokenEndsItsSessions: a replica started with a new
// LOK8S_ADMIN_TOKEN (as at a restart) ends the old token's dashboard
// sessions and, within a heartbeat, their open event streams; signing out
// ends that session's streams too.
func TestRotatingTheAdminTokenEndsItsSessions(t *testing.T) {
	t.Parallel()
	s := startService(t, options{streamHeartbeat: 200 * time.Millisecond})
	adminSession, _ := s.sessionFor(s.admin)
	adminStream := s.openStream(adminSession)
	tenantSession, tenantCSRF := s.sessionFor(s.token)
	tenantStream := s.openStream(tenantSession)

	// Sign out: that session's stream ends; the admin's goes on.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, s.url+"/signout", strings.NewReader(url.Values{"csrf": {tenantCSRF}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: tenantSession})
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case <-tenantStream:
	case <-time.After(5 * time.Second):
		t.Fatal("signing out did not end the session's event stream")
	}
	select {
	case <-adminStream:
		t.Fatal("another session's stream ended")
	case <-time.After(500 * time.Millisecond):
	}

	// A restart with a new admin token, as cmd/server does at start.
	newToken := "admin-token-" + randomName("") + "-rotated-rotated"
	if _, err := store.New(s.db, nil).EnsureAdminToken(context.Background(), "admin", api.HashToken(newToken)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-adminStream:
	case <-time.After(5 * time.Second):
		t.Fatal("the old admin token's stream outlived the rotation")
	}
	page, err := noRedirect.Do(func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, s.url+"/", nil)
		r.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: adminSession})
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.StatusCode != http.StatusSeeOther || page.Header.Get("Location") != "/signin" {
		t.Fatalf("the old admin token's session after the rotation: %d %s", page.StatusCode, page.Header.Get("Location"))
	}
	if status, _ := s.do(http.MethodGet, "/v1/clusters", s.admin, "", nil); status != http.StatusUnauthorized {
		t.Fatalf("the old admin token after the rotation: %d", status)
	}
	if status, _ := s.do(http.MethodGet, "/v1/clusters", newToken, "", nil); status != http.StatusOK {
		t.Fatalf("the new admin token: %d", status)
	}
}
