package api

import "lok8s.dev/provisioner/internal/service"

// The API shows the service's views as they are.
type (
	// ClusterView is a cluster as the API shows it.
	ClusterView = service.ClusterView
	// OperationView is an operation as the API shows it.
	OperationView = service.OperationView
	// StepView is one step of an operation.
	StepView = service.StepView
	// FailureView is a failed step's error in a form people can act on.
	FailureView = service.FailureView
	// StatusView is GET /v1/clusters/{name}/status.
	StatusView = service.StatusView
	// GitOpsView is the GitOps source's state on the workload cluster.
	GitOpsView = service.GitOpsView
	// AddonView is an addon's state on the workload cluster.
	AddonView = service.AddonView
	// ReplicasView counts machines.
	ReplicasView = service.ReplicasView
	// ConditionView is a condition the management cluster reported.
	ConditionView = service.ConditionView
	// InitializationView is CAPI's status.initialization of the cluster.
	InitializationView = service.InitializationView
	// CredentialView is a credential's metadata; the secret is never shown.
	CredentialView = service.CredentialView
	// NodesView counts a cluster's machines.
	NodesView = service.NodesView
)
