package e2e

import (
	"context"
	"flag"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts Debian's Chromium headless with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard test needs Debian's Chromium at %s: apt-get install -y chromium (%v)", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1366, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions, failing the test (with a screenshot and the
// page of where it stopped) on error or after timeout.
func run(t *testing.T, ctx context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := value(ctx, timeout, chromedp.Steps(actions...)); err != nil {
		failAt(t, ctx, what, err)
	}
}

// eval evaluates a JavaScript expression (awaiting it when it is a promise).
func eval[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	v, err := value(ctx, 30*time.Second, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		failAt(t, ctx, what, err)
	}
	return v
}

func value[T any](ctx context.Context, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chromedp.Run(tctx, a)
}

func failAt(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "failure.png")
	if shot, serr := value(ctx, 5*time.Second, chromedp.FullScreenshot(80)); serr == nil {
		_ = os.WriteFile(path, shot, 0o644)
	}
	html, _ := value(ctx, 5*time.Second, chromedp.OuterHTML(chromedp.CSS("main")))
	t.Fatalf("%s: %v\nscreenshot: %s\npage:\n%s", what, err, path, html)
}

// TestDashboard drives the dashboard in a real browser: sign in, store a
// credential, a bad spec refused with its field error, a good one created,
// its phase changing live (no reload) while the test plays CAPI, the
// cluster's page, its kubeconfig through the session, and deletion
// confirmed by typing the name.
func TestDashboard(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	ctx := browser(t)
	start := time.Now()

	// Signing in: / sends a stranger to /signin.
	signIn(t, ctx, s)
	run(t, ctx, 30*time.Second, "empty list",
		chromedp.WaitVisible(chromedp.Search(`//p[@id="empty"][contains(., "No clusters yet")]`)),
	)
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.url}})
	if err != nil {
		t.Fatal(err)
	}
	cookies := res.Cookies
	var sessionID string
	for _, c := range cookies {
		if c.Name == "lok8s_session" {
			sessionID = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Secure {
				t.Fatalf("session cookie: httpOnly %v sameSite %v secure %v (plain HTTP)", c.HTTPOnly, c.SameSite, c.Secure)
			}
		}
	}
	if sessionID == "" {
		t.Fatalf("no session cookie: %v", cookies)
	}
	checkSessionLimits(t, s, sessionID)

	// Credentials: the empty state, then the one the spec names.
	run(t, ctx, 30*time.Second, "add a credential",
		chromedp.Navigate(s.url+"/credentials"),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(., "No credentials yet — add them first")]`)),
		chromedp.SendKeys(chromedp.CSS("#cred-name"), "prod-credentials"),
		chromedp.SendKeys(chromedp.CSS("#cred-provider"), "hetzner"),
		chromedp.SetValue(chromedp.CSS("#cred-fields"), "hcloudToken="+hcloudToken),
		chromedp.Click(chromedp.Search(`//button[contains(., "Save credential")]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-credential="prod-credentials"]`)),
	)
	credRow := eval[string](t, ctx, "credential row", `document.querySelector('tr[data-credential="prod-credentials"]').textContent`)
	if !strings.Contains(credRow, "hetzner") || !strings.Contains(credRow, "hcloudToken") || strings.Contains(credRow, hcloudToken) {
		t.Fatalf("credential row: %q", credRow)
	}

	// The guided form: bad values are refused beside their inputs, what was
	// typed is kept, and nothing is created.
	run(t, ctx, 30*time.Second, "guided form, bad values",
		chromedp.Navigate(s.url+"/clusters/new"),
		chromedp.WaitVisible(chromedp.CSS("#f-name")),
		chromedp.SendKeys(chromedp.CSS("#f-name"), "Form_Check"),
		chromedp.SendKeys(chromedp.CSS("#f-domain"), "form.example.com"),
		chromedp.SetValue(chromedp.CSS("#f-provider"), "hetzner"),
		chromedp.SetValue(chromedp.CSS("#f-credential"), "prod-credentials"),
		chromedp.SendKeys(chromedp.CSS("#f-region"), "mars"),
		chromedp.SendKeys(chromedp.CSS("#f-ssh"), "ops"),
		chromedp.SendKeys(chromedp.CSS("#f-cp-type"), "cax21"),
		chromedp.SendKeys(chromedp.CSS("#f-pool-type"), "cax21"),
		chromedp.Click(chromedp.CSS(`button[value="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#f-name-err .field-error`)),
		chromedp.WaitVisible(chromedp.CSS(`#f-region-err .field-error`)),
	)
	type input struct{ Value, Invalid, Error string }
	inputs := eval[map[string]input](t, ctx, "form inputs", `Object.fromEntries(["f-name", "f-region", "f-version", "f-cp-replicas"].map(id => {
		const el = document.getElementById(id);
		return [id, {Value: el.value, Invalid: el.getAttribute("aria-invalid") || "", Error: document.getElementById(id + "-err").textContent.trim()}];
	}))`)
	for id, want := range map[string]input{
		"f-name":        {Value: "Form_Check", Invalid: "true"},
		"f-region":      {Value: "mars", Invalid: "true"},
		"f-version":     {Value: "v1.34.2"},
		"f-cp-replicas": {Value: "3"},
	} {
		got := inputs[id]
		if got.Value != want.Value || got.Invalid != want.Invalid || (want.Invalid == "true") != (got.Error != "") {
			t.Fatalf("%s: %+v, want value %q, invalid %q and an error beside it only when invalid", id, got, want.Value, want.Invalid)
		}
	}
	if !strings.Contains(inputs["f-region"].Error, "fsn1") {
		t.Fatalf("the region's error does not say what is allowed: %q", inputs["f-region"].Error)
	}
	screenshot(t, ctx, "new-form-errors.png")
	if status, _ := s.do(http.MethodGet, "/v1/clusters/Form_Check", s.token, "", nil); status != http.StatusNotFound {
		t.Fatalf("the bad form created a cluster: %d", status)
	}
	// Fixed, it checks as valid, and shows the spec it made; still nothing is created.
	run(t, ctx, 30*time.Second, "guided form, fixed",
		chromedp.SetValue(chromedp.CSS("#f-name"), "form-check"),
		chromedp.SetValue(chromedp.CSS("#f-region"), "fsn1"),
		chromedp.Click(chromedp.CSS(`button[value="check"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@class="notice"][contains(., "The spec is valid")]`)),
		chromedp.WaitVisible(chromedp.Search(`//details[@class="preview"]/pre[contains(., "region: fsn1")]`)),
	)
	if status, _ := s.do(http.MethodGet, "/v1/clusters/form-check", s.token, "", nil); status != http.StatusNotFound {
		t.Fatalf("checking the form created a cluster: %d", status)
	}
	// "Edit as YAML" carries the form's spec over to the editor.
	run(t, ctx, 30*time.Second, "edit as YAML",
		chromedp.Click(chromedp.CSS(`button[value="edit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#spec")),
	)
	// The form writes the lok8s CLI's current shape (spec.provider).
	if carried := eval[string](t, ctx, "carried spec", `document.getElementById("spec").value`); !strings.Contains(carried, "name: form-check") ||
		!strings.Contains(carried, "  provider:\n    name: hetzner\n") || !strings.Contains(carried, "secretRef: prod-credentials") {
		t.Fatalf("the editor got %q", carried)
	}

	// A bad spec in the editor: the dry run's error is shown beside the
	// line of the field it names, and clicking it selects that line.
	good := seedSpecWithoutAddons(t)
	bad := strings.Replace(good, "replicas: 3", "replicas: 2", 1)
	const replicasError = `a.field-error[data-field="spec.hcloud.controlPlane.replicas"]`
	run(t, ctx, 30*time.Second, "bad spec",
		chromedp.Navigate(s.url+"/clusters/new?mode=yaml"),
		chromedp.WaitVisible(chromedp.CSS("#spec")),
		chromedp.SetValue(chromedp.CSS("#spec"), bad),
		chromedp.Click(chromedp.CSS(`button[value="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.spec-lines li.has-error `+replicasError)),
		chromedp.Click(chromedp.CSS(replicasError)),
	)
	beside := eval[string](t, ctx, "error's line", `document.querySelector('`+replicasError+`').closest("li").querySelector("code").textContent`)
	selected := eval[string](t, ctx, "selected line", `(e => e.value.substring(e.selectionStart, e.selectionEnd))(document.getElementById("spec"))`)
	if strings.TrimSpace(beside) != "replicas: 2" || strings.TrimSpace(selected) != "replicas: 2" {
		t.Fatalf("the error is beside %q and selects %q, want the control plane's replicas: 2", beside, selected)
	}
	screenshot(t, ctx, "new-spec-errors.png")
	kept := eval[string](t, ctx, "spec kept", `document.getElementById("spec").value`)
	if !strings.Contains(kept, "replicas: 2") {
		t.Fatalf("the form lost the submitted spec: %q", kept)
	}
	if status, _ := s.do(http.MethodGet, "/v1/clusters/prod", "", "", nil); status != http.StatusNotFound {
		t.Fatalf("the bad spec created a cluster: %d", status)
	}

	// The good one appears in the list.
	run(t, ctx, 30*time.Second, "good spec",
		chromedp.SetValue(chromedp.CSS("#spec"), good),
		chromedp.Click(chromedp.CSS(`button[value="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-cluster="prod"]`)),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="live"][.="live"]`)),
		// Reloading would lose this marker: the page must update in place.
	)
	eval[int](t, ctx, "marker", `window.lok8sMarker = 42`)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})
	run(t, ctx, 20*time.Second, "provisioning shown live",
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="prod"]//span[@data-field="phase"][.="Provisioning"]`)),
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="prod"]/td[@data-field="operation"][contains(., "control-plane-initialized")]`)),
	)
	s.playCloud("prod")
	liveStart := time.Now()
	run(t, ctx, 60*time.Second, "Provisioned shown live",
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="prod"]//span[@data-field="phase"][.="Provisioned"]`)),
	)
	marker := eval[int](t, ctx, "marker", `window.lok8sMarker || 0`)
	if marker != 42 {
		t.Fatal("the list reloaded instead of updating in place")
	}
	t.Logf("phase Provisioned reached the list %s after the test played CAPI", time.Since(liveStart).Round(time.Millisecond))
	screenshot(t, ctx, "list.png")

	// A cluster another client creates appears in the open list, complete.
	s.submit(strings.Replace(good, "name: prod\n", "name: prod2\n", 1))
	run(t, ctx, 30*time.Second, "a cluster made elsewhere appears",
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="prod2"]/td[@data-field="version"][.="v1.34.2"]`)),
	)
	if row := eval[string](t, ctx, "new row", `[...document.querySelectorAll('tr[data-cluster="prod2"] td')].map(td => td.textContent.trim()).join("|")`); !strings.HasPrefix(row, "prod2|hetzner|fsn1|v1.34.2|") {
		t.Fatalf("the new row: %q", row)
	}
	s.mustDo(http.MethodDelete, "/v1/clusters/prod2", "", "", nil, http.StatusAccepted)

	// The cluster's page.
	run(t, ctx, 30*time.Second, "cluster page",
		chromedp.Click(chromedp.CSS(`tr[data-cluster="prod"] a`)),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="phase"][.="Provisioned"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-replicas="controlPlane"]`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="kubeconfig"].state-succeeded`)),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="live"][.="live"]`)),
	)
	screenshot(t, ctx, "cluster.png")

	// The kubeconfig link works with the session cookie alone.
	href := eval[string](t, ctx, "kubeconfig link", `document.getElementById("kubeconfig").getAttribute("href")`)
	kubeconfig := eval[string](t, ctx, "download kubeconfig", `fetch(`+jsString(href)+`).then(async r => r.status + "\n" + await r.text())`)
	if !strings.HasPrefix(kubeconfig, "200\n") || !strings.Contains(kubeconfig, "clusters:") {
		t.Fatalf("kubeconfig via the session: %.200q", kubeconfig)
	}
	// The cookie does not authorise changes through the API.
	post := eval[string](t, ctx, "POST with the cookie", `fetch("/v1/clusters/prod/retry", {method: "POST"}).then(r => String(r.status))`)
	if post != "401" {
		t.Fatalf("POST /v1/clusters/prod/retry with only the session cookie: %s, want 401", post)
	}

	// Delete, confirmed by typing the name: the button waits for it.
	disabled := eval[bool](t, ctx, "delete button", `document.getElementById("delete").disabled`)
	if !disabled {
		t.Fatal("the delete button works before the name is typed")
	}
	run(t, ctx, 30*time.Second, "delete",
		chromedp.SendKeys(chromedp.CSS("#confirm"), "prod"),
		chromedp.Click(chromedp.CSS("#delete")),
		chromedp.WaitVisible(chromedp.Search(`//p[@class="notice"][contains(., "deletion started")]`)),
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="prod"]//span[@data-field="phase"][.="Deleted"]`)),
	)
	s.waitStatus("prod", 10*time.Second, func(st map[string]any) bool { return st["phase"] == "Deleted" })

	// Signing out ends the session on the server.
	run(t, ctx, 30*time.Second, "sign out",
		chromedp.Click(chromedp.Search(`//button[.="Sign out"]`)),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
	if status := getWithCookie(t, s, "/v1/clusters", sessionID); status != http.StatusUnauthorized {
		t.Fatalf("the session still works after signing out: %d", status)
	}
	t.Logf("dashboard walk-through took %s", time.Since(start).Round(time.Millisecond))
}

