package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/store"
)

// sessionFor signs token in directly in the store, as the sign-in form
// does, and returns the session cookie's value and the session's CSRF token.
func (s *service) sessionFor(token string) (id, csrf string) {
	s.t.Helper()
	ctx := context.Background()
	st := store.New(s.db, nil)
	p, err := st.Authenticate(ctx, api.HashToken(token))
	if err != nil {
		s.t.Fatal(err)
	}
	id, csrf = "session-"+randomName(""), "csrf-"+randomName("")
	if err := st.CreateSession(ctx, api.HashToken(id), p, csrf, time.Now().Add(time.Hour)); err != nil {
		s.t.Fatal(err)
	}
	return id, csrf
}

// TestRiverUIForAdminsOnly: River's own UI is mounted for admin sessions;
// a tenant's session is refused and no session is sent to sign in.
func TestRiverUIForAdminsOnly(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, session string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		if session != "" {
			req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: session})
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	admin, _ := s.sessionFor(s.admin)
	tenant, _ := s.sessionFor(s.token)
	if code, body := get("/admin/river/", admin); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Fatalf("River UI for an admin: %d %.200s", code, body)
	}
	if code, body := get("/admin/river/api/jobs?state=completed&limit=5", admin); code != http.StatusOK || !strings.Contains(body, "data") {
		t.Fatalf("River UI's API for an admin: %d %.300s", code, body)
	}
	if code, _ := get("/admin/river/", tenant); code != http.StatusForbidden {
		t.Fatalf("River UI for a tenant's session: %d", code)
	}
	if code, _ := get("/admin/river/", ""); code != http.StatusSeeOther {
		t.Fatalf("River UI without a session: %d", code)
	}
}

// TestDashboardScalesAPool posts the cluster page's scale form with the
// session's CSRF token: the API's update starts and the pool's
// MachineDeployment gets the new replicas.
func TestDashboardScalesAPool(t *testing.T) {
	t.Parallel()
	s, _ := startProvisioned(t)

	id, csrf := s.sessionFor(s.token)
	post := func(form string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/clusters/prod/scale", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: id})
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location") + string(body)
	}
	page := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: id})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	// The list, rendered by the server, shows each cluster's operation
	// (from the list's own answer).
	if list := page("/"); !strings.Contains(list, `<td data-field="operation">provision`) {
		t.Fatalf("the list does not show the cluster's operation:\n%s", list)
	}
	// The cluster's page offers the spec's pools.
	if p := page("/clusters/prod"); !strings.Contains(p, `value="hcloud/general"`) || !strings.Contains(p, `value="hcloud/gpu"`) {
		t.Fatalf("the scale form does not offer the spec's pools")
	}
	if code, _ := post("pool=hcloud/general&replicas=4"); code != http.StatusForbidden {
		t.Fatalf("scale without the CSRF token: %d", code)
	}
	if code, body := post("csrf=" + csrf + "&pool=hcloud/general&replicas=2x"); code != http.StatusUnprocessableEntity {
		t.Fatalf("scale to a non-number: %d %.200s", code, body)
	}
	// From the update on the test plays CAPI (as patch does): a cloud
	// stand-in still running could finish the rollout before it is seen.
	s.pauseCloud("prod")
	if code, where := post("csrf=" + csrf + "&pool=hcloud/general&replicas=4"); code != http.StatusSeeOther || !strings.Contains(where, "/clusters/prod") {
		t.Fatalf("scale: %d %.200s", code, where)
	}
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "rollout") == "running" })
	md := s.get(mgmt.MachineDeploymentGVK, s.namespace(), "prod-md-general")
	if nested(t, md, "spec", "replicas") != int64(4) {
		t.Fatalf("general replicas %v", nested(t, md, "spec", "replicas"))
	}
}

// TestRiverUICancelIsNoticed: River's UI's API refuses a change without
// this origin (no CSRF token can be added to its fetch calls); cancelling a
// waiting cluster's job there fails the operation with JobCancelled, not
// leaving it running for ever, and a retry starts it again.
func TestRiverUICancelIsNoticed(t *testing.T) {
	t.Parallel()
	s := startService(t, options{orphanCheckInterval: time.Second, orphanGrace: 100 * time.Millisecond, checkInterval: time.Minute})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	var jobID int64
	if err := s.db.QueryRow(context.Background(), `SELECT river_job_id FROM operations WHERE kind = 'provision'`).Scan(&jobID); err != nil {
		t.Fatal(err)
	}
	admin, _ := s.sessionFor(s.admin)
	cancel := func(origin string) int {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/admin/river/api/jobs/cancel", strings.NewReader(fmt.Sprintf(`{"ids":["%d"]}`, jobID)))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: admin})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := cancel(""); code != http.StatusForbidden {
		t.Fatalf("cancel without Origin: %d", code)
	}
	if code := cancel("https://evil.example.com"); code != http.StatusForbidden {
		t.Fatalf("cancel from another origin: %d", code)
	}
	if code := cancel(s.url); code != http.StatusOK {
		t.Fatalf("cancel from this origin: %d", code)
	}
	failed := s.waitStatus("prod", 30*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })
	if e, _ := failed["error"].(map[string]any); e["code"] != "JobCancelled" || e["retryable"] != true || e["step"] != "control-plane-initialized" {
		t.Fatalf("after a cancel in River's UI: %v", failed["error"])
	}
	s.mustDo(http.MethodPost, "/v1/clusters/prod/retry", "", "", nil, http.StatusAccepted)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
}
