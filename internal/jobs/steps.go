package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"lok8s.dev/provisioner/internal/store"
)

// The provisioning steps, in the order they run (the seed's driver steps).
const (
	StepDetect      = "detect"
	StepCredentials = "credentials"
	StepRender      = "render"
	StepApply       = "apply"
	StepWait        = "wait"
	StepKubeconfig  = "kubeconfig"
	StepBootstrap   = "bootstrap"
	StepGitOps      = "gitops"
)

// The deprovisioning steps.
const (
	StepDelete             = "delete"
	StepWaitDeleted        = "wait-deleted"
	StepCredentialsCleanup = "credentials-cleanup"
)

// NewPipeline returns the service's pipeline. Steps that drive a management
// cluster are not part of this version yet: they fail with a clear,
// permanent error rather than pretend, so no cluster is ever reported
// provisioned without a management cluster having done the work.
func NewPipeline() *Pipeline {
	return &Pipeline{
		steps: map[store.OperationKind][]Step{
			store.OpProvision: {
				{Name: StepDetect, Run: detectProvider},
				notAvailable(StepCredentials),
				notAvailable(StepRender),
				notAvailable(StepApply),
				notAvailable(StepWait),
				notAvailable(StepKubeconfig),
				notAvailable(StepBootstrap),
				notAvailable(StepGitOps),
			},
			store.OpDeprovision: {
				nothingToRemove(StepDelete),
				nothingToRemove(StepWaitDeleted),
				nothingToRemove(StepCredentialsCleanup),
			},
		},
		done: map[store.OperationKind]store.Phase{
			store.OpProvision:   store.PhaseProvisioned,
			store.OpDeprovision: store.PhaseDeleted,
		},
	}
}

// detectProvider checks that the stored spec names exactly one provider.
func detectProvider(_ context.Context, r *Run) (Outcome, error) {
	provider := r.Spec.Provider()
	if provider == "" {
		fields := r.Spec.Spec.ProviderFields()
		if len(fields) == 0 {
			return Outcome{}, Permanent(fmt.Errorf("no provider section: set one of spec.hcloud, spec.hrobot or spec.aws"))
		}
		return Outcome{}, Permanent(fmt.Errorf("ambiguous provider: %s are all set; keep one provider", strings.Join(fields, ", ")))
	}
	return Outcome{Message: "provider " + provider}, nil
}

// errNoManagementCluster is the error of steps this version cannot run.
const errNoManagementCluster = "this step needs a management cluster, and this version of the service cannot drive one yet"

func notAvailable(name string) Step {
	return Step{Name: name, Run: func(context.Context, *Run) (Outcome, error) {
		return Outcome{}, Permanent(errors.New(errNoManagementCluster))
	}}
}

// nothingToRemove skips a deprovisioning step: no step of this version
// creates anything on a management cluster, so there is nothing to remove.
func nothingToRemove(name string) Step {
	return Step{Name: name, Run: func(context.Context, *Run) (Outcome, error) {
		return Outcome{Skipped: true, Message: "nothing to remove: this version creates nothing on a management cluster"}, nil
	}}
}
