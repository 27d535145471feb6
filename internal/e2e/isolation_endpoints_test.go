package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
)

// TestEveryEndpointIsolatesTenants runs every operation openapi.yaml
// describes as a second tenant against the first tenant's names (its
// cluster, operation, credential and tenant), in SaaS mode and on a
// management cluster both tenants name, then reads the management cluster
// directly: none of the first tenant's objects was touched, and the first
// tenant's own view of its cluster is as it was. An operation added to the
// document without an expectation here fails the test.
func TestEveryEndpointIsolatesTenants(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"saas", "named"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			isolationSuite(t, mode == "named")
		})
	}
}

// attack is the body a second tenant sends with a request.
type attack struct {
	body, content string
}

func isolationSuite(t *testing.T, named bool) {
	ctx := context.Background()
	const shared = "shared.example.com"
	s := startService(t, options{namedClusters: []string{shared}})
	victimNS := s.namespace()
	spec := seedSpecWithoutAddons(t)
	if named {
		victimNS = randomName("victim-")
		spec = strings.Replace(spec, "    namespace: default\n", "    namespace: "+victimNS+"\n", 1)
		spec = strings.Replace(spec, "  credentials:\n", "  managementCluster:\n    domain: "+shared+"\n  credentials:\n", 1)
	}
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	var objs []*unstructured.Unstructured
	if named {
		s.submit(spec)
		s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
			return stepState(st, "control-plane-initialized") == "running"
		})
		objs = s.renderedObjects("prod")
	} else {
		objs = provisionAndFinish(t, s, "prod", spec)
	}
	objs = append(objs, secretObject(victimNS, "prod-credentials"))
	before := snapshot(t, s, objs)
	victimView := func() string {
		c := s.mustDo(http.MethodGet, "/v1/clusters/prod", "", "", nil, http.StatusOK)
		ops := s.mustDo(http.MethodGet, "/v1/clusters/prod/operations", "", "", nil, http.StatusOK)
		cred := s.mustDo(http.MethodGet, "/v1/credentials/prod-credentials", "", "", nil, http.StatusOK)
		out, _ := json.Marshal([]any{c["generation"], c["phase"], len(ops["items"].([]any)), cred})
		return string(out)
	}
	viewBefore := victimView()
	opID := s.mustDo(http.MethodGet, "/v1/clusters/prod/operations", "", "", nil, http.StatusOK)["items"].([]any)[0].(map[string]any)["id"].(string)

	attacker, token := s.newTenant("attacker-")

	bodies := map[string]attack{
		"POST /v1/clusters":                               {body: spec, content: "application/yaml"},
		"PUT /v1/clusters/{name}":                         {body: spec, content: "application/yaml"},
		"PATCH /v1/clusters/{name}":                       {body: `{"spec":{"hcloud":{"workers":{"general":{"replicas":9}}}}}`, content: "application/merge-patch+json"},
		"PUT /v1/credentials/{name}":                      {body: `{"provider":"hetzner","hcloudToken":"attacker-token"}`, content: "application/json"},
		"POST /v1/tenants":                                {body: `{"name":"stolen"}`, content: "application/json"},
		"POST /v1/tenants/{tenant}/tokens":                {body: `{"name":"stolen"}`, content: "application/json"},
		"PUT /v1/tenants/{tenant}/quota":                  {body: `{"clusters":0}`, content: "application/json"},
		"POST /v1/tokens":                                 {body: `{"name":"own"}`, content: "application/json"},
		"POST /v1/clusters/{name}/retry":                  {},
		"POST /v1/clusters/{name}/operations/{id}/cancel": {},
		"POST /api/clusters": {body: `{"domain":"prod.example.com","kind":"Capi","provider":"hetzner","region":"fsn1","kubernetesVersion":"v1.34.2","controlPlaneReplicas":3}`,
			content: "application/json"},
		"PUT /v1/tenants/{tenant}/hosted-profiles/{provider}": {body: `{"credential":"prod-credentials","controlPlaneType":"cax21"}`, content: "application/json"},
	}
	// The first tenant's cluster by its /api id.
	var byDomain []map[string]any
	_, data := s.do(http.MethodGet, "/api/clusters?domain=prod.example.com", "", "", nil)
	if err := json.Unmarshal(data, &byDomain); err != nil || len(byDomain) != 1 {
		t.Fatalf("the first tenant's cluster by domain: %s", data)
	}
	victimID := byDomain[0]["id"].(string)
	// What the second tenant gets, holding none of its own yet.
	want := map[string]int{
		"GET /healthz": 200, "GET /readyz": 200, "GET /openapi.yaml": 200, "GET /v1/catalog": 200, "GET /v1/quota": 200,
		"GET /v1/clusters": 200, "GET /v1/events": 200, "GET /v1/credentials": 200,
		"GET /v1/clusters/{name}": 404, "PUT /v1/clusters/{name}": 404, "PATCH /v1/clusters/{name}": 404, "DELETE /v1/clusters/{name}": 404,
		"GET /v1/clusters/{name}/status": 404, "GET /v1/clusters/{name}/kubeconfig": 404, "GET /v1/clusters/{name}/manifests": 404,
		"GET /v1/clusters/{name}/events": 404, "POST /v1/clusters/{name}/retry": 404, "GET /v1/clusters/{name}/operations": 404,
		"POST /v1/clusters/{name}/operations/{id}/cancel": 404,
		"GET /v1/credentials/{name}":                      404, "DELETE /v1/credentials/{name}": 404,
		"PUT /v1/credentials/{name}": 201, // its own credential of that name
		"POST /v1/tenants":           403, "GET /v1/tenants/{tenant}/tokens": 403, "POST /v1/tenants/{tenant}/tokens": 403,
		"DELETE /v1/tenants/{tenant}/tokens/{id}": 403, "GET /v1/tenants/{tenant}/quota": 403, "PUT /v1/tenants/{tenant}/quota": 403,
		// Its own tokens: it lists only its own, makes one of its own, and
		// cannot revoke the first tenant's (by that token's id).
		"GET /v1/tokens": 200, "POST /v1/tokens": 201, "DELETE /v1/tokens/{id}": 404,
		// The hosted-mode API: by the first tenant's cluster id and domain,
		// nothing; a create without a profile of its own is refused.
		"GET /api/clusters/{id}": 404, "DELETE /api/clusters/{id}": 404, "GET /api/clusters/{id}/kubeconfig": 404,
		"GET /api/clusters": 200, "DELETE /api/clusters": 404, "POST /api/clusters": 422, "POST /api/clusters/register": 501,
		"GET /v1/tenants/{tenant}/hosted-profiles/{provider}": 403, "PUT /v1/tenants/{tenant}/hosted-profiles/{provider}": 403,
		// Last: in SaaS mode the second tenant gets a cluster of that name
		// in its own namespace; on the shared cluster, the namespace is the
		// first tenant's.
		"POST /v1/clusters": 202,
	}
	if named {
		want["POST /v1/clusters"] = 422
	}
	ops := validator.Operations()
	slices.SortStableFunc(ops, func(a, b string) int { // the POST that creates last
		return boolCmp(a == "POST /v1/clusters", b == "POST /v1/clusters")
	})
	victimTokenID := ownTokenID(t, s, s.token)
	fill := strings.NewReplacer("/v1/credentials/{name}", "/v1/credentials/prod-credentials",
		"/tokens/{id}", "/tokens/"+victimTokenID, "/api/clusters/{id}", "/api/clusters/"+victimID,
		"{name}", "prod", "{id}", opID, "{tenant}", s.tenant, "{provider}", "hetzner")
	for _, op := range ops {
		status, ok := want[op]
		if !ok {
			t.Errorf("%s: no expectation for a second tenant; add one", op)
			continue
		}
		method, path, _ := strings.Cut(op, " ")
		path = fill.Replace(path)
		if path == "/api/clusters" && method != http.MethodPost {
			path += "?domain=prod.example.com" // the first tenant's domain
		}
		if strings.HasSuffix(path, "/events") {
			got, data := readStream(t, s.url+path, token)
			if got != status || strings.Contains(data, "data:") {
				t.Errorf("%s: %d, %q; want %d and no event", op, got, data, status)
			}
			continue
		}
		a := bodies[op]
		got, body := s.do(method, path, token, a.content, []byte(a.body))
		if got != status {
			t.Errorf("%s: %d %.300s; want %d", op, got, body, status)
		}
		if (!named && strings.Contains(string(body), victimNS)) || strings.Contains(string(body), hcloudToken) {
			t.Errorf("%s: the answer names the first tenant's namespace or secret: %.300s", op, body)
		}
		if op == "GET /api/clusters" && strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("%s: the second tenant finds %s", op, body)
		}
		if op == "GET /v1/clusters" || op == "GET /v1/credentials" {
			var list map[string]any
			if err := json.Unmarshal(body, &list); err != nil || len(list["items"].([]any)) != 0 {
				t.Errorf("%s: the second tenant lists %s", op, body)
			}
		}
		if op == "GET /v1/tokens" && strings.Contains(string(body), victimTokenID) {
			t.Errorf("%s: the second tenant lists the first tenant's token: %s", op, body)
		}
	}

	// With a cluster of its own of that name (SaaS), everything it does to
	// it stays in its namespace.
	if !named {
		s.waitStatusAs(token, "prod", func(st map[string]any) bool {
			return stepState(st, "control-plane-initialized") == "running"
		})
		s.mustDo(http.MethodDelete, "/v1/clusters/prod", token, "", nil, http.StatusAccepted)
		s.waitStatusAs(token, "prod", func(st map[string]any) bool { return st["phase"] == "Deleted" })
	}

	after := snapshot(t, s, objs)
	for key, was := range before {
		if now := after[key]; !reflect.DeepEqual(now, was) {
			t.Errorf("%s changed under the second tenant:\nbefore %v\nafter  %v", key, was, now)
		}
	}
	if id := ownTokenID(t, s, s.token); id != victimTokenID {
		t.Errorf("the first tenant's token no longer works as before (id %q, was %q)", id, victimTokenID)
	}
	if view := victimView(); view != viewBefore {
		t.Errorf("the first tenant's view changed:\nbefore %s\nafter  %s", viewBefore, view)
	}
	// Nothing of the second tenant's landed in the first tenant's namespace.
	for _, o := range objs {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(o.GroupVersionKind().GroupVersion().WithKind(o.GetKind() + "List"))
		if err := s.env.Client.List(ctx, list, client.InNamespace(victimNS), client.MatchingLabels{mgmt.LabelTenant: attacker}); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) > 0 {
			t.Errorf("%d %s of the second tenant in the first tenant's namespace", len(list.Items), o.GetKind())
		}
	}
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}

