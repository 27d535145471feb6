package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
)

// playRollout does CAPI's part of a rollout: every control plane and
// MachineDeployment of the cluster reports its latest generation observed
// and all its replicas up to date and available.
func (s *service) playRollout(name string) {
	s.t.Helper()
	s.pauseCloud(name)
	ctx := context.Background()
	for _, gvk := range []schema.GroupVersionKind{mgmt.KubeadmControlPlaneGVK, mgmt.MachineDeploymentGVK} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := s.env.Client.List(ctx, list, client.InNamespace(s.namespace()), client.MatchingLabels{mgmt.LabelCluster: name}); err != nil {
			s.t.Fatal(err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			replicas, _, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas")
			status := map[string]any{
				"observedGeneration": obj.GetGeneration(), "replicas": replicas, "readyReplicas": replicas,
				"availableReplicas": replicas, "upToDateReplicas": replicas,
			}
			if err := unstructured.SetNestedField(obj.Object, status, "status"); err != nil {
				s.t.Fatal(err)
			}
			if err := s.env.Client.Status().Update(ctx, obj); err != nil {
				s.t.Fatalf("rollout status of %s %s: %v", gvk.Kind, obj.GetName(), err)
			}
		}
	}
}

// patch sends a JSON merge patch with the cluster's current ETag. The
// cloud stand-in stops there: the test plays CAPI's rollout itself
// (playRollout), so it can see the update while it waits.
func (s *service) patch(name, patch string) (int, []byte) {
	s.t.Helper()
	s.pauseCloud(name)
	req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/clusters/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodPatch, s.url+"/v1/clusters/"+name, strings.NewReader(patch))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("If-Match", resp.Header.Get("ETag"))
	resp, err = s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// waitJobState waits until the River job of kind is in state.
func (s *service) waitJobState(kind, state string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if err := s.db.QueryRow(context.Background(), `SELECT state FROM river_job WHERE kind = $1 ORDER BY id DESC LIMIT 1`, kind).Scan(&got); err != nil {
			s.t.Fatal(err)
		}
		if got == state {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s job is %s, want %s", kind, got, state)
}

// finishUpdate waits for the update to reach the rollout step, plays CAPI's
// rollout, and waits for Provisioned.
func (s *service) finishUpdate(name string) map[string]any {
	s.t.Helper()
	// The rollout step waits, or found nothing to wait for (a removed
	// pool, changed addons: what CAPI reported already holds).
	s.waitStatus(name, 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "rollout") == "running" || stepState(st, "rollout") == "succeeded" || st["phase"] == "Failed"
	})
	s.playRollout(name)
	done := s.waitProvisioned(name)
	if done["phase"] != "Provisioned" || stepState(done, "rollout") != "succeeded" {
		s.t.Fatalf("update did not finish: %v %v", done["phase"], done["message"])
	}
	return done
}

func TestScalePoolChangesOnlyItsReplicas(t *testing.T) {
	t.Parallel()
	s, _ := startProvisioned(t)
	before := resourceVersions(t, s, "prod")

	// An immutable field is refused, naming it, and changes nothing.
	if status, body := s.patch("prod", `{"spec":{"hcloud":{"region":"nbg1"}}}`); status != http.StatusUnprocessableEntity ||
		!strings.Contains(string(body), "spec.hcloud.region") {
		t.Fatalf("region change: %d %s", status, body)
	}
	if status, body := s.patch("prod", `{"spec":{"hcloud":{"workers":{"general":{"replicas":5}}}}}`); status != http.StatusAccepted {
		t.Fatalf("scale: %d %s", status, body)
	}
	// A writer still holding the first ETag is refused.
	req, _ := http.NewRequest(http.MethodPatch, s.url+"/v1/clusters/prod", strings.NewReader(`{"spec":{"hcloud":{"workers":{"gpu":{"replicas":2}}}}}`))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("If-Match", `"1"`)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d", resp.StatusCode)
	}
	// Running, and its first check has said what it waits for.
	waiting := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "rollout") == "running" && stepOf(st, "rollout")["message"] != nil
	})
	if waiting["phase"] != "Updating" || !strings.Contains(stepOf(waiting, "rollout")["message"].(string), "prod-md-general") {
		t.Fatalf("while rolling out: %v, rollout step %v", waiting["phase"], stepOf(waiting, "rollout"))
	}
	md := s.get(mgmt.MachineDeploymentGVK, s.namespace(), "prod-md-general")
	if nested(t, md, "spec", "replicas") != int64(5) {
		t.Fatalf("general replicas %v", nested(t, md, "spec", "replicas"))
	}
	after := resourceVersions(t, s, "prod")
	for k, v := range before {
		if k == "MachineDeployment/prod-md-general" || strings.HasPrefix(k, "Cluster/") {
			continue
		}
		if after[k] != v {
			t.Errorf("%s changed on a scale of another pool", k)
		}
	}
	s.finishUpdate("prod")
}

