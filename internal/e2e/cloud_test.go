package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/testenv"
)

// cloud stands in for what runs outside the service once its objects are
// applied: CAPI's controllers, the infrastructure provider and the cloud's
// machines, each doing only what the real one does on its own.
//
//   - CAPI and the provider bring up the first control-plane machine and
//     the pools' machines and report the control plane *initialized*, with
//     the kubeconfig Secret written (CAPI
//     internal/controllers/cluster/cluster_controller_status.go). The
//     machines' Nodes register with the taint
//     node.cloudprovider.kubernetes.io/uninitialized and no providerID, as
//     kubelet does with cloud-provider: external.
//   - The kubelets: a Node is Ready only once the CNI's DaemonSet runs;
//     the workloads of the addon namespace (DaemonSets, Deployments) are
//     reported running once there are Nodes to run on.
//   - Only the cloud-controller-manager (its Deployment in the addon
//     namespace) gives a Node its providerID and removes the taint
//     (hcloud-cloud-controller-manager docs/explanation/provider-id.md).
//   - CAPI gives a Machine a nodeRef only when a Node carries its
//     providerID (internal/controllers/machine/machine_controller_noderef.go);
//     KubeadmControlPlane is Available and creates its other machines only
//     then (controlplane/kubeadm/internal/controllers/status.go,
//     scale.go): before the CCM runs, the cluster never becomes Available.
//
// A pipeline that waits for an Available control plane before it installs
// the CCM therefore waits for ever against it, as it would on a real cloud.
type cloud struct {
	t          testingT
	mgmt       *testenv.Env
	workload   *testenv.Env
	namespace  string // the CAPI objects' namespace
	name       string // the CAPI Cluster's name
	owner      string // labels this stand-in's Nodes (shared workload clusters)
	addonNS    string // where the CNI and CCM run
	cni, ccm   string // their release names (workload names)
	kubeconfig []byte
	// secretData, when set, is the kubeconfig Secret's data as the
	// provider writes it now (CAPA rewrites an EKS cluster's token every
	// sync period): the Secret is updated whenever it differs.
	secretData func() map[string][]byte
	// managedControlPlane: the provider runs the control plane (EKS): no
	// control-plane machines or Nodes, available once initialized, and the
	// pools' Nodes get their providerIDs from the provider's own
	// cloud-controller-manager (no ccm addon).
	managedControlPlane bool

	mu     sync.Mutex // held while the stand-in acts
	paused bool
}

// pause stops the stand-in acting (once its current step is done): from
// then on the test plays CAPI itself (playRollout, failCAPICluster, …).
func (c *cloud) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = true
}

// testingT is what the stand-in reports problems to.
type testingT interface {
	Logf(format string, args ...any)
}

// cloudInterval paces the stand-in.
const cloudInterval = 100 * time.Millisecond

// playCloud starts the stand-in for the CAPI Cluster name of the tenant;
// it runs until the test ends. configure, if given, tunes it first (EKS).
func (s *service) playCloud(name string, configure ...func(*cloud)) {
	s.t.Helper()
	c := &cloud{t: s.t, mgmt: s.env, workload: s.workload, namespace: s.namespace(), name: name, owner: s.tenant,
		addonNS: s.addonNamespace, cni: "cilium", ccm: "ccm", kubeconfig: s.workloadKubeconfig()}
	for _, f := range configure {
		f(c)
	}
	if s.clouds == nil {
		s.clouds = map[string]*cloud{}
	}
	s.clouds[name] = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ctx)
	}()
	s.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// pauseCloud pauses the stand-in of cluster name, if one runs.
func (s *service) pauseCloud(name string) {
	if c := s.clouds[name]; c != nil {
		c.pause()
	}
}

