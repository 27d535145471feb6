package service

import (
	"encoding/json"
	"regexp"
	"time"

	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// ClusterView is a cluster as the API shows it.
type ClusterView struct {
	Name              string      `json:"name"`
	Provider          string      `json:"provider"`
	ManagementCluster string      `json:"managementCluster,omitempty"`
	Phase             store.Phase `json:"phase"`
	Message           string      `json:"message,omitempty"`
	Generation        int64       `json:"generation"`
	// Spec is the spec in the shape it was submitted in (spec.Shape).
	Spec      json.RawMessage `json:"spec"`
	Operation *OperationView  `json:"operation,omitempty"`
	// Nodes are the machines ready and desired (control plane and
	// workers), as the management cluster last reported them.
	Nodes     *NodesView `json:"nodes,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	// Warnings are the submitted document's fields the service accepted
	// and ignored (also sent as Warning headers); on writes only.
	Warnings []string `json:"warnings,omitempty"`
	// stored is the spec as stored (normalised, whatever shape it was
	// submitted in), which Summary reads.
	stored json.RawMessage
}

// SpecSummary is what a list of clusters shows of a cluster's spec.
type SpecSummary struct {
	// Region is the provider section's region ("" when it names none).
	Region string
	// KubernetesVersion is spec.kubernetes.version.
	KubernetesVersion string
}

// Summary reads the region and Kubernetes version of the cluster's spec,
// of either shape (zero when the stored spec cannot be read). It decodes
// the spec on each call: the API's answers, which do not show it, never
// pay for it.
func (v ClusterView) Summary() SpecSummary {
	var c spec.Capi
	if json.Unmarshal(v.stored, &c) != nil {
		return SpecSummary{}
	}
	return SpecSummary{Region: c.Spec.Region(), KubernetesVersion: c.Spec.Kubernetes.Version}
}

// OperationView is an operation as the API shows it.
type OperationView struct {
	ID    string               `json:"id"`
	Kind  store.OperationKind  `json:"kind"`
	State store.OperationState `json:"state"`
	Step  string               `json:"step,omitempty"`
	Error string               `json:"error,omitempty"`
	Steps []StepView           `json:"steps"`
	// RequestedBy names the token that asked for the operation.
	RequestedBy string     `json:"requestedBy,omitempty"`
	Generation  int64      `json:"generation"`
	CreatedAt   time.Time  `json:"createdAt"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
}

// StepView is one step of an operation as the API shows it.
type StepView struct {
	Name     string          `json:"name"`
	State    store.StepState `json:"state"`
	Attempts int             `json:"attempts"`
	Error    string          `json:"error,omitempty"`
	Message  string          `json:"message,omitempty"`
	// Failure is set on a failed step.
	Failure    *FailureView `json:"failure,omitempty"`
	StartedAt  *time.Time   `json:"startedAt,omitempty"`
	FinishedAt *time.Time   `json:"finishedAt,omitempty"`
}

// FailureView is a failed step's error in a form people can act on.
type FailureView struct {
	Step        string `json:"step"`
	Code        string `json:"code"`
	Retryable   bool   `json:"retryable"`
	Remediation string `json:"remediation"`
	Reason      string `json:"reason,omitempty"`
	Message     string `json:"message"`
	// TraceID is the OpenTelemetry trace of the failing run (the trace_id
	// of its log lines), when tracing is on.
	TraceID string `json:"traceId,omitempty"`
}

// StatusView is GET /v1/clusters/{name}/status.
type StatusView struct {
	Name      string         `json:"name"`
	Phase     store.Phase    `json:"phase"`
	Operation *OperationView `json:"operation,omitempty"`
	// Conditions, CAPIPhase and the replica counts are what the management
	// cluster last reported for the CAPI Cluster.
	Conditions []ConditionView `json:"conditions"`
	CAPIPhase  string          `json:"capiPhase,omitempty"`
	// Initialization is how far CAPI has brought the cluster: its
	// infrastructure provisioned, its control plane initialized (the
	// workload API server answers; the CNI and CCM are installed then).
	Initialization *InitializationView     `json:"initialization,omitempty"`
	ControlPlane   *ReplicasView           `json:"controlPlane,omitempty"`
	Workers        *ReplicasView           `json:"workers,omitempty"`
	Pools          map[string]ReplicasView `json:"pools,omitempty"`
	// Addons are spec.bootstrap's addons on the workload cluster, in install order.
	Addons []AddonView `json:"addons"`
	// Error is the failure of the latest operation's failed step, if any.
	Error *FailureView `json:"error,omitempty"`
	// GitOps is the GitOps source's readiness, as its controllers report it.
	GitOps    *GitOpsView `json:"gitops,omitempty"`
	Message   string      `json:"message,omitempty"`
	UpdatedAt time.Time   `json:"updatedAt"`
}

// GitOpsView is the GitOps source's state on the workload cluster.
type GitOpsView struct {
	Provider  string    `json:"provider"`
	Repo      string    `json:"repo"`
	Ready     bool      `json:"ready"`
	Reason    string    `json:"reason,omitempty"`
	Message   string    `json:"message,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// AddonView is an addon's state on the workload cluster.
type AddonView struct {
	Name  string           `json:"name"`
	State store.AddonState `json:"state"`
	Chart string           `json:"chart,omitempty"`
	// Version is the chart version installed.
	Version string `json:"version,omitempty"`
	// Message is Helm's message when the install failed.
	Message   string    `json:"message,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// The parts of a cluster's observed status (mgmt.Status, as the watcher
// records it in clusters.observed) the API shows are shown in their own
// JSON shape: one declaration, in mgmt.
type (
	// ReplicasView counts machines.
	ReplicasView = mgmt.Replicas
	// ConditionView is a condition the management cluster reported.
	ConditionView = mgmt.Condition
	// InitializationView is CAPI's status.initialization of the cluster.
	InitializationView = mgmt.Initialization
)

// CredentialView is a credential's metadata; the secret is never shown.
type CredentialView struct {
	Name        string    `json:"name"`
	Provider    string    `json:"provider"`
	KeysSet     []string  `json:"keysSet"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// NodesView counts a cluster's machines.
type NodesView struct {
	Ready   int64 `json:"ready"`
	Desired int64 `json:"desired"`
}

// internalAddress matches what would tell a tenant where the service's
// own systems are: URLs and IP addresses (with a port) in error texts, such
// as `Get "https://10.0.3.7:6443/api": dial tcp 10.0.3.7:6443: …`.
var internalAddress = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s"']+|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9a-fA-F:]+\](?::\d+)?`)

// ForAudience returns text as it may be shown: as is to admins (and in the
// logs), with internal addresses replaced for tenants.
func ForAudience(text string, raw bool) string {
	if raw || text == "" {
		return text
	}
	return internalAddress.ReplaceAllString(text, "<internal address>")
}

func clusterView(c store.Cluster, op *store.Operation, raw bool) ClusterView {
	v := ClusterView{
		Name: c.Name, Provider: c.Provider, ManagementCluster: c.ManagementDomain, Phase: c.Phase,
		Message: ForAudience(c.Message, raw), Generation: c.Generation, Spec: specInShape(c),
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, DeletedAt: c.DeletedAt, stored: c.Spec,
	}
	if op != nil {
		ov := operationView(*op, raw)
		v.Operation = &ov
	}
	var obs mgmt.Status
	if err := json.Unmarshal(c.Observed, &obs); err == nil && (obs.ControlPlane != nil || obs.Workers != nil) {
		v.Nodes = &NodesView{}
		for _, r := range []*ReplicasView{obs.ControlPlane, obs.Workers} {
			if r != nil {
				v.Nodes.Ready += r.Ready
				v.Nodes.Desired += r.Desired
			}
		}
	}
	return v
}

// specInShape is a cluster's stored (normalised) spec in the shape it was
// submitted in; the stored spec itself when it cannot be rendered.
func specInShape(c store.Cluster) json.RawMessage {
	if c.SpecShape != string(spec.ShapeProvider) {
		return c.Spec
	}
	var capi spec.Capi
	if err := json.Unmarshal(c.Spec, &capi); err != nil {
		return c.Spec
	}
	out, err := spec.Render(&capi, spec.ShapeProvider)
	if err != nil {
		return c.Spec
	}
	return out
}

func operationView(op store.Operation, raw bool) OperationView {
	v := OperationView{
		ID: op.ID.String(), Kind: op.Kind, State: op.State, Step: op.Step, Error: ForAudience(op.Error, raw),
		RequestedBy: op.RequestedByName, Generation: op.Generation,
		Steps: make([]StepView, 0, len(op.Steps)), CreatedAt: op.CreatedAt, StartedAt: op.StartedAt, FinishedAt: op.FinishedAt,
	}
	for _, s := range op.Steps {
		sv := StepView{
			Name: s.Name, State: s.State, Attempts: s.Attempts, Error: ForAudience(s.Error, raw), Message: ForAudience(s.Message, raw),
			StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
		}
		if s.State == store.StepFailed && s.Failure.Code != "" {
			sv.Failure = &FailureView{Step: s.Name, Code: s.Failure.Code, Retryable: s.Failure.Retryable,
				Remediation: s.Failure.Remediation, Reason: ForAudience(s.Failure.Reason, raw), Message: sv.Error, TraceID: s.Failure.TraceID}
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

func statusView(c store.Cluster, op *store.Operation, addons []store.Addon, raw bool) StatusView {
	v := StatusView{Name: c.Name, Phase: c.Phase, Message: ForAudience(c.Message, raw), UpdatedAt: c.UpdatedAt, Conditions: []ConditionView{},
		Addons: make([]AddonView, 0, len(addons))}
	for _, a := range addons {
		v.Addons = append(v.Addons, AddonView{Name: a.Name, State: a.State, Chart: a.Chart, Version: a.Version, Message: ForAudience(a.Message, raw), UpdatedAt: a.UpdatedAt})
	}
	var obs mgmt.Status
	if err := json.Unmarshal(c.Observed, &obs); err == nil {
		if obs.Conditions != nil {
			v.Conditions = obs.Conditions
		}
		v.CAPIPhase, v.ControlPlane, v.Workers, v.Pools = obs.Phase, obs.ControlPlane, obs.Workers, obs.Pools
		v.Initialization = obs.Initialization
	}
	if op != nil {
		ov := operationView(*op, raw)
		v.Operation = &ov
		for _, s := range ov.Steps {
			if s.Failure != nil {
				v.Error = s.Failure
			}
		}
	}
	return v
}

func credentialView(c store.Credential) CredentialView {
	return CredentialView{Name: c.Name, Provider: c.Provider, KeysSet: c.KeysSet, Fingerprint: c.Fingerprint,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}
