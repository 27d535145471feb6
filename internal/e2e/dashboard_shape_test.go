package e2e

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// warnedSpec is a cluster of the lok8s CLI's current shape with fields
// the service accepts and ignores: metadata.labels and the CLI's
// spec.provider.credentials.envVars.
const warnedSpec = `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: warned
  labels:
    team: web
spec:
  kubernetes:
    version: v1.34.2
  cluster:
    domain: warned.example.com
  provider:
    name: hetzner
    config:
      region: fsn1
      sshKeyName: ops
    credentials:
      envVars: [HCLOUD_TOKEN]
      secretRef: prod-credentials
  controlPlane:
    replicas: 1
    type: cax21
  workers:
    general:
      replicas: 1
      type: cax21
  bootstrap:
    - cilium
    - ccm
`

// TestDashboardCurrentShapeAndWarnings: the guided form writes the lok8s
// CLI's current shape (spec.provider, spec.controlPlane, spec.workers),
// which the API stores as such; a pasted spec's ignored fields are shown
// on the dry run's page and, carried over the redirect, on the page a
// create leads to, in that session only.
func TestDashboardCurrentShapeAndWarnings(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	session, csrf := s.sessionFor(s.token)
	page := func(session, method, path string, form url.Values) (int, string, string) {
		t.Helper()
		status, location, body := s.dashboardPage(session, method, path, form)
		return status, location, html.UnescapeString(body)
	}
	const warningsSection = `<section class="warnings"`

	// The guided form: checked, its spec is of the current shape and has
	// nothing ignored; created, it is stored in that shape.
	form := url.Values{"csrf": {csrf}, "mode": {"form"}, "name": {"form-shape"}, "domain": {"form-shape.example.com"},
		"version": {"v1.34.2"}, "provider": {"hetzner"}, "credential": {"prod-credentials"}, "region": {"fsn1"}, "sshKeyName": {"ops"},
		"cpReplicas": {"3"}, "cpType": {"cax21"}, "poolName": {"general"}, "poolReplicas": {"2"}, "poolType": {"cax21"},
		"addons": {"cilium", "ccm"}}
	form.Set("action", "check")
	status, _, body := page(session, http.MethodPost, "/clusters/new", form)
	if status != http.StatusOK || !strings.Contains(body, "The spec is valid") {
		t.Fatalf("check the form: %d\n%s", status, body)
	}
	for _, want := range []string{"  provider:\n    name: hetzner\n    config:\n      region: fsn1\n", "    credentials:\n      secretRef: prod-credentials\n",
		"  controlPlane:\n    replicas: 3\n", "  workers:\n    general:\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("the form's spec lacks\n%s", want)
		}
	}
	if strings.Contains(body, "hcloud:") || strings.Contains(body, "secretName") || strings.Contains(body, warningsSection) {
		t.Errorf("the form's spec is not of the current shape, or has warnings:\n%s", body)
	}
	form.Set("action", "create")
	if status, location, body := page(session, http.MethodPost, "/clusters/new", form); status != http.StatusSeeOther || location != "/?done=created" {
		t.Fatalf("create from the form: %d, Location %q\n%s", status, location, body)
	}
	var stored struct {
		Spec struct {
			Spec map[string]json.RawMessage `json:"spec"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(mustBody(t, s, "/v1/clusters/form-shape"), &stored); err != nil {
		t.Fatal(err)
	}
	if p := string(stored.Spec.Spec["provider"]); !strings.Contains(p, `"name":"hetzner"`) || !strings.Contains(p, `"secretRef":"prod-credentials"`) ||
		stored.Spec.Spec["controlPlane"] == nil || stored.Spec.Spec["hcloud"] != nil {
		t.Fatalf("stored spec is not of the current shape: %s", mustBody(t, s, "/v1/clusters/form-shape"))
	}

	// A pasted spec with ignored fields: the dry run's page lists them.
	wantWarnings := []string{"metadata.labels: ignored: ", "spec.provider.credentials.envVars: ignored: "}
	hasWarnings := func(body string) bool {
		i := strings.Index(body, warningsSection)
		if i < 0 {
			return false
		}
		for _, w := range wantWarnings {
			if !strings.Contains(body[i:], "<li>"+w) {
				return false
			}
		}
		return true
	}
	yaml := url.Values{"csrf": {csrf}, "mode": {"yaml"}, "spec": {warnedSpec}, "action": {"check"}}
	if status, _, body := page(session, http.MethodPost, "/clusters/new", yaml); status != http.StatusOK ||
		!strings.Contains(body, "The spec is valid") || !hasWarnings(body) {
		t.Fatalf("check the pasted spec: %d, want its warnings shown\n%s", status, body)
	}
	// Created, the page the create leads to lists them.
	yaml.Set("action", "create")
	status, location, body := page(session, http.MethodPost, "/clusters/new", yaml)
	if status != http.StatusSeeOther || !strings.HasPrefix(location, "/?done=created&") {
		t.Fatalf("create the pasted spec: %d, Location %q\n%s", status, location, body)
	}
	status, _, body = page(session, http.MethodGet, location, nil)
	if status != http.StatusOK || !strings.Contains(body, "Cluster submitted") || !hasWarnings(body) || !strings.Contains(body, `data-cluster="warned"`) {
		t.Fatalf("the page after create: %d, want the notice and the warnings\n%s", status, body)
	}
	// The same link in another session shows no warnings.
	other, _ := s.sessionFor(s.token)
	if _, _, body := page(other, http.MethodGet, location, nil); strings.Contains(body, warningsSection) {
		t.Fatalf("another session's link put warnings on the page:\n%s", body)
	}
}

// dashboardPage requests a dashboard page in session (a form when form is
// set), following no redirect: its status, Location and body.
func (s *service) dashboardPage(session, method, path string, form url.Values) (status int, location, body string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "lok8s_session", Value: session})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(data)
}

func mustBody(t *testing.T, s *service, path string) []byte {
	t.Helper()
	status, body := s.do(http.MethodGet, path, "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return body
}