func (c *cloud) run(ctx context.Context) {
	tick := time.NewTicker(cloudInterval)
	defer tick.Stop()
	for {
		if err := c.act(ctx); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			c.t.Logf("cloud stand-in for %s: %v", c.name, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

const (
	ownerLabel         = "e2e.lok8s.dev/owner"
	machineLabel       = "e2e.lok8s.dev/machine"
	poolLabel          = "e2e.lok8s.dev/pool"
	uninitializedTaint = "node.cloudprovider.kubernetes.io/uninitialized"
	// CAPI's own: kubeadm registers joining nodes with it, and CAPI removes
	// it once the Machine has its nodeRef (CAPI v1.14
	// internal/controllers/machine/machine_controller_noderef.go).
	capiUninitializedTaint = "node.cluster.x-k8s.io/uninitialized"
)

func (c *cloud) act(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused {
		return nil
	}
	return c.step(ctx)
}

// step advances the world by what each actor would do next.
func (c *cloud) step(ctx context.Context) error {
	cluster := &unstructured.Unstructured{}
	cluster.SetGroupVersionKind(mgmt.ClusterGVK)
	if err := c.mgmt.Client.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.name}, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // not applied yet
		}
		return err
	}
	if phase, _, _ := unstructured.NestedString(cluster.Object, "status", "phase"); phase == "Failed" {
		return nil // a test reported a failure: nothing comes up
	}
	cpWanted := int64(1)
	kcp := &unstructured.Unstructured{}
	kcp.SetGroupVersionKind(mgmt.KubeadmControlPlaneGVK)
	hasKCP := c.mgmt.Client.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.name + "-control-plane"}, kcp) == nil
	if hasKCP {
		cpWanted, _, _ = unstructured.NestedInt64(kcp.Object, "spec", "replicas")
	}
	if c.managedControlPlane {
		cpWanted = 0
	}
	mds := &unstructured.UnstructuredList{}
	mds.SetGroupVersionKind(mgmt.MachineDeploymentGVK.GroupVersion().WithKind("MachineDeploymentList"))
	if err := c.mgmt.Client.List(ctx, mds, client.InNamespace(c.namespace), client.MatchingLabels{mgmt.LabelCluster: c.name}); err != nil {
		return err
	}
	// EKS managed node groups are MachinePools: their machines come up the same way.
	mps := &unstructured.UnstructuredList{}
	mps.SetGroupVersionKind(mgmt.MachineDeploymentGVK.GroupVersion().WithKind("MachinePoolList"))
	if err := c.mgmt.Client.List(ctx, mps, client.InNamespace(c.namespace), client.MatchingLabels{mgmt.LabelCluster: c.name}); err != nil {
		return err
	}
	mds.Items = append(mds.Items, mps.Items...)

	// CAPI and the provider: the first control-plane machine boots, the
	// kubeconfig Secret is written, the pools' machines boot and join.
	if err := c.ensureKubeconfigSecret(ctx); err != nil {
		return err
	}
	nodes, err := c.nodes(ctx)
	if err != nil {
		return err
	}
	if !c.managedControlPlane {
		if err := c.ensureNode(ctx, nodes, "cp", 0); err != nil {
			return err
		}
	}
	cpWithNodeRef := 0
	for _, n := range nodes {
		if n.Labels[poolLabel] == "cp" && n.Spec.ProviderID != "" {
			cpWithNodeRef++
		}
	}
	// KubeadmControlPlane scales up only once its first machine has a nodeRef.
	if cpWithNodeRef > 0 {
		for i := 1; i < int(cpWanted); i++ {
			if err := c.ensureNode(ctx, nodes, "cp", i); err != nil {
				return err
			}
		}
	}
	for i := range mds.Items {
		md := &mds.Items[i]
		replicas, _, _ := unstructured.NestedInt64(md.Object, "spec", "replicas")
		if kind, _, _ := unstructured.NestedString(md.Object, "spec", "template", "spec", "infrastructureRef", "kind"); kind == bareMetalTemplateGVK.Kind {
			if replicas, err = c.bareMetalMachines(ctx, md, replicas); err != nil { // only machines with a host boot
				return err
			}
		}
		for j := 0; j < int(replicas); j++ {
			if err := c.ensureNode(ctx, nodes, poolOf(md), j); err != nil {
				return err
			}
		}
	}
	if nodes, err = c.nodes(ctx); err != nil {
		return err
	}

	// The kubelets and the CCM.
	cniRuns, err := c.runWorkload(ctx, &appsv1.DaemonSet{}, c.cni, len(nodes))
	if err != nil {
		return err
	}
	ccmRuns, err := c.runWorkload(ctx, &appsv1.Deployment{}, c.ccm, len(nodes))
	if err != nil {
		return err
	}
	ccmRuns = ccmRuns || c.managedControlPlane
	for i := range nodes {
		if err := c.kubelet(ctx, &nodes[i], cniRuns, ccmRuns); err != nil {
			return err
		}
	}

	// CAPI reports what it sees: machines are ready when their Node has a
	// providerID (nodeRef) and is Ready.
	ready := map[string]int64{}
	for _, n := range nodes {
		if n.Spec.ProviderID != "" && nodeReady(n) {
			ready[n.Labels[poolLabel]]++
		}
	}
	for i := range mds.Items {
		md := &mds.Items[i]
		replicas, _, _ := unstructured.NestedInt64(md.Object, "spec", "replicas")
		r := ready[poolOf(md)]
		if err := c.setStatus(ctx, md, map[string]any{
			"replicas": replicas, "readyReplicas": r, "availableReplicas": r, "upToDateReplicas": replicas,
			"observedGeneration": md.GetGeneration(),
		}); err != nil {
			return err
		}
	}
	cpReady := ready["cp"]
	var workersDesired, workersReady int64
	for i := range mds.Items {
		replicas, _, _ := unstructured.NestedInt64(mds.Items[i].Object, "spec", "replicas")
		workersDesired += replicas
		workersReady += ready[poolOf(&mds.Items[i])]
	}
	available := cpReady > 0 || c.managedControlPlane
	allReady := available && cpReady >= cpWanted && workersReady >= workersDesired
	if hasKCP {
		cpCreated := int64(1)
		if available {
			cpCreated = cpWanted
		}
		if err := c.setStatus(ctx, kcp, map[string]any{
			"replicas": cpCreated, "readyReplicas": cpReady, "availableReplicas": cpReady, "upToDateReplicas": cpCreated,
			"observedGeneration": kcp.GetGeneration(),
			"initialization":     map[string]any{"controlPlaneInitialized": true},
		}); err != nil {
			return err
		}
	}
	status := map[string]any{
		"phase":          "Provisioned",
		"initialization": map[string]any{"infrastructureProvisioned": true, "controlPlaneInitialized": true},
		"conditions": []any{
			condition("InfrastructureReady", true, "Ready", ""),
			condition("ControlPlaneInitialized", true, "Initialized", ""),
			condition("ControlPlaneAvailable", available, "Available", notYet(available, "no control-plane machine has a node with a providerID yet")),
			condition("WorkersAvailable", workersReady >= workersDesired, "Available", notYet(workersReady >= workersDesired, fmt.Sprintf("%d of %d worker machines ready", workersReady, workersDesired))),
			condition("Available", allReady, "Available", notYet(allReady, "waiting for the control plane and workers")),
		},
		"controlPlane": map[string]any{"desiredReplicas": cpWanted, "replicas": cpWanted, "readyReplicas": cpReady, "availableReplicas": cpReady, "upToDateReplicas": cpWanted},
		"workers":      map[string]any{"desiredReplicas": workersDesired, "replicas": workersDesired, "readyReplicas": workersReady, "availableReplicas": workersReady, "upToDateReplicas": workersDesired},
	}
	if c.managedControlPlane {
		delete(status, "controlPlane") // no control-plane machines to count
	}
	return c.setStatus(ctx, cluster, status)
}

