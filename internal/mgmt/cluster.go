package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the server-side apply field manager of everything the
// service applies: one manager, so re-applying converges and never fights itself.
const FieldManager = "lok8s"

// ErrNotFound is returned when an object asked for does not exist (yet).
var ErrNotFound = errors.New("not found on the management cluster")

// Cluster is one management cluster.
type Cluster struct {
	Domain string
	Config *rest.Config
	client client.Client
	// cache, when set, is the watcher's view the wait and rollout checks read (SetCache).
	cache atomic.Pointer[cacheBox]
	// watchedElsewhere: another replica holds this cluster's watcher lease
	// (SetWatchedElsewhere).
	watchedElsewhere atomic.Bool
	// tenantRole is the ClusterRole the service binds to itself in each
	// tenant namespace ("" binds none: the service's own RBAC covers them).
	tenantRole      string
	boundNamespaces sync.Map
	// invMu guards the inventory RecentInventory read last, and when.
	invMu sync.Mutex
	inv   Inventory
	invAt time.Time
}

// Client is the cluster's client, for callers that need more than this type offers.
func (c *Cluster) Client() client.Client { return c.client }

// EnsureNamespace creates namespace name if it does not exist, with labels.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	ns.SetLabels(labels)
	return c.Apply(ctx, ns)
}

// Apply server-side applies obj as FieldManager, taking ownership of the
// fields it sets (the service is their only writer). It checks nothing:
// what may belong to a tenant goes through ApplyOwned.
func (c *Cluster) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	return c.apply(ctx, obj, "", "")
}

// createOnlyVersion is the resourceVersion ApplyNew applies with. Server-side
// apply takes an applied metadata.resourceVersion as a precondition on an
// object that exists (409 Conflict unless it is the object's) and ignores
// it when it creates the object (kubernetes/kubernetes#106745 describes
// the behaviour; TestApplyNewIsCreateOnly holds the apiserver to it). No
// stored object has this version: etcd numbers its revisions from 1 up,
// one per write, and would need 2^63 writes to reach it.
const createOnlyVersion = "9223372036854775807"

// ApplyNew server-side applies obj only if no object of its name exists:
// one request that creates it with FieldManager's ownership, or fails
// with 409 Conflict (apierrors.IsConflict) and changes nothing.
func (c *Cluster) ApplyNew(ctx context.Context, obj *unstructured.Unstructured) error {
	return c.apply(ctx, obj, "", createOnlyVersion)
}

// applyIf server-side applies obj if the object of its name is the one
// with uid (otherwise preconditionFailed says so of the error).
func (c *Cluster) applyIf(ctx context.Context, obj *unstructured.Unstructured, uid types.UID) error {
	return c.apply(ctx, obj, uid, "")
}

func (c *Cluster) apply(ctx context.Context, obj *unstructured.Unstructured, uid types.UID, resourceVersion string) error {
	obj = obj.DeepCopy()
	obj.SetManagedFields(nil)
	obj.SetUID(uid)
	obj.SetResourceVersion(resourceVersion)
	//nolint:staticcheck // client.Apply with unstructured objects is the supported SSA path here.
	if err := c.client.Patch(ctx, obj, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s: %w", obj.GetKind(), objectKey(obj), err)
	}
	return nil
}

// Delete deletes the object named by gvk, namespace and name; absent is fine.
func (c *Cluster) Delete(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) error {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	obj.SetNamespace(namespace)
	obj.SetName(name)
	// Background propagation, as kubectl does: CAPI's own finalizers order
	// the teardown of what a Cluster owns.
	err := c.client.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s/%s: %w", gvk.Kind, namespace, name, err)
	}
	return nil
}

// Exists reports whether the object named by gvk, namespace and name exists.
func (c *Cluster) Exists(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (bool, error) {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	err := c.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s %s/%s: %w", gvk.Kind, namespace, name, err)
	}
	return true, nil
}