// snapshot is what matters of each object: present, owner labels, spec
// generation, and a Secret's data.
func snapshot(t *testing.T, s *service, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		key := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		if err := s.env.Client.Get(context.Background(), client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, got); err != nil {
			out[key] = err.Error()
			continue
		}
		data, _, _ := unstructured.NestedMap(got.Object, "data")
		out[key] = []any{got.GetUID(), got.GetLabels(), got.GetGeneration(), data}
	}
	return out
}

// readStream opens an event stream from the start for a moment and
// returns its status and what it sent.
func readStream(t *testing.T, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Last-Event-ID", "0")
	resp, err := http.DefaultClient.Do(req) // not the validating client: a stream never ends
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		sb.WriteString(sc.Text() + "\n")
	}
	return resp.StatusCode, sb.String()
}

// waitStatusAs polls a cluster's status with token until cond holds.
func (s *service) waitStatusAs(token, name string, cond func(map[string]any) bool) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if st := s.mustDo(http.MethodGet, "/v1/clusters/"+name+"/status", token, "", nil, http.StatusOK); cond(st) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("cluster %s of another tenant: condition not met in 60s", name)
}

// ownTokenID is the id of the token a request is made with, from GET
// /v1/tokens ("" when the list marks none current).
func ownTokenID(t *testing.T, s *service, token string) string {
	t.Helper()
	list := s.mustDo(http.MethodGet, "/v1/tokens", token, "", nil, http.StatusOK)
	for _, it := range list["items"].([]any) {
		if m := it.(map[string]any); m["current"] == true {
			return m["id"].(string)
		}
	}
	return ""
}