func notYet(ok bool, why string) string {
	if ok {
		return ""
	}
	return why
}

// condition is a v1beta2 condition; its lastTransitionTime is fixed so that
// an unchanged status is not rewritten.
func condition(t string, ok bool, reason, message string) map[string]any {
	status, r := "True", reason
	if !ok {
		status, r = "False", "Not"+reason
	}
	return map[string]any{"type": t, "status": status, "reason": r, "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"}
}

// setStatus writes obj's status when it differs from what is there.
func (c *cloud) setStatus(ctx context.Context, obj *unstructured.Unstructured, status map[string]any) error {
	current, _, _ := unstructured.NestedMap(obj.Object, "status")
	merged := map[string]any{}
	for k, v := range current {
		merged[k] = v
	}
	for k, v := range status {
		merged[k] = v
	}
	// The same JSON is the same status, whatever the numbers' Go types.
	if was, err := json.Marshal(current); err == nil {
		if now, err := json.Marshal(merged); err == nil && bytes.Equal(was, now) {
			return nil
		}
	}
	if err := unstructured.SetNestedMap(obj.Object, merged, "status"); err != nil {
		return err
	}
	return c.mgmt.Client.Status().Update(ctx, obj)
}

func poolOf(md *unstructured.Unstructured) string {
	if p := md.GetLabels()[mgmt.LabelPool]; p != "" {
		return p
	}
	return md.GetName()
}

