package e2e

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardTokens: the dashboard's API tokens page lists the tenant's
// tokens with the session's own marked; a token made there is shown once
// (on the answer to the form, never again), works against the API, and is
// revoked from the page; revoking the session's own token signs it out.
func TestDashboardTokens(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	session, csrf := s.sessionFor(s.token)
	page := func(method, path string, form url.Values) (int, string, string) {
		t.Helper()
		return s.dashboardPage(session, method, path, form)
	}

	status, _, body := page(http.MethodGet, "/tokens", nil)
	if status != http.StatusOK || !strings.Contains(body, `href="/tokens" aria-current="page"`) || !strings.Contains(body, "this session") {
		t.Fatalf("tokens page: %d\n%s", status, body)
	}

	status, _, body = page(http.MethodPost, "/tokens", url.Values{"csrf": {csrf}, "name": {"deploy"}, "days": {"30"}})
	m := regexp.MustCompile(`<code id="new-token" data-token>([^<]+)</code>`).FindStringSubmatch(body)
	if status != http.StatusCreated || m == nil {
		t.Fatalf("create: %d\n%s", status, body)
	}
	made := m[1]
	if got, _ := s.do(http.MethodGet, "/v1/clusters", made, "", nil); got != http.StatusOK {
		t.Fatalf("the new token against the API: %d", got)
	}
	_, _, body = page(http.MethodGet, "/tokens", nil)
	if strings.Contains(body, made) {
		t.Fatal("the token is shown again after it was made")
	}
	row := regexp.MustCompile(`data-token-id="([^"]+)" data-token-name="deploy"`).FindStringSubmatch(body)
	if row == nil || !strings.Contains(body, "30 days") {
		t.Fatalf("the new token is not listed:\n%s", body)
	}

	// Without the session's CSRF token nothing is revoked.
	if status, _, _ := page(http.MethodPost, "/tokens/"+row[1]+"/revoke", url.Values{"csrf": {"forged"}}); status != http.StatusForbidden {
		t.Fatalf("revoke without the CSRF token: %d", status)
	}
	status, loc, _ := page(http.MethodPost, "/tokens/"+row[1]+"/revoke", url.Values{"csrf": {csrf}})
	if status != http.StatusSeeOther || loc != "/tokens?done=token-revoked" {
		t.Fatalf("revoke: %d %q", status, loc)
	}
	if got, _ := s.do(http.MethodGet, "/v1/clusters", made, "", nil); got != http.StatusUnauthorized {
		t.Fatalf("the revoked token against the API: %d", got)
	}
	if _, _, body = page(http.MethodGet, "/tokens", nil); !regexp.MustCompile(`data-token-name="deploy"[\s\S]*?<td data-state>revoked</td>`).MatchString(body) {
		t.Fatalf("the revoked token is not shown revoked:\n%s", body)
	}

	// The session's own token: revoked, the session ends.
	self := regexp.MustCompile(`data-token-id="([^"]+)" data-token-name="[^"]+">\s*<td>[^<]*<span class="badge">this session`).FindStringSubmatch(body)
	if self == nil {
		t.Fatalf("no row marked this session:\n%s", body)
	}
	if status, loc, _ := page(http.MethodPost, "/tokens/"+self[1]+"/revoke", url.Values{"csrf": {csrf}}); status != http.StatusSeeOther || loc != "/signin" {
		t.Fatalf("revoke own: %d %q", status, loc)
	}
	if status, loc, _ := page(http.MethodGet, "/tokens", nil); status != http.StatusSeeOther || loc != "/signin" {
		t.Fatalf("the session after its token was revoked: %d %q", status, loc)
	}
}
