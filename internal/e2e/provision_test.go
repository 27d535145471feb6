package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
)

const hcloudToken = "hcloud-e2e-token-31c4"

// seedSpec is the seed's example cluster, as in the README walk-through.
func seedSpec(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/prod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// seedBootstrap and seedGitOps are the seed spec's addon sections.
const (
	seedBootstrap = "  bootstrap:\n    - cilium\n    - ccm\n    - cert-manager\n"
	seedGitOps    = "  gitops:\n    provider: flux\n    repo: https://github.com/myorg/infra.git\n    branch: main\n    path: clusters/prod.example.com\n"
)

// seedSpecWithout is the seed's cluster without the given sections.
func seedSpecWithout(t *testing.T, sections ...string) string {
	t.Helper()
	spec := seedSpec(t)
	for _, section := range sections {
		without := strings.Replace(spec, section, "", 1)
		if without == spec {
			t.Fatalf("examples/prod.yaml no longer has the section this test removes:\n%s", section)
		}
		spec = without
	}
	return spec
}

// seedCNIAndCCM is what a Hetzner cluster's spec.bootstrap cannot do
// without: its nodes become Ready only with a CNI and the CCM.
const seedCNIAndCCM = "  bootstrap:\n    - cilium\n    - ccm\n"

// seedSpecWithoutAddons is the seed's cluster with only the addons it
// needs to become Ready (cilium and the ccm) and without spec.gitops, for
// tests about the pipeline rather than the addons (addon tests serve
// their charts and run a workload cluster of their own).
func seedSpecWithoutAddons(t *testing.T) string {
	t.Helper()
	return seedSpecWithout(t, seedBootstrap, seedGitOps) + seedCNIAndCCM
}

const awsSpec = `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: shop
spec:
  kubernetes:
    version: v1.32.4
  cluster:
    domain: shop.example.com
  aws:
    region: eu-central-1
    sshKeyName: deploy
    controlPlane:
      replicas: 3
      type: m6i.large
    workers:
      general:
        replicas: 2
        type: m6i.xlarge
  bootstrap: [cilium, ccm]
`

const hrobotSpec = `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: metal
spec:
  kubernetes:
    version: v1.33.2
  cluster:
    domain: metal.example.com
  hcloud:
    region: hel1
    sshKeyName: ops
    controlPlane:
      replicas: 1
      type: cax21
  hrobot:
    sshKeyName: ops-robot
    workers:
      storage:
        replicas: 2
        type: ax41
    hosts:
      - {name: ax41-a, serverID: 2317525, type: ax41, rootDeviceHints: {wwn: eui.0025388801b4f8a1}}
      - {name: ax41-b, serverID: 2105469, type: ax41, rootDeviceHints: {wwn: "0x5000c500a1b2c3d4"}}
  bootstrap: [cilium, ccm]
`

// renderedObjects reads the cluster's manifests through the API and checks
// each object exists on the management cluster with the owner labels.
func (s *service) renderedObjects(name string) []*unstructured.Unstructured {
	s.t.Helper()
	status, body := s.do(http.MethodGet, "/v1/clusters/"+name+"/manifests", "", "", nil)
	if status != http.StatusOK {
		s.t.Fatalf("manifests: %d %s", status, body)
	}
	objs, err := mgmt.DecodeObjects(body)
	if err != nil {
		s.t.Fatal(err)
	}
	if len(objs) == 0 {
		s.t.Fatal("no manifests")
	}
	for _, want := range objs {
		got := s.get(want.GroupVersionKind(), want.GetNamespace(), want.GetName())
		l := got.GetLabels()
		if l[mgmt.LabelCluster] != name || l[mgmt.LabelTenant] == "" {
			s.t.Errorf("%s %s: owner labels missing: %v", got.GetKind(), got.GetName(), l)
		}
	}
	return objs
}

func findKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func nested(t *testing.T, obj *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, path...)
	if err != nil || !found {
		t.Fatalf("%s %s: no field %s", obj.GetKind(), obj.GetName(), strings.Join(path, "."))
	}
	return v
}

