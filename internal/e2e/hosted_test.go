package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// hostedClient plays the lok8s CLI's hosted-mode client
// (github.com/kernpilot/lok8s .lok8s/libs/kubehz/hosted, main): curl -f
// with a bearer token, so any status of 400 or more is a failure and its
// body goes unread.
type hostedClient struct {
	s     *service
	token string
}

// call sends one request as the client's curl would and returns the body,
// or the status as an error when curl -f would fail.
func (c hostedClient) call(method, path string, body []byte) ([]byte, error) {
	c.s.t.Helper()
	req, err := http.NewRequest(method, c.s.url+path, bytes.NewReader(body))
	if err != nil {
		c.s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	return data, nil
}

// create is kubehz::provision_hosted's POST: it reads .id.
func (c hostedClient) create(payload []byte) string {
	c.s.t.Helper()
	data, err := c.call(http.MethodPost, "/api/clusters", payload)
	if err != nil {
		c.s.t.Fatalf("Failed to create hosted cluster via kubehz API: %v", err)
	}
	var out struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.ID == nil || *out.ID == "" {
		c.s.t.Fatalf("kubehz API did not return a cluster ID: %s", data)
	}
	return *out.ID
}

// wait is kubehz::wait_for_cluster, its 10 s pace scaled to 200 ms: nil
// on Running, ready or Ready; an error on Failed or Error; anything else
// (an unreadable answer included, as "Unknown") waits.
func (c hostedClient) wait(id string, timeout time.Duration) error {
	c.s.t.Helper()
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(200 * time.Millisecond) {
		status := "Unknown"
		if data, err := c.call(http.MethodGet, "/api/clusters/"+id, nil); err == nil {
			var out struct {
				Status *string `json:"status"`
			}
			if json.Unmarshal(data, &out) == nil && out.Status != nil {
				status = *out.Status
			}
		}
		switch status {
		case "Running", "ready", "Ready":
			return nil
		case "Failed", "Error":
			return fmt.Errorf("hosted cluster %s failed: status=%s", id, status)
		}
	}
	return fmt.Errorf("timed out waiting for hosted cluster %s after %s", id, timeout)
}

// lookup is the destroy path's GET ?domain=, reading .[0].id.
func (c hostedClient) lookup(domain string) (string, bool) {
	c.s.t.Helper()
	data, err := c.call(http.MethodGet, "/api/clusters?domain="+domain, nil)
	if err != nil {
		c.s.t.Fatalf("lookup: %v", err)
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		c.s.t.Fatalf("lookup: not an array: %s", data)
	}
	if len(list) == 0 {
		return "", false
	}
	return list[0].ID, true
}

// hostedPayload is kubehz::build_cluster_payload's body.
func hostedPayload(domain string) []byte {
	payload, _ := json.Marshal(map[string]any{"domain": domain, "kind": "Capi", "provider": "hetzner", "region": "fsn1",
		"kubernetesVersion": "v1.34.2", "controlPlaneReplicas": 1, "hosting": "hosted", "access": "none"})
	return payload
}

// setUpHosted gives the service's tenant a credential and, as the admin,
// its hosted profile for hetzner.
func setUpHosted(s *service) hostedClient {
	s.t.Helper()
	s.putCredential("hosted-hcloud", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.mustDo(http.MethodPut, "/v1/tenants/"+s.tenant+"/hosted-profiles/hetzner", s.admin, "application/json",
		[]byte(`{"credential":"hosted-hcloud","config":{"sshKeyName":"ops"},"controlPlaneType":"cax21",
		  "workers":{"general":{"replicas":1,"type":"cax21"}},"bootstrap":["cilium","ccm"]}`), http.StatusOK)
	return hostedClient{s: s, token: s.token}
}

// startHostedCluster starts the service in hosted mode (setUpHosted),
// creates the cluster of domain (named name) through the hosted API and
// waits until CAPI has its objects: its control-plane-initialized step
// runs, or it failed. It returns the service, the client and the id.
func startHostedCluster(t *testing.T, domain, name string) (*service, hostedClient, string) {
	t.Helper()
	s := startService(t, options{})
	c := setUpHosted(s)
	id := c.create(hostedPayload(domain))
	s.waitStatus(name, 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})
	return s, c, id
}

// TestHostedModeClient plays `lo provision` and `lo destroy` in hosted
// mode against the real server: create → poll until Running (the cloud
// stand-in provisions it) → kubeconfig → a repeated create (the same id)
// → lookup by domain → delete by domain → gone.
func TestHostedModeClient(t *testing.T) {
	t.Parallel()
	const domain, name = "hosted.example.com", "hosted-example-com"
	s, c, id := startHostedCluster(t, domain, name)
	s.playCloud(name)
	if err := c.wait(id, 90*time.Second); err != nil {
		t.Fatal(err)
	}

	kubeconfig, err := c.call(http.MethodGet, "/api/clusters/"+id+"/kubeconfig", nil)
	if err != nil {
		t.Fatalf("Failed to download kubeconfig: %v", err)
	}
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil || len(cfg.Clusters) == 0 || len(cfg.AuthInfos) == 0 {
		t.Fatalf("the kubeconfig is not one (%v):\n%s", err, kubeconfig)
	}

	if again := c.create(hostedPayload(domain)); again != id {
		t.Fatalf("a repeated create made cluster %s beside %s", again, id)
	}

	found, ok := c.lookup(domain)
	if !ok || found != id {
		t.Fatalf("lookup by domain: %q, want %s", found, id)
	}
	if _, err := c.call(http.MethodDelete, "/api/clusters?domain="+domain, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, ok := c.lookup(domain); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster is still found by its domain 60 s after its delete")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := c.call(http.MethodGet, "/api/clusters/"+id, nil); err == nil {
		t.Fatal("GET by id still answers for the deleted cluster")
	}
	// /api answers problems, never the dashboard's HTML.
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api/nowhere", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusNotFound || ct != "application/problem+json" {
		t.Fatalf("/api/nowhere: %d %s", resp.StatusCode, ct)
	}
}

// TestHostedModeClientFailure: when CAPI fails the cluster, the client's
// poll sees Failed and gives up.
func TestHostedModeClientFailure(t *testing.T) {
	t.Parallel()
	const domain, name = "broken.example.com", "broken-example-com"
	s, c, id := startHostedCluster(t, domain, name)
	s.failCAPICluster(name, "InvalidConfiguration", "hcloud: server type cax21 is not available in fsn1")
	err := c.wait(id, 60*time.Second)
	if err == nil || err.Error() != "hosted cluster "+id+" failed: status=Failed" {
		t.Fatalf("wait: %v", err)
	}
}
