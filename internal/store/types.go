package store

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Phase is a cluster's lifecycle phase as users see it.
type Phase string

// The cluster phases.
const (
	PhasePending      Phase = "Pending"
	PhaseProvisioning Phase = "Provisioning"
	PhaseProvisioned  Phase = "Provisioned"
	PhaseUpdating     Phase = "Updating"
	PhaseDeleting     Phase = "Deleting"
	PhaseDeleted      Phase = "Deleted"
	PhaseFailed       Phase = "Failed"
)

// Phases lists every phase a stored cluster can be in.
var Phases = []Phase{PhasePending, PhaseProvisioning, PhaseProvisioned, PhaseUpdating, PhaseDeleting, PhaseDeleted, PhaseFailed}

// OperationKind says what an operation does to its cluster.
type OperationKind string

// The operation kinds.
const (
	OpProvision   OperationKind = "provision"
	OpUpdate      OperationKind = "update"
	OpDeprovision OperationKind = "deprovision"
)

// OperationState is where an operation is in its life.
type OperationState string

// The operation states. Queued and running operations are active: a cluster
// has at most one active operation.
const (
	OpQueued    OperationState = "queued"
	OpRunning   OperationState = "running"
	OpSucceeded OperationState = "succeeded"
	OpFailed    OperationState = "failed"
	OpCancelled OperationState = "cancelled"
)

// StepState is where a step of an operation is.
type StepState string

// The step states.
const (
	StepPending   StepState = "pending"
	StepRunning   StepState = "running"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepSkipped   StepState = "skipped"
)

// Tenant owns clusters, credentials and tokens.
type Tenant struct {
	ID        uuid.UUID
	Name      string
	CreatedAt time.Time
}

// Principal is who a request acts as: a token and its tenant.
type Principal struct {
	TenantID   uuid.UUID
	TenantName string
	TokenID    uuid.UUID
	TokenName  string
	Admin      bool
	// SessionHash is set when the principal came from a dashboard session
	// (the hash of its id): the session must still exist for it to act.
	SessionHash []byte
}

// Cluster is a stored cluster: its spec as submitted (with defaults) and
// what the service and the management cluster last reported.
type Cluster struct {
	ID               uuid.UUID
	TenantID         uuid.UUID
	Name             string
	Provider         string
	ManagementDomain string
	// Namespace is where the cluster's objects live on the management cluster.
	Namespace string
	Spec      json.RawMessage
	// SpecShape is the shape Spec was submitted in (spec.Shape); Spec
	// itself is normalised.
	SpecShape  string
	Generation int64
	// Machines is what the spec asks for: control plane and pools.
	Machines  int64
	Phase     Phase
	Message   string
	Observed  json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt *time.Time
}

// Operation is one provisioning, update or deprovisioning run of a cluster.
type Operation struct {
	ID          uuid.UUID
	TenantID    uuid.UUID
	ClusterID   uuid.UUID
	Kind        OperationKind
	State       OperationState
	Step        string
	Error       string
	Generation  int64
	RiverJobID  *int64
	RequestedBy *uuid.UUID
	// RequestedByName is the name of the token that asked ("" once deleted).
	RequestedByName string
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
	Steps           []Step
}

// Active reports whether the operation is queued or running.
func (o Operation) Active() bool { return o.State == OpQueued || o.State == OpRunning }

// Step is one named step of an operation.
type Step struct {
	Name     string
	State    StepState
	Attempts int
	Error    string
	Message  string
	// Failure describes the error of a failed step (zero otherwise).
	Failure    Failure
	StartedAt  *time.Time
	FinishedAt *time.Time
}

// Credential is a stored credential's metadata; its secret stays sealed.
type Credential struct {
	ID          uuid.UUID
	TenantID    uuid.UUID
	Name        string
	Provider    string
	KeysSet     []string
	Fingerprint string
	KeyID       string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID        int64
	TenantID  uuid.UUID
	TokenID   *uuid.UUID
	Action    string
	Target    string
	RequestID string
	Details   json.RawMessage
	At        time.Time
}

// Failure is a step's error in a form people can act on.
type Failure struct {
	// Message is the error's text.
	Message string
	// Code is stable and documented (CredentialsRejected, Timeout, ...).
	Code string
	// Retryable says whether retrying as is may succeed.
	Retryable bool
	// Remediation is one line a person can follow.
	Remediation string
	// Reason is the raw reason from CAPI or the provider, for experts.
	Reason string
	// TraceID is the OpenTelemetry trace the failing run belongs to ("":
	// tracing was off), the one its log lines carry.
	TraceID string
}