// signIn signs the browser in through the sign-in form, from /.
func signIn(t *testing.T, ctx context.Context, s *service) {
	t.Helper()
	run(t, ctx, 30*time.Second, "sign in",
		chromedp.Navigate(s.url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), s.token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS(`table#clusters`)),
	)
}

// TestDashboardFailureAndRetry: a provision the provider fails shows, live
// on the cluster's page, its code, the remediation and the Retry button;
// the credential replaced on the credentials page and Retry pressed, the
// page follows the cluster to Provisioned.
func TestDashboardFailureAndRetry(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	ctx := browser(t)
	signIn(t, ctx, s)
	run(t, ctx, 30*time.Second, "cluster page, provisioning",
		chromedp.Navigate(s.url+"/clusters/prod"),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="live"][.="live"]`)),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="phase"][.="Provisioning"]`)),
	)
	if !eval[bool](t, ctx, "failure hidden", `document.getElementById("failure").hidden`) {
		t.Fatal("the failure panel shows before anything failed")
	}
	eval[int](t, ctx, "marker", `window.lok8sMarker = 7`)

	s.failCAPICluster("prod", "CreateError", "hcloud: Unauthorized: invalid token (unauthorized)")
	run(t, ctx, 30*time.Second, "failure shown live",
		chromedp.WaitVisible(chromedp.CSS("#failure")),
		chromedp.WaitVisible(chromedp.Search(`//section[@id="failure"]//code[@data-field="code"][.="CredentialsRejected"]`)),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="phase"][.="Failed"]`)),
	)
	type failure struct{ Step, Remediation, Reason, Button string }
	f := eval[failure](t, ctx, "failure panel", `(b => ({
		Step: b.querySelector("[data-field=step]").textContent,
		Remediation: b.querySelector("[data-field=remediation]").textContent,
		Reason: b.querySelector("[data-field=reason]").textContent,
		Button: document.getElementById("retry").textContent}))(document.getElementById("failure"))`)
	if f.Step != "control-plane-initialized" || !strings.Contains(f.Remediation, "credential") || !strings.Contains(f.Reason, "invalid token") || f.Button != "Retry after fixing" {
		t.Fatalf("failure panel: %+v", f)
	}
	if eval[int](t, ctx, "marker", `window.lok8sMarker || 0`) != 7 {
		t.Fatal("the page reloaded instead of showing the failure in place")
	}
	screenshot(t, ctx, "failure.png")
	// After a reload the server renders the same record.
	run(t, ctx, 30*time.Second, "failure after reload",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.Search(`//section[@id="failure"]//code[@data-field="code"][.="CredentialsRejected"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@data-field="not-retryable"]`)),
	)

	// The fix: a new token, on the credentials page; the infrastructure
	// provider then recovers.
	run(t, ctx, 30*time.Second, "replace the credential",
		chromedp.Navigate(s.url+"/credentials"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-credential="prod-credentials"]`)),
		chromedp.SendKeys(chromedp.CSS("#cred-name"), "prod-credentials"),
		chromedp.SendKeys(chromedp.CSS("#cred-provider"), "hetzner"),
		chromedp.SetValue(chromedp.CSS("#cred-fields"), "hcloudToken=a-good-token"),
		chromedp.Click(chromedp.Search(`//button[contains(., "Save credential")]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@class="notice"][contains(., "Credential saved")]`)),
	)
	s.recoverCAPICluster("prod")
	run(t, ctx, 30*time.Second, "retry",
		chromedp.Navigate(s.url+"/clusters/prod"),
		chromedp.WaitVisible(chromedp.CSS("#retry")),
		chromedp.Click(chromedp.CSS("#retry")),
		chromedp.WaitVisible(chromedp.Search(`//p[@class="notice"][contains(., "Retry started")]`)),
		chromedp.WaitVisible(chromedp.Search(`//span[@id="live"][.="live"]`)),
	)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	s.playCloud("prod")
	run(t, ctx, 60*time.Second, "Provisioned after the retry",
		chromedp.WaitVisible(chromedp.Search(`//span[@id="phase"][.="Provisioned"]`)),
	)
	if !eval[bool](t, ctx, "failure hidden", `document.getElementById("failure").hidden`) {
		t.Fatal("the failure panel still shows once the cluster is Provisioned")
	}
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