func (c *cloud) ensureKubeconfigSecret(ctx context.Context) error {
	data := map[string][]byte{"value": c.kubeconfig}
	if c.secretData != nil {
		data = c.secretData()
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: c.name + "-kubeconfig", Namespace: c.namespace,
			Labels: map[string]string{mgmt.ClusterNameLabel: c.name}},
		Type: "cluster.x-k8s.io/secret",
		Data: data,
	}
	err := c.mgmt.Client.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) && c.secretData != nil {
		// The provider rewrites it (CAPA's updateCAPIKubeconfigSecret).
		var live corev1.Secret
		if err := c.mgmt.Client.Get(ctx, client.ObjectKeyFromObject(secret), &live); err != nil {
			return err
		}
		if reflect.DeepEqual(live.Data, data) {
			return nil
		}
		live.Data = data
		return c.mgmt.Client.Update(ctx, &live)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

func (c *cloud) nodeName(pool string, i int) string {
	return strings.ToLower(fmt.Sprintf("%s-%s-%s-%d", c.owner, c.name, pool, i))
}

func (c *cloud) nodes(ctx context.Context) ([]corev1.Node, error) {
	var list corev1.NodeList
	if err := c.workload.Client.List(ctx, &list, client.MatchingLabels{ownerLabel: c.owner + "." + c.name}); err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// ensureNode registers machine i of pool as kubelet does with an external
// cloud provider: tainted uninitialized, no providerID, not Ready.
func (c *cloud) ensureNode(ctx context.Context, existing []corev1.Node, pool string, i int) error {
	name := c.nodeName(pool, i)
	for _, n := range existing {
		if n.Name == name {
			return nil
		}
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ownerLabel: c.owner + "." + c.name, poolLabel: pool, machineLabel: fmt.Sprint(i)}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{
			{Key: uninitializedTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule},
			{Key: capiUninitializedTaint, Effect: corev1.TaintEffectNoSchedule},
		}},
	}
	if err := c.workload.Client.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// kubelet reports node Ready once the CNI runs; the CCM, once it runs,
// gives it its providerID and removes its uninitialized taint, and CAPI
// then (the Machine has its nodeRef) removes its own.
func (c *cloud) kubelet(ctx context.Context, node *corev1.Node, cniRuns, ccmRuns bool) error {
	if ccmRuns && node.Spec.ProviderID == "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(node.Name))
		node.Spec.ProviderID = fmt.Sprintf("hcloud://%d", h.Sum32())
		var taints []corev1.Taint
		for _, t := range node.Spec.Taints {
			if t.Key != uninitializedTaint && t.Key != capiUninitializedTaint {
				taints = append(taints, t)
			}
		}
		node.Spec.Taints = taints
		if err := c.workload.Client.Update(ctx, node); err != nil {
			return err
		}
	}
	if nodeReady(*node) == cniRuns {
		return nil
	}
	status, reason := corev1.ConditionFalse, "KubeletNotReady"
	message := "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
	if cniRuns {
		status, reason, message = corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: reason, Message: message,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	return c.workload.Client.Status().Update(ctx, node)
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// runWorkload plays the controllers and kubelets for the DaemonSet or
// Deployment name in the addon namespace: once it exists and there are
// Nodes, it is reported running everywhere it should (so Helm's wait
// ends). It reports whether the workload runs.
func (c *cloud) runWorkload(ctx context.Context, obj client.Object, name string, nodes int) (bool, error) {
	if err := c.workload.Client.Get(ctx, client.ObjectKey{Namespace: c.addonNS, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if nodes == 0 {
		return false, nil
	}
	switch w := obj.(type) {
	case *appsv1.DaemonSet:
		n := int32(nodes)
		want := appsv1.DaemonSetStatus{ObservedGeneration: w.Generation, DesiredNumberScheduled: n, CurrentNumberScheduled: n,
			UpdatedNumberScheduled: n, NumberReady: n, NumberAvailable: n}
		if reflect.DeepEqual(w.Status, want) {
			return true, nil
		}
		w.Status = want
	case *appsv1.Deployment:
		r := int32(1)
		if w.Spec.Replicas != nil {
			r = *w.Spec.Replicas
		}
		if w.Status.ObservedGeneration == w.Generation && w.Status.AvailableReplicas == r {
			return true, nil
		}
		now := metav1.Now()
		w.Status = appsv1.DeploymentStatus{ObservedGeneration: w.Generation, Replicas: r, UpdatedReplicas: r, ReadyReplicas: r, AvailableReplicas: r,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: now, LastTransitionTime: now},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: now, LastTransitionTime: now},
			}}
	}
	if err := c.workload.Client.Status().Update(ctx, obj); err != nil {
		return false, err
	}
	return false, nil // running from the next tick on, as the kubelets report it
}