// Kubeconfig returns the workload cluster's kubeconfig from the
// <cluster>-kubeconfig Secret (key "value") that CAPI writes, as
// `clusterctl get kubeconfig` does.
func (c *Cluster) Kubeconfig(ctx context.Context, namespace, cluster string) ([]byte, error) {
	var secret corev1.Secret
	err := c.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: cluster + "-kubeconfig"}, &secret)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("secret %s/%s-kubeconfig: %w", namespace, cluster, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s/%s-kubeconfig: %w", namespace, cluster, err)
	}
	value, ok := secret.Data["value"]
	if !ok || len(value) == 0 {
		return nil, fmt.Errorf("secret %s/%s-kubeconfig has no key %q: %w", namespace, cluster, "value", ErrNotFound)
	}
	return value, nil
}

// ClusterStatus reads the CAPI Cluster namespace/name, from the
// watcher's cache when it holds it.
func (c *Cluster) ClusterStatus(ctx context.Context, namespace, name string) (Status, error) {
	if obj, ok := c.cachedObject(ClusterGVK, namespace, name); ok {
		return StatusOf(obj)
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(ClusterGVK)
	err := c.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return Status{}, fmt.Errorf("cluster %s/%s: %w", namespace, name, ErrNotFound)
	}
	if err != nil {
		return Status{}, fmt.Errorf("get cluster %s/%s: %w", namespace, name, err)
	}
	return StatusOf(obj)
}

func objectKey(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}

// Status is what the service keeps of a CAPI Cluster's status.
type Status struct {
	Phase      string      `json:"phase,omitempty"`
	Conditions []Condition `json:"conditions"`
	// Initialization is CAPI's v1beta2 status.initialization: the
	// infrastructure provisioned, the control plane initialized (its
	// first machine answers and the kubeconfig Secret exists).
	Initialization *Initialization `json:"initialization,omitempty"`
	// ControlPlane and Workers are CAPI's replica counters (v1beta2 status.controlPlane / status.workers).
	ControlPlane *Replicas `json:"controlPlane,omitempty"`
	Workers      *Replicas `json:"workers,omitempty"`
	// Pools are the workers per MachineDeployment (pool name → replicas), filled by the watcher.
	Pools map[string]Replicas `json:"pools,omitempty"`
	// Tenant is the Cluster's lok8s.dev/tenant label: whose it is.
	Tenant string `json:"-"`
	// FailureReason and FailureMessage are set when CAPI reports a terminal failure.
	FailureReason  string `json:"failureReason,omitempty"`
	FailureMessage string `json:"failureMessage,omitempty"`
}

// Initialization is what CAPI says of a cluster's first steps.
type Initialization struct {
	InfrastructureProvisioned bool `json:"infrastructureProvisioned"`
	ControlPlaneInitialized   bool `json:"controlPlaneInitialized"`
}

// Condition is a v1beta2 (metav1) condition.
type Condition struct {
	Type               string     `json:"type"`
	Status             string     `json:"status"`
	Reason             string     `json:"reason,omitempty"`
	Message            string     `json:"message,omitempty"`
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty"`
}

// Replicas are desired/ready/available/up-to-date counts.
type Replicas struct {
	Desired   int64 `json:"desired"`
	Ready     int64 `json:"ready"`
	Available int64 `json:"available"`
	UpToDate  int64 `json:"upToDate"`
}

// Condition returns the condition of type t, if present.
func (s Status) Condition(t string) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// The CAPI Cluster phases the pipeline acts on.
const (
	CAPIPhaseProvisioned = "Provisioned"
	CAPIPhaseFailed      = "Failed"
)

// ControlPlaneInitialized reports whether CAPI says the control plane is
// initialized: status.initialization.controlPlaneInitialized, or the
// ControlPlaneInitialized condition (CAPI v1beta2,
// internal/controllers/cluster/cluster_controller_status.go). From then
// on the workload API server answers and the kubeconfig Secret exists,
// while the nodes wait for a CNI and, with an external cloud provider, the
// cloud-controller-manager.
func (s Status) ControlPlaneInitialized() bool {
	if s.Initialization != nil && s.Initialization.ControlPlaneInitialized {
		return true
	}
	return s.conditionTrue("ControlPlaneInitialized")
}

func (s Status) conditionTrue(t string) bool {
	c, ok := s.Condition(t)
	return ok && c.Status == string(metav1.ConditionTrue)
}

// Readiness is how far a cluster is from Ready, as CAPI reports it.
type Readiness struct {
	// Ready: the control plane is Available with all its machines ready,
	// and every pool has all its machines ready (their Nodes Ready).
	Ready bool
	// Progress says what is ready and what is not, for people.
	Progress string
}