// startProvisioned starts the service and provisions the seed cluster
// without addons (seedSpecWithoutAddons, as "prod", with its hcloud
// credential) to Provisioned; it returns the service and the cluster's
// objects on the management cluster.
func startProvisioned(t *testing.T) (*service, []*unstructured.Unstructured) {
	t.Helper()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	return s, provisionAndFinish(t, s, "prod", seedSpecWithoutAddons(t))
}

// provisionAndFinish runs a spec from POST to Provisioned: the objects
// appear on the management cluster, the wait step waits for CAPI, the test
// plays the infrastructure provider, and the kubeconfig then works.
func provisionAndFinish(t *testing.T, s *service, name, specYAML string) []*unstructured.Unstructured {
	t.Helper()
	s.submit(specYAML)
	waiting := s.waitStatus(name, 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})
	if waiting["phase"] != "Provisioning" {
		t.Fatalf("while waiting for CAPI: phase %v (%v)", waiting["phase"], waiting["message"])
	}
	for _, step := range []string{"detect", "render", "preflight", "credentials", "apply"} {
		if st := stepOf(waiting, step); st["state"] != "succeeded" || st["startedAt"] == nil || st["finishedAt"] == nil {
			t.Fatalf("step %s: %v", step, st)
		}
	}
	status, _ := s.do(http.MethodGet, "/v1/clusters/"+name+"/kubeconfig", "", "", nil)
	if status != http.StatusConflict {
		t.Fatalf("kubeconfig before provisioning: %d, want 409", status)
	}
	objs := s.renderedObjects(name)

	s.playCloud(name)
	done := s.waitProvisioned(name)
	if done["phase"] != "Provisioned" {
		t.Fatalf("phase %v: %v", done["phase"], done["message"])
	}
	for _, step := range []string{"control-plane-initialized", "kubeconfig", "cni-and-ccm", "nodes-ready"} {
		if stepState(done, step) != "succeeded" {
			t.Fatalf("step %s: %v", step, stepOf(done, step))
		}
	}
	if done["capiPhase"] != "Provisioned" || len(done["conditions"].([]any)) == 0 {
		t.Fatalf("observed CAPI status not shown: %v", done)
	}
	// The list shows the machines ready / desired the management cluster reported.
	var nodes map[string]any
	for _, it := range s.mustDo(http.MethodGet, "/v1/clusters", "", "", nil, http.StatusOK)["items"].([]any) {
		if c := it.(map[string]any); c["name"] == name {
			nodes, _ = c["nodes"].(map[string]any)
		}
	}
	cp, _ := done["controlPlane"].(map[string]any)
	workers, _ := done["workers"].(map[string]any)
	desired := cp["desired"].(float64)
	if workers != nil {
		desired += workers["desired"].(float64)
	}
	if nodes["ready"] != desired || nodes["desired"] != desired || desired < 2 {
		t.Fatalf("nodes in the list: %v, want %v ready of %v", nodes, desired, desired)
	}

	// The kubeconfig issued to the caller works with client-go, and holds
	// none of CAPI's admin credentials.
	status, kc := s.do(http.MethodGet, "/v1/clusters/"+name+"/kubeconfig", "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("kubeconfig: %d %s", status, kc)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CertData != nil || cfg.KeyData != nil || cfg.BearerToken == "" {
		t.Fatalf("the issued kubeconfig is not a token of the caller's:\n%s", kc)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil || v.GitVersion != "v1.37.2" {
		t.Fatalf("workload cluster via the kubeconfig: %v %v", v, err)
	}
	var audited int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'cluster.kubeconfig' AND target = $1`, "clusters/"+name).Scan(&audited); err != nil || audited != 1 {
		t.Fatalf("kubeconfig downloads audited: %d (%v)", audited, err)
	}
	return objs
}

// TestProvisionHetznerSeedSpec runs the seed's example spec, addons
// included (from the test chart repository into a workload cluster of its
// own), from POST to Provisioned.
// waitProvisioned waits for Provisioned (or Failed), playing Flux's part
// when the gitops step waits for its source.
func (s *service) waitProvisioned(name string) map[string]any {
	s.t.Helper()
	return s.waitStatus(name, 90*time.Second, func(st map[string]any) bool {
		if stepState(st, "gitops") == "running" && st["gitops"] != nil {
			s.playFlux()
		}
		return st["phase"] == "Provisioned" || st["phase"] == "Failed"
	})
}

func TestProvisionHetznerSeedSpec(t *testing.T) {
	t.Parallel()
	_, s := startAddonWorld(t)
	objs := provisionAndFinish(t, s, "prod", seedSpec(t))

	cluster := s.get(mgmt.ClusterGVK, s.namespace(), "prod")
	if ref := nested(t, cluster, "spec", "infrastructureRef", "kind"); ref != "HetznerCluster" {
		t.Fatalf("infrastructureRef kind %v", ref)
	}
	hc := findKind(objs, "HetznerCluster")
	if len(hc) != 1 {
		t.Fatalf("%d HetznerClusters", len(hc))
	}
	kcp := findKind(objs, "KubeadmControlPlane")
	if len(kcp) != 1 || nested(t, kcp[0], "spec", "replicas") != int64(3) || nested(t, kcp[0], "spec", "version") != "v1.34.2" {
		t.Fatalf("KubeadmControlPlane: %v", kcp)
	}
	mds := findKind(objs, "MachineDeployment")
	replicas := map[int64]int{}
	for _, md := range mds {
		replicas[nested(t, md, "spec", "replicas").(int64)]++
	}
	if len(mds) != 2 || replicas[3] != 1 || replicas[1] != 1 {
		t.Fatalf("MachineDeployments (general 3, gpu 1): %d, %v", len(mds), replicas)
	}
	types := map[string]bool{}
	for _, mt := range findKind(objs, "HCloudMachineTemplate") {
		types[nested(t, mt, "spec", "template", "spec", "type").(string)] = true
	}
	if !types["cax21"] || !types["ccx33"] {
		t.Fatalf("server types %v", types)
	}

	// The credential reached the management cluster as CAPH's Secret, in
	// the tenant's namespace, and nowhere else in plaintext.
	secret := s.get(secretGVK, s.namespace(), "prod-credentials")
	data := nested(t, secret, "data").(map[string]any)
	if len(data) == 0 {
		t.Fatal("credentials secret is empty")
	}
	s.checkStagesInOrder("prod")
	st := s.mustDo(http.MethodGet, "/v1/clusters/prod/status", "", "", nil, http.StatusOK)
	if init, _ := st["initialization"].(map[string]any); init["controlPlaneInitialized"] != true {
		t.Fatalf("initialization: %v", st["initialization"])
	}
	if stepState(st, "addons") != "succeeded" || len(st["addons"].([]any)) != 4 {
		t.Fatalf("bootstrap: %v, addons %v", stepOf(st, "addons"), st["addons"])
	}
	if g, _ := st["gitops"].(map[string]any); stepState(st, "gitops") != "succeeded" || g["ready"] != true {
		t.Fatalf("gitops: step %v, state %v", stepOf(st, "gitops"), st["gitops"])
	}
}

// sseEvent is one event of a stream: its type, data and data line.
type sseEvent struct {
	typ  string
	data map[string]any
	raw  string
}

// replayEvents replays the event stream at path from its start until an
// event whose data line contains until, failing after 10 s.
func (s *service) replayEvents(path, until string) []sseEvent {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Last-Event-ID", "0")
	resp, err := http.DefaultClient.Do(req) // not the validating client: a stream never ends
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var out []sseEvent
	typ := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev := sseEvent{typ: typ, data: map[string]any{}, raw: line}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				s.t.Fatalf("event data %s: %v", line, err)
			}
			out = append(out, ev)
			if strings.Contains(line, until) {
				return out
			}
		}
	}
	s.t.Fatalf("no event with %s on %s", until, path)
	return nil
}

// checkStagesInOrder reads the cluster's history from its event stream and
// checks the stages came in the order a real cloud needs: the control
// plane initialized (not Available) → kubeconfig → the CNI and then the
// CCM installed → only then the control plane Available → nodes Ready →
// the other addons → Provisioned. Against the old order (wait for an
// Available control plane, then install the CCM) the cloud stand-in never
// reports Available and the cluster times out.
func (s *service) checkStagesInOrder(name string) {
	s.t.Helper()
	events := s.replayEvents("/v1/clusters/"+name+"/events", `"phase":"Provisioned"`)
	at := func(what string, match func(sseEvent) bool) int {
		for i, ev := range events {
			if match(ev) {
				return i
			}
		}
		s.t.Fatalf("no event: %s", what)
		return -1
	}
	step := func(name, state string) func(sseEvent) bool {
		return func(ev sseEvent) bool {
			return ev.typ == "step" && ev.data["step"] == name && ev.data["state"] == state
		}
	}
	addon := func(name string) func(sseEvent) bool {
		return func(ev sseEvent) bool {
			return ev.typ == "addon" && ev.data["addon"] == name && ev.data["state"] == "installed"
		}
	}
	cpAvailable := func(want string) func(sseEvent) bool {
		return func(ev sseEvent) bool {
			if ev.typ != "cluster.observed" {
				return false
			}
			init, _ := ev.data["initialization"].(map[string]any)
			conds, _ := ev.data["conditions"].([]any)
			for _, c := range conds {
				if m := c.(map[string]any); m["type"] == "ControlPlaneAvailable" && m["status"] == want {
					return want == "True" || init["controlPlaneInitialized"] == true
				}
			}
			return false
		}
	}
	order := []struct {
		what string
		at   int
	}{
		{"observed: control plane initialized, not available", at("initialized", cpAvailable("False"))},
		{"step control-plane-initialized succeeded", at("initialized step", step("control-plane-initialized", "succeeded"))},
		{"step kubeconfig succeeded", at("kubeconfig", step("kubeconfig", "succeeded"))},
		{"addon cilium installed", at("cilium", addon("cilium"))},
		{"addon ccm installed", at("ccm", addon("ccm"))},
		{"observed: control plane available", at("available", cpAvailable("True"))},
		{"step nodes-ready succeeded", at("nodes ready", step("nodes-ready", "succeeded"))},
		{"addon cert-manager installed", at("cert-manager", addon("cert-manager"))},
		{"phase Provisioned", len(events) - 1},
	}
	for i := 1; i < len(order); i++ {
		if order[i].at < order[i-1].at {
			s.t.Errorf("stages out of order: %q (event %d) came before %q (event %d)", order[i].what, order[i].at, order[i-1].what, order[i-1].at)
		}
	}
}

// TestWatcherWakesTheWaitStep: with the wait step's next check ten minutes
// away, CAPI reporting the cluster Provisioned finishes it at once: the
// watcher sees the change and wakes the snoozed job.
func TestWatcherWakesTheWaitStep(t *testing.T) {
	t.Parallel()
	s := startService(t, options{checkInterval: 10 * time.Minute})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	// The wait step has checked once and its job is snoozed until the next check.
	s.waitJobState("provision", "scheduled")
	s.playCloud("prod")
	// Far less than the ten-minute check interval.
	done := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Provisioned" || st["phase"] == "Failed" })
	if done["phase"] != "Provisioned" {
		t.Fatalf("phase %v: %v", done["phase"], done["error"])
	}
}

// TestWatcherKeepsStatusCurrent changes what CAPI reports after the
// pipeline has finished: only the watcher can carry that into the status.
func TestWatcherKeepsStatusCurrent(t *testing.T) {
	t.Parallel()
	s, _ := startProvisioned(t)
	ctx := context.Background()
	s.pauseCloud("prod") // from here on the test plays CAPI

	md := s.get(mgmt.MachineDeploymentGVK, s.namespace(), "prod-md-general")
	_ = unstructured.SetNestedField(md.Object, map[string]any{
		"replicas": int64(3), "readyReplicas": int64(2), "availableReplicas": int64(2), "upToDateReplicas": int64(3),
	}, "status")
	if err := s.env.Client.Status().Update(ctx, md); err != nil {
		t.Fatal(err)
	}
	cluster := s.get(mgmt.ClusterGVK, s.namespace(), "prod")
	conds, _, _ := unstructured.NestedSlice(cluster.Object, "status", "conditions")
	conds = slices.DeleteFunc(conds, func(c any) bool { return c.(map[string]any)["type"] == "WorkersAvailable" })
	conds = append(conds, map[string]any{"type": "WorkersAvailable", "status": "False", "reason": "NotAvailable",
		"message": "1 of 3 machines of pool general is not ready", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)})
	_ = unstructured.SetNestedSlice(cluster.Object, conds, "status", "conditions")
	if err := s.env.Client.Status().Update(ctx, cluster); err != nil {
		t.Fatal(err)
	}

	st := s.waitStatus("prod", 30*time.Second, func(st map[string]any) bool {
		pools, _ := st["pools"].(map[string]any)
		general, _ := pools["general"].(map[string]any)
		return general["ready"] == float64(2) && hasCondition(st, "WorkersAvailable", "False")
	})
	if general := st["pools"].(map[string]any)["general"].(map[string]any); general["desired"] != float64(3) || general["available"] != float64(2) {
		t.Fatalf("pool general: %v", general)
	}
	if st["phase"] != "Provisioned" {
		t.Fatalf("phase %v", st["phase"])
	}
}

func hasCondition(st map[string]any, typ, status string) bool {
	conds, _ := st["conditions"].([]any)
	for _, c := range conds {
		if m := c.(map[string]any); m["type"] == typ && m["status"] == status {
			return true
		}
	}
	return false
}

func TestProvisionAWS(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("shop-credentials", `{"provider":"aws","accessKeyId":"AKIAE2E","secretAccessKey":"aws-e2e-secret"}`)
	objs := provisionAndFinish(t, s, "shop", awsSpec)
	if len(findKind(objs, "AWSCluster")) != 1 || len(findKind(objs, "AWSMachineTemplate")) != 2 || len(findKind(objs, "AWSClusterStaticIdentity")) != 1 {
		t.Fatalf("AWS objects: %v", kinds(objs))
	}
}

func TestProvisionHetznerBareMetal(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("metal-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`","robotUser":"robot","robotPassword":"robot-e2e-pass"}`)
	objs := provisionAndFinish(t, s, "metal", hrobotSpec)
	bm := findKind(objs, "HetznerBareMetalMachineTemplate")
	if len(bm) != 1 || len(findKind(objs, "HetznerBareMetalHost")) != 2 {
		t.Fatalf("bare-metal templates and hosts: %v", kinds(objs))
	}
	checkBareMetalHosts(t, s)
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// failCAPICluster reports the CAPI Cluster failed, as CAPI does, with its
// v1beta1 failure reason and message.
func (s *service) failCAPICluster(name, reason, message string) {
	s.t.Helper()
	obj := s.get(mgmt.ClusterGVK, s.namespace(), name)
	_ = unstructured.SetNestedField(obj.Object, map[string]any{
		"phase":      "Failed",
		"deprecated": map[string]any{"v1beta1": map[string]any{"failureReason": reason, "failureMessage": message}},
	}, "status")
	if err := s.env.Client.Status().Update(context.Background(), obj); err != nil {
		s.t.Fatal(err)
	}
}

// recoverCAPICluster plays the infrastructure provider getting over a
// failure: the Cluster's phase goes back to Provisioning, its failure
// cleared.
func (s *service) recoverCAPICluster(name string) {
	s.t.Helper()
	obj := s.get(mgmt.ClusterGVK, s.namespace(), name)
	_ = unstructured.SetNestedField(obj.Object, map[string]any{"phase": "Provisioning"}, "status")
	if err := s.env.Client.Status().Update(context.Background(), obj); err != nil {
		s.t.Fatal(err)
	}
}

func TestCAPIFailureFailsTheCluster(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })

	s.failCAPICluster("prod", "InvalidConfiguration", "hcloud: server type cax21 is not available in fsn1")
	failed := s.waitStatus("prod", 30*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })
	msg := failed["message"].(string)
	if !strings.Contains(msg, "InvalidConfiguration") || !strings.Contains(msg, "server type cax21 is not available") {
		t.Fatalf("failure message does not carry CAPI's reason: %q", msg)
	}
	if stepState(failed, "control-plane-initialized") != "failed" || stepState(failed, "kubeconfig") != "pending" {
		t.Fatalf("steps after failure: %v", failed["operation"])
	}
	if e, _ := failed["error"].(map[string]any); e["code"] != "ProviderFailed" || e["retryable"] != false || e["step"] != "control-plane-initialized" ||
		e["reason"] != "InvalidConfiguration: hcloud: server type cax21 is not available in fsn1" {
		t.Fatalf("failure record: %v", failed["error"])
	}
}

