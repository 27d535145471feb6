package localmgmt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/localmgmt"
	"lok8s.dev/provisioner/internal/testenv"
)

// A Cluster with one control-plane machine (KubeadmControlPlane) and one
// worker (MachineDeployment), both on CAPD's in-memory backend, written
// without ClusterClass so that every object is visible here.
const clusterYAML = `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: DevCluster
metadata:
  name: {{NAME}}
  # CAPD v1.14.2's in-memory DevCluster reconciler writes into
  # metadata.annotations without allocating it (a nil-map panic when the
  # object has none; ClusterClass-made objects always have some).
  annotations:
    lok8s.dev/note: in-memory backend needs an annotations map
spec:
  backend:
    inMemory: {}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: DevMachineTemplate
metadata:
  name: {{NAME}}-control-plane
spec:
  template:
    spec:
      backend:
        inMemory:
          vm:
            provisioning:
              startupDuration: 2s
          node:
            provisioning:
              startupDuration: 1s
          apiServer:
            provisioning:
              startupDuration: 1s
          etcd:
            provisioning:
              startupDuration: 1s
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: DevMachineTemplate
metadata:
  name: {{NAME}}-worker
spec:
  template:
    spec:
      backend:
        inMemory:
          vm:
            provisioning:
              startupDuration: 2s
          node:
            provisioning:
              startupDuration: 1s
          apiServer:
            provisioning:
              startupDuration: 1s
          etcd:
            provisioning:
              startupDuration: 1s
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata:
  name: {{NAME}}-control-plane
spec:
  replicas: 1
  version: {{VERSION}}
  machineTemplate:
    spec:
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: DevMachineTemplate
        name: {{NAME}}-control-plane
  kubeadmConfigSpec:
    clusterConfiguration:
      apiServer:
        certSANs: [localhost, 127.0.0.1]
---
apiVersion: bootstrap.cluster.x-k8s.io/v1beta2
kind: KubeadmConfigTemplate
metadata:
  name: {{NAME}}-worker
spec:
  template:
    spec:
      joinConfiguration:
        nodeRegistration:
          criSocket: unix:///var/run/containerd/containerd.sock
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: {{NAME}}
spec:
  clusterNetwork:
    services:
      cidrBlocks: ["10.128.0.0/12"]
    pods:
      cidrBlocks: ["192.168.0.0/16"]
    serviceDomain: cluster.local
  controlPlaneRef:
    apiGroup: controlplane.cluster.x-k8s.io
    kind: KubeadmControlPlane
    name: {{NAME}}-control-plane
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: DevCluster
    name: {{NAME}}
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: {{NAME}}-md-0
spec:
  clusterName: {{NAME}}
  replicas: 1
  selector:
    matchLabels: {}
  template:
    spec:
      clusterName: {{NAME}}
      version: {{VERSION}}
      bootstrap:
        configRef:
          apiGroup: bootstrap.cluster.x-k8s.io
          kind: KubeadmConfigTemplate
          name: {{NAME}}-worker
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: DevMachineTemplate
        name: {{NAME}}-worker
`

const (
	clusterName       = "dev-1"
	kubernetesVersion = "v1.35.0"
	namespace         = "default"
)

// startLocal starts a local management cluster (kube-apiserver, etcd and
// CAPI's controllers) in workDir for the test, and returns it with the
// repository's root. When the test fails, the managers' logs are printed.
func startLocal(ctx context.Context, t *testing.T, workDir string) (*localmgmt.Cluster, string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := localmgmt.ControllersDir(ctx, root, os.Getenv(localmgmt.ControllersEnv), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := localmgmt.StartCluster(ctx, localmgmt.ClusterOptions{AssetsDir: assets, ControllersDir: bins, WorkDir: workDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range mc.Controllers.Managers {
				t.Logf("--- %s log (tail):\n%s", m.Provider.Name, tailOf(m.LogFile, 4000))
			}
		}
		began := time.Now()
		if err := mc.Stop(); err != nil {
			t.Errorf("stopping the local management cluster: %v", err)
		}
		t.Logf("local management cluster stopped in %s", time.Since(began).Round(time.Millisecond))
	})
	return mc, root
}

