package mgmt

import "k8s.io/apimachinery/pkg/runtime/schema"

// The labels the service puts on what it applies to a management cluster
// (and LabelTenant on what it creates in a workload cluster too); the
// templates under templates/ write LabelPool and LabelHostType themselves.
const (
	// LabelTenant names the tenant that owns an object the service created.
	LabelTenant = "lok8s.dev/tenant"
	// LabelCluster names the cluster an object belongs to.
	LabelCluster = "lok8s.dev/cluster"
	// LabelPool names the worker pool of a MachineDeployment or MachinePool
	// and of its machine templates.
	LabelPool = "lok8s.dev/pool"
	// LabelHostType is a bare-metal host's type (ax41), by which a pool's
	// machine template selects hosts.
	LabelHostType = "lok8s.dev/host-type"
)

// ClusterNameLabel is CAPI's label of a cluster's objects; CAPI puts it
// on the infrastructure machines it creates from a pool's template, with
// the Machine template's labels (LabelPool among them).
const ClusterNameLabel = "cluster.x-k8s.io/cluster-name"

// The CAPI kinds the service creates, watches and reads, at the versions
// it uses (CAPI's storage versions).
var (
	// ClusterGVK is the CAPI Cluster the service creates and watches.
	ClusterGVK = schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "Cluster"}
	// MachineDeploymentGVK and MachinePoolGVK run worker pools (PoolKinds).
	MachineDeploymentGVK = ClusterGVK.GroupVersion().WithKind("MachineDeployment")
	MachinePoolGVK       = ClusterGVK.GroupVersion().WithKind("MachinePool")
	// KubeadmControlPlaneGVK is the kubeadm control plane, which the
	// rollout check reads.
	KubeadmControlPlaneGVK = schema.GroupVersionKind{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlane"}
	// ClusterctlProviderGVK is clusterctl's inventory: one Provider object
	// per installed provider, named <type>-<name> (cluster-api,
	// infrastructure-hetzner), with its version (CAPI
	// cmd/clusterctl/api/v1alpha3/provider_type.go). Preflight reads it.
	ClusterctlProviderGVK = schema.GroupVersionKind{Group: "clusterctl.cluster.x-k8s.io", Version: "v1alpha3", Kind: "Provider"}
)