// findEvent replays a stream from its start and returns the first data
// line containing want, failing after 10 s.
func (s *service) findEvent(path, want string) string {
	s.t.Helper()
	events := s.replayEvents(path, want)
	return events[len(events)-1].raw
}

// TestRejectedCredentialThenRetry: the provider rejects the credential;
// the status says so with a code, a remediation and the raw reason; after
// the credential is replaced and the infrastructure recovers, a retry
// finishes the cluster.
func TestRejectedCredentialThenRetry(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })

	s.failCAPICluster("prod", "CreateError", "hcloud: Unauthorized: invalid token (unauthorized)")
	failed := s.waitStatus("prod", 30*time.Second, func(st map[string]any) bool { return st["phase"] == "Failed" })
	e, _ := failed["error"].(map[string]any)
	if e["code"] != "CredentialsRejected" || e["retryable"] != false || !strings.Contains(e["remediation"].(string), "PUT /v1/credentials") ||
		!strings.Contains(e["reason"].(string), "invalid token") {
		t.Fatalf("failure record: %v", failed["error"])
	}

	// The event stream carries the same record.
	if ev := s.findEvent("/v1/clusters/prod/events", `"code":"CredentialsRejected"`); !strings.Contains(ev, `"retryable":false`) ||
		!strings.Contains(ev, `"remediation":"the provider rejected the credential`) {
		t.Fatalf("step event: %s", ev)
	}

	// The fix: a new token; the infrastructure provider then recovers.
	s.mustDo(http.MethodPut, "/v1/credentials/prod-credentials", "", "application/json", []byte(`{"provider":"hetzner","hcloudToken":"a-good-token"}`), http.StatusOK)
	s.recoverCAPICluster("prod")
	s.mustDo(http.MethodPost, "/v1/clusters/prod/retry", "", "", nil, http.StatusAccepted)
	s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return stepState(st, "control-plane-initialized") == "running" })
	secret := s.get(secretGVK, s.namespace(), "prod-credentials")
	if hc, _ := nested(t, secret, "data").(map[string]any)["hcloud"].(string); hc != "YS1nb29kLXRva2Vu" { // base64 of a-good-token
		t.Fatalf("the retry did not write the replaced credential: %q", hc)
	}
	s.playCloud("prod")
	done := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool { return st["phase"] == "Provisioned" || st["phase"] == "Failed" })
	if done["phase"] != "Provisioned" || done["error"] != nil {
		t.Fatalf("after the retry: %v %v", done["phase"], done["error"])
	}
}