func TestInMemoryClusterProvisioned(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// LOK8S_LOCALMGMT_WORKDIR keeps the managers' logs after the test.
	workDir := os.Getenv("LOK8S_LOCALMGMT_WORKDIR")
	if workDir == "" {
		workDir = t.TempDir()
	}
	mc, _ := startLocal(ctx, t, workDir)
	cs := mc.Controllers
	t.Logf("controllers ready in %s (logs in %s)", cs.StartDuration.Round(time.Millisecond), filepath.Join(workDir, "logs"))
	cfg, err := clientcmd.BuildConfigFromFlags("", mc.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))

	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, strings.NewReplacer("{{NAME}}", clusterName, "{{VERSION}}", kubernetesVersion).Replace(clusterYAML))
	created := time.Now()
	for _, obj := range objs {
		obj.SetNamespace(namespace)
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	// The defaulting webhooks ran: KubeadmControlPlane's sets rollout
	// defaults, which the CRD schema does not.
	kcp := &unstructured.Unstructured{}
	kcp.SetAPIVersion("controlplane.cluster.x-k8s.io/v1beta2")
	kcp.SetKind("KubeadmControlPlane")
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: clusterName + "-control-plane"}, kcp); err != nil {
		t.Fatal(err)
	}
	t.Logf("KubeadmControlPlane spec after admission: %v", kcp.Object["spec"])

	// Pending -> Provisioning -> Provisioned, within 3 minutes.
	cluster := &unstructured.Unstructured{}
	cluster.SetAPIVersion("cluster.x-k8s.io/v1beta2")
	cluster.SetKind("Cluster")
	key := client.ObjectKey{Namespace: namespace, Name: clusterName}
	var phases []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if err := cs.Check(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, key, cluster); err != nil {
			t.Fatal(err)
		}
		phase, _, _ := unstructured.NestedString(cluster.Object, "status", "phase")
		if len(phases) == 0 || phases[len(phases)-1] != phase {
			phases = append(phases, phase)
			t.Logf("%6.1fs cluster phase %q", time.Since(created).Seconds(), phase)
		}
		if phase == "Provisioned" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not Provisioned after 3m; phases %v; status %v", phases, cluster.Object["status"])
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Conversion webhook: the same Cluster read as v1beta1 goes through the
	// core manager's /convert (the v1beta1 reference shape has apiVersion).
	old := &unstructured.Unstructured{}
	old.SetAPIVersion("cluster.x-k8s.io/v1beta1")
	old.SetKind("Cluster")
	if err := c.Get(ctx, key, old); err != nil {
		t.Fatalf("reading the Cluster as v1beta1 (conversion webhook): %v", err)
	}
	if av, _, _ := unstructured.NestedString(old.Object, "spec", "controlPlaneRef", "apiVersion"); av != "controlplane.cluster.x-k8s.io/v1beta2" {
		t.Errorf("v1beta1 Cluster spec.controlPlaneRef.apiVersion = %q, want controlplane.cluster.x-k8s.io/v1beta2 (converted)", av)
	}

	var secret corev1.Secret
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: clusterName + "-kubeconfig"}, &secret)
		if err == nil {
			break
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("kubeconfig secret: %v", err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("%6.1fs Provisioned, phases %v, secret %s present", time.Since(created).Seconds(), phases, secret.Name)

	// The simulated workload API server, through the kubeconfig CAPI wrote.
	wcfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["value"])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("workload API server: %s", wcfg.Host)
	wc, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	// The workload API server's listener opens once the control-plane
	// machine's simulated kube-apiserver has "started"; the worker's node
	// joins a little later.
	var nodes *corev1.NodeList
	for {
		nodes, err = wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && len(nodes.Items) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workload cluster: want 2 nodes by 3m, got %v (err %v)", nodes, err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("%6.1fs workload API server lists %d nodes", time.Since(created).Seconds(), len(nodes.Items))
	for _, n := range nodes.Items {
		t.Logf("workload node %s (kubelet %s, labels %v)", n.Name, n.Status.NodeInfo.KubeletVersion, n.Labels)
	}
	// Available: control plane and workers report ready through the
	// workload API server.
	for {
		if err := c.Get(ctx, key, cluster); err != nil {
			t.Fatal(err)
		}
		if conditionTrue(cluster, "Available") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not Available by 3m: %v", cluster.Object["status"])
		}
		time.Sleep(time.Second)
	}
	t.Logf("%6.1fs cluster Available", time.Since(created).Seconds())
	if nss, err := wc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Logf("listing workload namespaces: %v", err)
	} else {
		names := []string{}
		for _, ns := range nss.Items {
			names = append(names, ns.Name)
		}
		t.Logf("workload namespaces: %v", names)
	}
	// What the simulated API server does and does not do (logged, not
	// asserted, except plain create/get which CAPI itself relies on).
	if v, err := wc.Discovery().ServerVersion(); err != nil {
		t.Logf("workload GET /version: %v", err)
	} else {
		t.Logf("workload GET /version: %s", v.GitVersion)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := wc.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Errorf("workload: creating a ConfigMap: %v", err)
	} else if got, err := wc.CoreV1().ConfigMaps("default").Get(ctx, "probe", metav1.GetOptions{}); err != nil || got.Data["k"] != "v" {
		t.Errorf("workload: reading the ConfigMap back: %v %v", got, err)
	}
	applyCM := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"probe-apply","namespace":"default"},"data":{"k":"v"}}`)
	_, err = wc.CoreV1().ConfigMaps("default").Patch(ctx, "probe-apply", types.ApplyPatchType, applyCM, metav1.PatchOptions{FieldManager: "lok8s"})
	t.Logf("workload: server-side apply of a ConfigMap: err=%v", err)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "probe-ns"}}
	_, err = wc.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	t.Logf("workload: creating a Namespace: err=%v", err)
	_, err = wc.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
	t.Logf("workload: listing apps/v1 Deployments: err=%v", err)

	// Deletion: the controllers remove the Cluster and its descendants.
	delStart := time.Now()
	if err := c.Delete(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	for {
		if err := cs.Check(); err != nil {
			t.Fatal(err)
		}
		err := c.Get(ctx, key, cluster)
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(delStart) > 2*time.Minute {
			t.Fatalf("cluster not deleted after 2m; status %v", cluster.Object["status"])
		}
		time.Sleep(time.Second)
	}
	t.Logf("cluster deleted in %.1fs", time.Since(delStart).Seconds())
}

func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return m["status"] == "True"
		}
	}
	return false
}

func decodeObjects(t *testing.T, doc string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(doc), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

func tailOf(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprint(err)
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}