var updateScreenshots = flag.Bool("update-screenshots", false, "write the dashboard screenshots to docs/screenshots")

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := value(ctx, 20*time.Second, chromedp.FullScreenshot(100))
	if err != nil {
		failAt(t, ctx, "screenshot "+name, err)
	}
	// The docs' copies are refreshed with -update-screenshots; otherwise
	// the test leaves the work tree alone.
	dir := t.TempDir()
	if *updateScreenshots {
		dir = filepath.Join("..", "..", "docs", "screenshots")
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s is empty", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func getWithCookie(t *testing.T, s *service, path, sessionID string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	req.AddCookie(&http.Cookie{Name: "lok8s_session", Value: sessionID})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkSessionLimits checks, without the browser, what the session may and
// may not do: GETs to the API work with it; a form without its CSRF token
// is refused; a token in the URL is never accepted; pages carry the CSP.
func checkSessionLimits(t *testing.T, s *service, sessionID string) {
	t.Helper()
	if status := getWithCookie(t, s, "/v1/clusters", sessionID); status != http.StatusOK {
		t.Fatalf("GET /v1/clusters with the session cookie: %d", status)
	}
	if status := getWithCookie(t, s, "/v1/clusters", "not-a-session"); status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/clusters with a made-up session: %d", status)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, q := range []string{"access_token", "token"} {
		resp, err := noRedirect.Get(s.url + "/v1/clusters?" + q + "=" + url.QueryEscape(s.token))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token in the URL (%s) accepted: %d", q, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.url+"/credentials", strings.NewReader("name=x&provider=hetzner&fields=hcloudToken%3Dx"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "lok8s_session", Value: sessionID})
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("form without its CSRF token: %d, want 403", resp.StatusCode)
	}
	resp, err = noRedirect.Get(s.url + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("Content-Security-Policy: %q", csp)
	}
}