// TestManagementUnreachableDuringApply makes the management cluster refuse
// connections for the apply step's first attempt: the step is retried with
// backoff and succeeds once it answers, creating each object once.
func TestManagementUnreachableDuringApply(t *testing.T) {
	t.Parallel()
	var refused atomic.Int32
	down := atomic.Bool{}
	down.Store(true)
	wrap := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			// Only writes of CAPI and infrastructure objects: the apply step.
			if down.Load() && r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "cluster.x-k8s.io") {
				refused.Add(1)
				down.Store(false) // it answers again after this refusal
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			}
			return next.RoundTrip(r)
		})
	}
	s := startService(t, options{wrapTransport: wrap})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	st := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "apply") == "succeeded" || st["phase"] == "Failed"
	})
	apply := stepOf(st, "apply")
	if apply["state"] != "succeeded" || apply["attempts"].(float64) != 2 || refused.Load() != 1 {
		t.Fatalf("apply step: %v (refused %d)", apply, refused.Load())
	}
	// The retry record stays visible in the River job's errors.
	var errorsJSON string
	if err := s.db.QueryRow(context.Background(), `SELECT errors::text FROM river_job WHERE kind = 'provision'`).Scan(&errorsJSON); err != nil ||
		!strings.Contains(errorsJSON, "connection refused") {
		t.Fatalf("river job errors: %s (%v)", errorsJSON, err)
	}
	s.renderedObjects("prod")
}

