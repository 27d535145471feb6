package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"lok8s.dev/provisioner/internal/store"
)

// A redirect carries the warnings to the page it leads to, signed for
// the session: the page shows them; changed, or followed in another
// session, it shows none.
func TestCarriedWarnings(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t)
	in := func(csrf, target string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		return r.WithContext(context.WithValue(r.Context(), sessionKey{}, store.Session{CSRFToken: csrf}))
	}
	warnings := []string{"spec.runner: ignored: the CLI's runner settings", "status: ignored: a submitted one is dropped"}
	if got := h.carryWarnings(in("s1", "/"), "/?done=created", nil); got != "/?done=created" {
		t.Fatalf("no warnings: %s", got)
	}
	target := h.carryWarnings(in("s1", "/"), "/?done=created", warnings)
	u, err := url.Parse(target)
	if err != nil || u.Path != "/" || u.Query().Get("done") != "created" {
		t.Fatalf("target %s: %v", target, err)
	}
	if got := h.carriedWarnings(in("s1", target)); !reflect.DeepEqual(got, warnings) {
		t.Fatalf("carried %q, want %q", got, warnings)
	}
	// Rendered above the page.
	rec := httptest.NewRecorder()
	h.render(rec, in("s1", target), http.StatusOK, "error", pageData{Warnings: h.carriedWarnings(in("s1", target))})
	if page := rec.Body.String(); !strings.Contains(page, `<section class="warnings"`) || !strings.Contains(page, "<li>spec.runner: ignored: the CLI&#39;s runner settings</li>") {
		t.Fatalf("page:\n%s", page)
	}

	q := u.Query()
	forged := url.Values{"done": {"created"}, "warnings": {q.Get("warnings")[:len(q.Get("warnings"))-2] + "fQ"}, "sig": {q.Get("sig")}}
	for name, r := range map[string]*http.Request{
		"another session":     in("s2", target),
		"changed warnings":    in("s1", "/?"+forged.Encode()),
		"no signature":        in("s1", "/?warnings="+q.Get("warnings")),
		"a signature alone":   in("s1", "/?sig="+q.Get("sig")),
		"not base64":          in("s1", "/?warnings=%25%25&sig="+q.Get("sig")),
		"no session at all":   in("", target),
		"nothing on the link": in("s1", "/?done=created"),
	} {
		if got := h.carriedWarnings(r); got != nil {
			t.Errorf("%s: carried %q", name, got)
		}
	}
}