func TestUpgradeOneMinorAtATime(t *testing.T) {
	t.Parallel()
	s, _ := startProvisioned(t)

	status, body := s.patch("prod", `{"spec":{"kubernetes":{"version":"v1.36.1"}}}`)
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), "one minor version at a time") {
		t.Fatalf("two-minor jump: %d %s", status, body)
	}
	if status, body := s.patch("prod", `{"spec":{"kubernetes":{"version":"v1.35.4"}}}`); status != http.StatusAccepted {
		t.Fatalf("upgrade: %d %s", status, body)
	}
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "rollout") == "running" })
	kcp := s.get(mgmt.KubeadmControlPlaneGVK, s.namespace(), "prod-control-plane")
	if nested(t, kcp, "spec", "version") != "v1.35.4" {
		t.Fatalf("KubeadmControlPlane version %v", nested(t, kcp, "spec", "version"))
	}
	for _, pool := range []string{"general", "gpu"} {
		md := s.get(mgmt.MachineDeploymentGVK, s.namespace(), "prod-md-"+pool)
		if v := nested(t, md, "spec", "template", "spec", "version"); v != "v1.35.4" {
			t.Fatalf("pool %s version %v", pool, v)
		}
	}
	s.finishUpdate("prod")
	if status, body := s.patch("prod", `{"spec":{"kubernetes":{"version":"v1.33.10"}}}`); status != http.StatusUnprocessableEntity || !strings.Contains(string(body), "downgrades") {
		t.Fatalf("downgrade: %d %s", status, body)
	}
}

func TestRemovedPoolIsPruned(t *testing.T) {
	t.Parallel()
	s, _ := startProvisioned(t)
	if status, body := s.patch("prod", `{"spec":{"hcloud":{"workers":{"gpu":null}}}}`); status != http.StatusAccepted {
		t.Fatalf("remove pool: %d %s", status, body)
	}
	done := s.finishUpdate("prod")
	if msg := stepOf(done, "prune")["message"].(string); !strings.Contains(msg, "MachineDeployment prod-md-gpu") {
		t.Fatalf("prune step: %q", msg)
	}
	for _, gvk := range []schema.GroupVersionKind{mgmt.MachineDeploymentGVK, {Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "HCloudMachineTemplate"}} {
		probe := &unstructured.Unstructured{}
		probe.SetGroupVersionKind(gvk)
		if err := s.env.Client.Get(context.Background(), client.ObjectKey{Namespace: s.namespace(), Name: "prod-md-gpu"}, probe); err == nil {
			t.Errorf("%s prod-md-gpu survived the pool's removal", gvk.Kind)
		}
	}
	s.get(mgmt.MachineDeploymentGVK, s.namespace(), "prod-md-general")
}

// TestDeleteWhileProvisioning deletes a cluster whose provisioning waits
// for CAPI: the provisioning stops, its objects go and the name is free.
func TestDeleteWhileProvisioning(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	objs := s.renderedObjects("prod")

	s.mustDo(http.MethodDelete, "/v1/clusters/prod", "", "", nil, http.StatusAccepted)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Deleted" || st["phase"] == "Failed" })
	history := s.mustDo(http.MethodGet, "/v1/clusters/prod/operations", "", "", nil, http.StatusOK)["items"].([]any)
	if len(history) != 2 || history[0].(map[string]any)["state"] != "succeeded" || history[1].(map[string]any)["state"] != "cancelled" {
		t.Fatalf("history: %v", history)
	}
	s.waitJobState("provision", "cancelled")
	for _, o := range objs {
		probe := &unstructured.Unstructured{}
		probe.SetGroupVersionKind(o.GroupVersionKind())
		if err := s.env.Client.Get(context.Background(), client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, probe); err == nil {
			t.Errorf("%s %s still exists", o.GetKind(), o.GetName())
		}
	}
	s.submit(seedSpecWithoutAddons(t))
}

func TestCancelAndRetry(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	op := s.submit(seedSpecWithoutAddons(t))["operation"].(map[string]any)["id"].(string)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })

	cancelled := s.mustDo(http.MethodPost, "/v1/clusters/prod/operations/"+op+"/cancel", "", "", nil, http.StatusOK)
	if cancelled["phase"] != "Failed" {
		t.Fatalf("after cancel: %v", cancelled)
	}
	s.waitJobState("provision", "cancelled") // the worker stopped
	st := s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
	if st["phase"] != "Failed" || stepState(st, "control-plane-initialized") != "failed" || stepState(st, "kubeconfig") != "pending" {
		t.Fatalf("cancelled state: %v", st)
	}

	retry := s.mustDo(http.MethodPost, "/v1/clusters/prod/retry", "", "", nil, http.StatusAccepted)
	if retry["operation"].(map[string]any)["id"] == op {
		t.Fatal("retry reused the cancelled operation")
	}
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	s.playCloud("prod")
	done := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Provisioned" || st["phase"] == "Failed" })
	if done["phase"] != "Provisioned" {
		t.Fatalf("after retry: %v %v", done["phase"], done["message"])
	}
}