// TestDeleteRemovesEverything deletes a provisioned cluster: the CAPI
// Cluster, the objects CAPI does not own and the credentials Secret go, the
// cluster ends Deleted and its name is free.
func TestDeleteRemovesEverything(t *testing.T) {
	t.Parallel()
	s, objs := startProvisioned(t)

	s.mustDo(http.MethodDelete, "/v1/clusters/prod", "", "", nil, http.StatusAccepted)
	deleted := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return st["phase"] == "Deleted" || st["phase"] == "Failed"
	})
	if deleted["phase"] != "Deleted" {
		t.Fatalf("delete: %v", deleted)
	}
	for _, o := range append(objs, secretObject(s.namespace(), "prod-credentials")) {
		probe := &unstructured.Unstructured{}
		probe.SetGroupVersionKind(o.GroupVersionKind())
		err := s.env.Client.Get(context.Background(), client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, probe)
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s %s still exists after delete (%v)", o.GetKind(), o.GetName(), err)
		}
	}
	status, _ := s.do(http.MethodGet, "/v1/clusters/prod/kubeconfig", "", "", nil)
	if status != http.StatusNotFound {
		t.Fatalf("kubeconfig of a deleted cluster: %d", status)
	}
	s.submit(seedSpecWithoutAddons(t)) // the name is free again
}

