package e2e

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestSignInCSRFIsBoundToTheServer: the sign-in form's token is the
// cookie's nonce signed with the server's key, so a cookie and form value
// an attacker chose themselves (a naive double submit accepts any pair)
// are refused; the form the server rendered signs in.
func TestSignInCSRFIsBoundToTheServer(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// post signs in with that cookie and form token; it returns the status
	// and whether a session cookie was set.
	post := func(cookie, csrf string) (int, bool) {
		t.Helper()
		form := url.Values{"csrf": {csrf}, "token": {s.token}}
		req, _ := http.NewRequest(http.MethodPost, s.url+"/signin", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "lok8s_signin", Value: cookie})
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		for _, c := range resp.Cookies() {
			if c.Name == "lok8s_session" && c.Value != "" {
				return resp.StatusCode, true
			}
		}
		return resp.StatusCode, false
	}

	if status, session := post("attacker-chosen", "attacker-chosen"); status != http.StatusForbidden || session {
		t.Fatalf("a planted cookie and form value: %d, session %v", status, session)
	}

	resp, err := http.Get(s.url + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var nonce string
	for _, c := range resp.Cookies() {
		if c.Name == "lok8s_signin" {
			nonce = c.Value
		}
	}
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindSubmatch(page)
	if nonce == "" || m == nil {
		t.Fatalf("sign-in page without its nonce cookie or token (%q)", nonce)
	}
	if string(m[1]) == nonce {
		t.Fatal("the form's token is the cookie's value: a naive double submit")
	}
	if status, session := post(nonce, string(m[1])); status != http.StatusSeeOther || !session {
		t.Fatalf("the server's own form: %d, session %v", status, session)
	}
}