// Readiness says whether the cluster is Ready in the sense users mean: CAPI
// reports it Provisioned with its control plane Available and all its
// control-plane machines ready, and every pool named in pools (the
// MachineDeployments and MachinePools applied) has as many ready machines
// as it wants. A machine is ready when its Node is Ready, which needs the
// CNI, and it has a nodeRef only once the Node has the providerID the
// cloud-controller-manager sets (CAPI internal/controllers/machine/
// machine_controller_noderef.go).
func (s Status) Readiness(pools []string) Readiness {
	var parts []string
	ready := s.Phase == CAPIPhaseProvisioned
	available := s.conditionTrue("ControlPlaneAvailable")
	ready = ready && available
	cp := "control plane not available"
	if available {
		cp = "control plane available"
	}
	if r := s.ControlPlane; r != nil {
		cp += fmt.Sprintf(", %d/%d machines ready", r.Ready, r.Desired)
		ready = ready && r.Ready >= r.Desired
	}
	parts = append(parts, cp)
	for _, name := range pools {
		r, ok := s.Pools[name]
		if !ok {
			parts = append(parts, "pool "+name+" not reported yet")
			ready = false
			continue
		}
		parts = append(parts, fmt.Sprintf("pool %s %d/%d ready", name, r.Ready, r.Desired))
		ready = ready && r.Ready >= r.Desired
	}
	return Readiness{Ready: ready, Progress: strings.Join(parts, "; ")}
}

// Failure returns CAPI's reason when it reports the cluster failed.
func (s Status) Failure() (string, bool) {
	if s.Phase != CAPIPhaseFailed && s.FailureReason == "" && s.FailureMessage == "" {
		return "", false
	}
	msg := s.FailureMessage
	if s.FailureReason != "" {
		msg = s.FailureReason + ": " + msg
	}
	if msg == "" {
		msg = "CAPI reports the cluster phase Failed"
	}
	return msg, true
}

// StatusOf extracts a Status from a v1beta2 CAPI Cluster.
func StatusOf(obj *unstructured.Unstructured) (Status, error) {
	raw, found, err := unstructured.NestedMap(obj.Object, "status")
	if err != nil {
		return Status{}, fmt.Errorf("cluster %s status: %w", objectKey(obj), err)
	}
	st := Status{Conditions: []Condition{}, Tenant: obj.GetLabels()[LabelTenant]}
	if !found {
		return st, nil
	}
	var wire struct {
		Phase          string          `json:"phase"`
		Initialization *Initialization `json:"initialization"`
		Conditions     []metav1.Condition
		ControlPlane   *struct {
			DesiredReplicas, ReadyReplicas, AvailableReplicas, UpToDateReplicas int64
		} `json:"controlPlane"`
		Workers *struct {
			DesiredReplicas, ReadyReplicas, AvailableReplicas, UpToDateReplicas int64
		} `json:"workers"`
		Deprecated *struct {
			V1Beta1 *struct {
				FailureReason  string `json:"failureReason"`
				FailureMessage string `json:"failureMessage"`
			} `json:"v1beta1"`
		} `json:"deprecated"`
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return Status{}, err
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		return Status{}, fmt.Errorf("cluster %s status: %w", objectKey(obj), err)
	}
	st.Phase, st.Initialization = wire.Phase, wire.Initialization
	for _, c := range wire.Conditions {
		t := c.LastTransitionTime.UTC()
		st.Conditions = append(st.Conditions, Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message, LastTransitionTime: &t})
	}
	if cp := wire.ControlPlane; cp != nil {
		st.ControlPlane = &Replicas{Desired: cp.DesiredReplicas, Ready: cp.ReadyReplicas, Available: cp.AvailableReplicas, UpToDate: cp.UpToDateReplicas}
	}
	if w := wire.Workers; w != nil {
		st.Workers = &Replicas{Desired: w.DesiredReplicas, Ready: w.ReadyReplicas, Available: w.AvailableReplicas, UpToDate: w.UpToDateReplicas}
	}
	if d := wire.Deprecated; d != nil && d.V1Beta1 != nil {
		st.FailureReason, st.FailureMessage = d.V1Beta1.FailureReason, d.V1Beta1.FailureMessage
	}
	return st, nil
}