func secretObject(namespace, name string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetGroupVersionKind(secretGVK)
	o.SetNamespace(namespace)
	o.SetName(name)
	return o
}

var secretGVK = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestNamedManagementCluster provisions on a management cluster named by
// spec.managementCluster.domain (a kubeconfig in LOK8S_KUBECONFIG_DIR), in
// the spec's own namespace.
func TestNamedManagementCluster(t *testing.T) {
	t.Parallel()
	s := startService(t, options{namedClusters: []string{"mgmt.example.com"}})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	ns := randomName("named-")
	spec := strings.Replace(seedSpecWithoutAddons(t), "    namespace: default\n", "    namespace: "+ns+"\n", 1)
	spec = strings.Replace(spec, "  credentials:\n", "  managementCluster:\n    domain: mgmt.example.com\n  credentials:\n", 1)
	created := s.submit(spec)
	if created["managementCluster"] != "mgmt.example.com" {
		t.Fatalf("management cluster not recorded: %v", created)
	}
	st := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		return stepState(st, "control-plane-initialized") == "running" || st["phase"] == "Failed"
	})
	if st["phase"] != "Provisioning" {
		t.Fatalf("%v: %v", st["phase"], st["message"])
	}
	cluster := s.get(mgmt.ClusterGVK, ns, "prod")
	if cluster.GetLabels()[mgmt.LabelCluster] != "prod" {
		t.Fatalf("labels %v", cluster.GetLabels())
	}
	s.get(secretGVK, ns, "prod-credentials")

	// An unknown domain is refused at POST, naming the field.
	bad := strings.Replace(spec, "domain: mgmt.example.com", "domain: other.example.com", 1)
	status, body := s.do(http.MethodPost, "/v1/clusters", "", "application/yaml", []byte(strings.Replace(bad, "name: prod", "name: other", 1)))
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), "spec.managementCluster.domain") {
		t.Fatalf("unknown management cluster: %d %s", status, body)
	}
}

// TestTenantsSeeNoInternalAddresses: the management cluster refuses
// connections; the tenant's status and events show the step's error with
// the management cluster's address replaced (the raw text stays in the
// logs), not `dial tcp 127.0.0.1:…`.
func TestTenantsSeeNoInternalAddresses(t *testing.T) {
	t.Parallel()
	refuse := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6443},
				Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		})
	}
	s := startService(t, options{wrapTransport: refuse})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	s.submit(seedSpecWithoutAddons(t))
	st := s.waitStatus("prod", 60*time.Second, func(st map[string]any) bool {
		e, _ := stepOf(st, "preflight")["error"].(string)
		return e != ""
	})
	raw, _ := json.Marshal(st)
	if strings.Contains(string(raw), "127.0.0.1") || !strings.Contains(string(raw), "internal address") {
		t.Fatalf("the tenant's status shows internal addresses: %s", raw)
	}
	if ev := s.findEvent("/v1/clusters/prod/events", `"step":"preflight"`); strings.Contains(ev, "127.0.0.1") {
		t.Fatalf("the tenant's events show internal addresses: %s", ev)
	}
}
