package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/store"
)

// The provisioning steps, in the order they run. A cluster with an
// external cloud provider becomes Ready only once its CNI and
// cloud-controller-manager run (the CCM gives each Node its providerID,
// CAPI then the Machine its nodeRef, and only then is the control plane
// Available and are its other machines created), so these are installed as
// soon as the control plane is initialized, and the wait for Ready nodes
// comes after them (CAPH's quickstart does the same,
// docs/caph/01-getting-started/02-quickstart/03-creating-a-workload-cluster.md).
const (
	StepDetect                  = "detect"
	StepRender                  = "render"
	StepPreflight               = "preflight"
	StepCredentials             = "credentials"
	StepApply                   = "apply"
	StepControlPlaneInitialized = "control-plane-initialized"
	StepKubeconfig              = "kubeconfig"
	StepCNIAndCCM               = "cni-and-ccm"
	StepNodesReady              = "nodes-ready"
	StepAddons                  = "addons"
	StepGitOps                  = "gitops"
)

// The update steps (besides credentials, render and apply).
const (
	StepPrune   = "prune"
	StepRollout = "rollout"
)

// The deprovisioning steps.
const (
	StepDelete             = "delete"
	StepWaitDeleted        = "wait-deleted"
	StepCredentialsCleanup = "credentials-cleanup"
)

// WaitsOnWatcher reports whether step waits on what the management
// cluster's watcher watches (a CAPI Cluster, its pools and control plane),
// so that the watcher should wake it when those change.
func WaitsOnWatcher(step string) bool {
	switch step {
	case StepControlPlaneInitialized, StepNodesReady, StepRollout:
		return true
	}
	return false
}

// Deps is what the pipeline's steps work with.
type Deps struct {
	Store    *store.Store
	Keyring  *seal.Keyring
	Catalog  *capi.Catalog
	Clusters *mgmt.Registry
	// Kubeconfigs gives out the workload kubeconfig for every use: the
	// stored one, or a rotating one read anew each time.
	Kubeconfigs *kubeconfigs.Source
	// Addons and Installer install spec.bootstrap on workload clusters;
	// AddonOverrides holds the operator's <addon>.yaml values (may be nil).
	Addons         *addons.Catalog
	Installer      *addons.Installer
	AddonOverrides fs.FS
	// CheckInterval is how long the wait steps snooze between checks.
	CheckInterval time.Duration
	// WatchedCheckInterval is how long they snooze instead when the
	// management cluster's watcher serves what they read from its cache
	// and wakes them when it changes (mgmt.Cluster.Watched): the check
	// then only guards against a lost wake and the deadline.
	WatchedCheckInterval time.Duration
	// WaitTimeout bounds how long CAPI may take to provision (or delete) a cluster.
	WaitTimeout time.Duration
}

// Defaults of the Deps fields of the same names.
const (
	DefaultCheckInterval        = 15 * time.Second
	DefaultWatchedCheckInterval = 2 * time.Minute
	DefaultWaitTimeout          = 45 * time.Minute
)

// WithDefaults returns d with unset durations defaulted, and a kubeconfig
// Source over d's store, keys, management clusters and catalog if none is set.
func (d Deps) WithDefaults() Deps {
	d.CheckInterval = cmp.Or(d.CheckInterval, DefaultCheckInterval)
	d.WaitTimeout = cmp.Or(d.WaitTimeout, DefaultWaitTimeout)
	d.WatchedCheckInterval = cmp.Or(d.WatchedCheckInterval, DefaultWatchedCheckInterval)
	if d.Kubeconfigs == nil {
		d.Kubeconfigs = &kubeconfigs.Source{Store: d.Store, Keyring: d.Keyring, Clusters: d.Clusters, Catalog: d.Catalog}
	}
	return d
}

// NewPipeline returns the service's pipeline over d.
func NewPipeline(d Deps) *Pipeline {
	d = d.WithDefaults()
	s := &steps{Deps: d}
	return &Pipeline{
		steps: map[store.OperationKind][]Step{
			store.OpProvision: {
				{Name: StepDetect, Run: s.detect},
				{Name: StepRender, Run: s.render},
				{Name: StepPreflight, Run: s.preflight},
				{Name: StepCredentials, Run: s.credentials},
				{Name: StepApply, Run: s.apply},
				{Name: StepControlPlaneInitialized, Run: s.controlPlaneInitialized},
				{Name: StepKubeconfig, Run: s.kubeconfig},
				{Name: StepCNIAndCCM, Run: s.installCNIAndCCM},
				{Name: StepNodesReady, Run: s.nodesReady},
				{Name: StepAddons, Run: s.installOtherAddons},
				{Name: StepGitOps, Run: s.gitops},
			},
			store.OpUpdate: {
				{Name: StepCredentials, Run: s.credentials},
				{Name: StepRender, Run: s.render},
				{Name: StepApply, Run: s.apply},
				{Name: StepPrune, Run: s.prune},
				{Name: StepRollout, Run: s.rollout},
				{Name: StepAddons, Run: s.installAllAddons},
				{Name: StepGitOps, Run: s.gitops},
			},
			store.OpDeprovision: {
				{Name: StepDelete, Run: s.deleteCluster},
				{Name: StepWaitDeleted, Run: s.waitDeleted},
				{Name: StepCredentialsCleanup, Run: s.cleanupCredentials},
			},
		},
		done: map[store.OperationKind]store.Phase{
			store.OpProvision:   store.PhaseProvisioned,
			store.OpUpdate:      store.PhaseProvisioned,
			store.OpDeprovision: store.PhaseDeleted,
		},
		sections: d.Catalog.ProviderSections(),
		catalog:  d.Catalog,
	}
}

type steps struct{ Deps }

func labels(r *Run) map[string]string {
	return map[string]string{mgmt.LabelTenant: r.Cluster.TenantID.String(), mgmt.LabelCluster: r.Cluster.Name}
}

// managementCluster returns the run's management cluster; an unknown one
// cannot appear by retrying.
func (s *steps) managementCluster(r *Run) (*mgmt.Cluster, error) {
	mc, err := s.Clusters.Cluster(r.Cluster.ManagementDomain)
	if errors.Is(err, mgmt.ErrUnknownCluster) {
		return nil, Permanent(err)
	}
	return mc, err
}

// detect checks, once per provisioning, that the stored spec still selects
// the provider chosen when the cluster was submitted (clusters.provider),
// which every step then uses.
func (s *steps) detect(_ context.Context, r *Run) (Outcome, error) {
	p, err := s.Catalog.Detect(r.Spec.Capi)
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	if p.Name != r.Cluster.Provider {
		return Outcome{}, Permanent(fmt.Errorf("the spec selects provider %s, but the cluster was submitted for provider %s", p.Name, r.Cluster.Provider))
	}
	return Outcome{Message: "provider " + p.Name}, nil
}

// provider is the run's stored provider; one the catalog no longer has is
// a failure retrying cannot fix.
func provider(r *Run) (*capi.Provider, error) {
	if r.Provider == nil {
		return nil, Permanent(fmt.Errorf("provider %q, chosen when the cluster was submitted, is not installed", r.Cluster.Provider))
	}
	return r.Provider, nil
}

// credentials writes the cluster's credential to the management cluster as
// the Secret its provider reads. The plaintext lives only in memory here.
func (s *steps) credentials(ctx context.Context, r *Run) (Outcome, error) {
	p, err := provider(r)
	if err != nil {
		return Outcome{}, err
	}
	name := r.Spec.Spec.Credentials.SecretName
	fields, cred, err := s.openCredential(ctx, r, name)
	if err != nil {
		return Outcome{}, err
	}
	secret, err := p.CredentialSecret(name, r.Cluster.Namespace, fields)
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	secret.SetLabels(mergeLabels(secret.GetLabels(), labels(r)))
	mc, err := s.managementCluster(r)
	if err != nil {
		return Outcome{}, err
	}
	if err := mc.EnsureTenantNamespace(ctx, r.Cluster.Namespace, labels(r)); err != nil {
		return Outcome{}, notOwned(err)
	}
	if ns := secret.GetNamespace(); ns != r.Cluster.Namespace {
		if err := mc.EnsureNamespace(ctx, ns, nil); err != nil {
			return Outcome{}, err
		}
	}
	// Clusters of a tenant share their credential's Secret: it mostly exists.
	if err := s.applyOwned(ctx, mc, r, secret, false); err != nil {
		return Outcome{}, err
	}
	return Outcome{Message: fmt.Sprintf("secret %s/%s (%s, %s)", secret.GetNamespace(), secret.GetName(), cred.Provider, cred.Fingerprint)}, nil
}

// openCredential opens the tenant's credential name: its fields, in memory only.
func (s *steps) openCredential(ctx context.Context, r *Run, name string) (map[string]string, store.Credential, error) {
	cred, sealed, err := s.Store.SealedCredential(ctx, r.Cluster.TenantID, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, cred, Permanent(coded(fmt.Errorf("credential %q no longer exists", name), CodeCredentialMissing, false,
			fmt.Sprintf("create the credential with PUT /v1/credentials/%s, then retry", name), ""))
	}
	if err != nil {
		return nil, cred, err
	}
	plaintext, err := s.Keyring.Open(sealed, store.CredentialAAD(r.Cluster.TenantID, name))
	if err != nil {
		return nil, cred, Permanent(fmt.Errorf("credential %q cannot be opened with the configured keys: %w", name, err))
	}
	var fields map[string]string
	if err := json.Unmarshal(plaintext, &fields); err != nil {
		return nil, cred, Permanent(fmt.Errorf("credential %q is not a JSON object of strings", name))
	}
	return fields, cred, nil
}

// render renders the cluster's manifests and saves them, so apply (and a
// later retry) works from exactly what was rendered.
func (s *steps) render(ctx context.Context, r *Run) (Outcome, error) {
	p, err := provider(r)
	if err != nil {
		return Outcome{}, err
	}
	rendered, err := s.Catalog.Render(capi.RenderInput{
		Spec: r.Spec, Namespace: r.Cluster.Namespace, Provider: p,
		CredentialSecretName: r.Spec.Spec.Credentials.SecretName, Labels: labels(r),
	})
	if err != nil {
		return Outcome{}, Permanent(coded(fmt.Errorf("render templates: %w", err), CodeTemplateInvalid, false,
			"fix the provider's templates or the spec fields the error names, then retry", ""))
	}
	manifests, err := rendered.YAML()
	if err != nil {
		return Outcome{}, Permanent(fmt.Errorf("render templates: %w", err))
	}
	if r.Operation.Kind == store.OpUpdate {
		// Keep what this update replaces, for the prune step (once: a
		// retried render must not overwrite it with its own output).
		previous, err := s.Store.Manifests(ctx, r.Cluster.ID)
		if err != nil {
			return Outcome{}, err
		}
		if err := s.Store.SavePreviousManifests(ctx, r.Operation.ID, previous); err != nil {
			return Outcome{}, err
		}
	}
	if err := s.Store.SaveManifests(ctx, r.Cluster.ID, string(manifests)); err != nil {
		return Outcome{}, err
	}
	return Outcome{Message: fmt.Sprintf("%d objects", len(rendered.Objects))}, nil
}

// apply server-side applies the saved manifests; applying again changes nothing.
func (s *steps) apply(ctx context.Context, r *Run) (Outcome, error) {
	objs, mc, err := s.savedObjectsAndCluster(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	// The namespace exists: the credentials step, which always runs first, made it.
	// A provisioning's objects are new (a retry finds some there: each of
	// those costs a read more); an update's exist.
	likelyAbsent := r.Operation.Kind == store.OpProvision
	for _, obj := range objs {
		if err := s.applyOwned(ctx, mc, r, obj, likelyAbsent); err != nil {
			return Outcome{}, err
		}
	}
	return Outcome{Message: fmt.Sprintf("%d objects applied", len(objs))}, nil
}

// savedObjectsAndCluster returns the rendered objects saved by the render
// step and the management cluster they go to.
func (s *steps) savedObjectsAndCluster(ctx context.Context, r *Run) ([]*unstructured.Unstructured, *mgmt.Cluster, error) {
	objs, err := s.savedObjects(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	mc, err := s.managementCluster(r)
	if err != nil {
		return nil, nil, err
	}
	return objs, mc, nil
}

func (s *steps) savedObjects(ctx context.Context, r *Run) ([]*unstructured.Unstructured, error) {
	manifests, err := s.Store.Manifests(ctx, r.Cluster.ID)
	if err != nil {
		return nil, err
	}
	if manifests == "" {
		return nil, Permanent(errors.New("no rendered manifests: the render step has not run"))
	}
	objs, err := mgmt.DecodeObjects([]byte(manifests))
	if err != nil {
		return nil, Permanent(err)
	}
	return objs, nil
}

// controlPlaneInitialized re-checks the CAPI Cluster until CAPI reports its
// control plane initialized (the first control-plane machine runs the API
// server and CAPI has written the kubeconfig Secret), snoozing in between;
// a CAPI failure or the deadline fails the operation. The nodes are not
// Ready yet: they wait for the CNI and the cloud-controller-manager the
// next steps install.
func (s *steps) controlPlaneInitialized(ctx context.Context, r *Run) (Outcome, error) {
	st, out, err := s.observe(ctx, r)
	if err != nil || out != nil {
		return orSkip(out), err
	}
	if st.ControlPlaneInitialized() {
		return Outcome{Message: "control plane initialized: the workload API server answers"}, nil
	}
	return s.recheckWithin(r, "waiting for the control plane to initialize (CAPI phase "+orUnknown(st.Phase)+")", s.WaitTimeout, s.every(st.watched))
}

// nodesReady re-checks the CAPI Cluster until it is Ready as users mean
// it: control plane Available with every machine ready, and every pool's
// machines ready (their Nodes Ready, with the providerIDs the CCM set).
// Progress shows on the step while it waits.
func (s *steps) nodesReady(ctx context.Context, r *Run) (Outcome, error) {
	st, out, err := s.observe(ctx, r)
	if err != nil || out != nil {
		return orSkip(out), err
	}
	objs, err := s.savedObjects(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	var pools []string
	for _, o := range objs {
		if name, ok := mgmt.IsPool(r.Cluster.Name, o); ok {
			pools = append(pools, name)
		}
	}
	rd := st.Readiness(pools)
	if rd.Ready {
		return Outcome{Message: "ready: " + rd.Progress}, nil
	}
	return s.waitForMachines(ctx, r, StepNodesReady, rd.Progress, rd.Progress, st.watched)
}

// waitForMachines rechecks a step that waits on CAPI's machines: it fails
// the step at once if a machine failure has held too long (machinesWait),
// shows progress on the step, and snoozes it until the provider's machine
// timeout; watched says the answer came from the watcher's cache, so the
// next look may wait longer unless machinesWait had to poll.
func (s *steps) waitForMachines(ctx context.Context, r *Run, step, progress, state string, watched bool) (Outcome, error) {
	timeout, polled, err := s.machinesWait(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	if err := s.Store.SetStepMessage(ctx, r.Operation.ID, step, progress); err != nil {
		return Outcome{}, err
	}
	return s.recheckWithin(r, state, timeout, s.every(watched && !polled))
}

// machinesWait reads the provider's machine failures (capi.Waits) and
// fails the run with the first that holds; otherwise it returns how long
// the machines may take: the service's wait timeout, or the provider's
// waitTimeout when longer (bare metal installs for up to an hour). polled
// says the provider has machine failures to look for: the watcher does not
// watch those objects, so the wait keeps polling at CheckInterval.
func (s *steps) machinesWait(ctx context.Context, r *Run) (timeout time.Duration, polled bool, err error) {
	p, err := provider(r)
	if err != nil {
		return 0, false, err
	}
	w := p.Waits(r.Spec)
	mc, err := s.managementCluster(r)
	if err != nil {
		return 0, false, err
	}
	for _, mf := range w.MachineFailures {
		gv, err := schema.ParseGroupVersion(mf.APIVersion)
		if err != nil {
			return 0, false, err
		}
		hits, err := mc.ObjectsWithCondition(ctx, r.Cluster.Namespace, r.Cluster.Name, mgmt.ConditionQuery{
			GVK: gv.WithKind(mf.Kind), Type: mf.Condition.Type, Status: mf.Condition.Status, Reason: mf.Condition.Reason})
		if err != nil {
			return 0, false, err
		}
		for _, h := range hits {
			if !heldFor(h.Condition, r.StepStarted, time.Now(), mf.Duration()) {
				continue
			}
			what := mf.Kind + " " + h.Name
			if h.Pool != "" {
				what = "pool " + h.Pool + ": " + what
			}
			reason := fmt.Sprintf("%s: %s %s (%s): %s", what, h.Condition.Type, h.Condition.Status, h.Condition.Reason, h.Condition.Message)
			return 0, false, Permanent(coded(errors.New(reason), mf.Code, mf.Retryable, mf.Remediation, reason))
		}
	}
	return max(s.WaitTimeout, w.Timeout), len(w.MachineFailures) > 0, nil
}

// observed is a CAPI Cluster's status as a check read it.
type observed struct {
	mgmt.Status
	// watched: read from the watcher's cache, which wakes the check when
	// the Cluster or its pools change.
	watched bool
}

// observe reads the CAPI Cluster's status with its pools: from the
// management cluster watcher's cache when this replica leads it and the
// cache has synced (no request); from the store, as recorded by the
// watcher, when another replica leads it (one query); else with a
// read-only GET of the apiserver. It never records observed status: that has one writer, the
// watcher of the replica holding the management cluster's lease
// (watch.RunElected), which also wakes this check on a change. It returns
// an Outcome to end the check with when the Cluster is not there yet, and
// a permanent error when CAPI reports it failed.
func (s *steps) observe(ctx context.Context, r *Run) (observed, *Outcome, error) {
	mc, err := s.managementCluster(r)
	if err != nil {
		return observed{}, nil, err
	}
	watched := mc.Watched()
	var st mgmt.Status
	if !watched && mc.WatchedElsewhere() {
		// Another replica leads the watcher: read what it recorded, and
		// let its wake bring the next check.
		st, err = s.recorded(ctx, r)
		watched = true
	} else {
		st, err = mc.ObservedStatus(ctx, r.Cluster.Namespace, r.Cluster.Name)
	}
	switch {
	case errors.Is(err, mgmt.ErrNotFound):
		out, err := s.recheckWithin(r, "the CAPI Cluster does not exist yet", s.WaitTimeout, s.every(watched))
		return observed{}, &out, err
	case err != nil:
		return observed{}, nil, err
	}
	if st.Tenant != tenantOf(r) {
		return observed{}, nil, notOwned(fmt.Errorf("cluster %s/%s: %w", r.Cluster.Namespace, r.Cluster.Name, mgmt.ErrNotOwned))
	}
	if reason, failed := st.Failure(); failed {
		return observed{}, nil, Permanent(coded(fmt.Errorf("CAPI reports the cluster failed: %s", reason), CodeProviderFailed, false,
			"read CAPI's reason, fix the cause (spec, credential or provider account), then delete and recreate the cluster", reason))
	}
	return observed{Status: st, watched: watched}, nil, nil
}

// recorded is the CAPI Cluster's status as the watcher of the replica
// holding the management cluster's lease last recorded it in the store;
// mgmt.ErrNotFound before its first record. The watcher records a Cluster
// only into the row of the tenant its lok8s.dev/tenant label names.
func (s *steps) recorded(ctx context.Context, r *Run) (mgmt.Status, error) {
	raw, err := s.Store.Observed(ctx, r.Cluster.ID)
	if err != nil {
		return mgmt.Status{}, err
	}
	if len(raw) == 0 || string(raw) == "null" {
		return mgmt.Status{}, fmt.Errorf("no status recorded by the watcher yet: %w", mgmt.ErrNotFound)
	}
	var st mgmt.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return mgmt.Status{}, fmt.Errorf("decode the recorded observed status: %w", err)
	}
	st.Tenant = tenantOf(r)
	return st, nil
}

// every is how long a wait snoozes between checks: CheckInterval, or
// WatchedCheckInterval when the watcher wakes it on a change.
func (s *steps) every(watched bool) time.Duration {
	if watched {
		return max(s.WatchedCheckInterval, s.CheckInterval)
	}
	return s.CheckInterval
}

// heldFor reports whether a condition has held for d at now: since its
// lastTransitionTime, or (without one) since the wait began.
func heldFor(c mgmt.Condition, waitStarted, now time.Time, d time.Duration) bool {
	since := waitStarted
	if c.LastTransitionTime != nil {
		since = *c.LastTransitionTime
	}
	return now.Sub(since) >= d
}

// recheck snoozes the step for CheckInterval, or fails it once the
// deadline has passed.
func (s *steps) recheck(r *Run, state string) (Outcome, error) {
	return s.recheckWithin(r, state, s.WaitTimeout, s.CheckInterval)
}

// recheckWithin snoozes the step for every, or fails it once timeout has
// passed since it started; a snooze never passes the deadline by more
// than CheckInterval.
func (s *steps) recheckWithin(r *Run, state string, timeout, every time.Duration) (Outcome, error) {
	waited := time.Since(r.StepStarted)
	if waited > timeout {
		return Outcome{}, Permanent(coded(fmt.Errorf("timed out after %s: %s", timeout, state), CodeTimeout, true,
			"CAPI did not finish in time: check the provider's conditions in the status, then retry", state))
	}
	r.Logger.Info("not ready yet", "state", state)
	return Outcome{RecheckIn: min(every, timeout-waited+s.CheckInterval)}, nil
}

// kubeconfig fetches the workload cluster's kubeconfig and stores it
// sealed; a rotating one (EKS) is only checked to be there and to parse:
// it is read anew for every use, never stored.
func (s *steps) kubeconfig(ctx context.Context, r *Run) (Outcome, error) {
	mc, err := s.managementCluster(r)
	if err != nil {
		return Outcome{}, err
	}
	// The Secret is CAPI's (no tenant label): read it only for our Cluster.
	if err := mc.CheckOwner(ctx, mgmt.ClusterGVK, r.Cluster.Namespace, r.Cluster.Name, tenantOf(r)); err != nil {
		return Outcome{}, notOwned(err)
	}
	kc, err := mc.Kubeconfig(ctx, r.Cluster.Namespace, r.Cluster.Name)
	if errors.Is(err, mgmt.ErrNotFound) {
		return s.recheck(r, "no kubeconfig Secret yet")
	}
	if err != nil {
		return Outcome{}, err
	}
	rotating, err := rotates(r)
	if err != nil {
		return Outcome{}, err
	}
	if rotating {
		if _, err := clientcmd.Load(kc); err != nil {
			return Outcome{}, fmt.Errorf("kubeconfig Secret %s/%s-kubeconfig: %w", r.Cluster.Namespace, r.Cluster.Name, err)
		}
		return Outcome{Message: "kubeconfig Secret found: its token rotates, so it is read anew for every use and not stored"}, nil
	}
	sealed, err := s.Keyring.Seal(kc, store.KubeconfigAAD(r.Cluster.TenantID, r.Cluster.ID))
	if err != nil {
		return Outcome{}, err
	}
	if err := s.Store.SaveKubeconfig(ctx, r.Cluster, sealed); err != nil {
		return Outcome{}, err
	}
	return Outcome{Message: "kubeconfig stored"}, nil
}

// prune deletes what the previous manifests had and the new ones do not
// (a removed worker pool's MachineDeployment and templates).
func (s *steps) prune(ctx context.Context, r *Run) (Outcome, error) {
	previous, err := s.Store.PreviousManifests(ctx, r.Operation.ID)
	if err != nil {
		return Outcome{}, err
	}
	old, err := mgmt.DecodeObjects([]byte(previous))
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	current, mc, err := s.savedObjectsAndCluster(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	keep := map[string]bool{}
	for _, o := range current {
		keep[objectID(o)] = true
	}
	var removed []string
	for _, o := range old {
		if keep[objectID(o)] {
			continue
		}
		if deleted, err := s.deleteOwned(ctx, mc, r, o.GroupVersionKind(), o.GetNamespace(), o.GetName()); err != nil || !deleted {
			if err != nil {
				return Outcome{}, err
			}
			continue
		}
		removed = append(removed, o.GetKind()+" "+o.GetName())
	}
	if len(removed) == 0 {
		return Outcome{Message: "nothing to remove"}, nil
	}
	return Outcome{Message: "removed " + strings.Join(removed, ", ")}, nil
}

func objectID(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().GroupKind().String() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// rollout waits until CAPI has rolled the change out: every control plane
// and MachineDeployment seen at its new generation, all replicas up to
// date and available. Progress shows on the step while it waits.
func (s *steps) rollout(ctx context.Context, r *Run) (Outcome, error) {
	objs, mc, err := s.savedObjectsAndCluster(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	ro, err := mc.RolloutStatus(ctx, objs)
	if err != nil {
		return Outcome{}, err
	}
	if ro.Done {
		return Outcome{Message: "rolled out: " + ro.Progress}, nil
	}
	return s.waitForMachines(ctx, r, StepRollout, ro.Progress, "rolling out: "+ro.Progress, ro.Cached)
}

// deprovisionTarget is the management cluster to delete from, or none
// (with the Outcome to report) when the cluster cannot have anything there:
// its management cluster is not configured and no credentials or apply step
// of it ever succeeded. Without this, a cluster that failed for want of a
// management cluster could never be deleted.
func (s *steps) deprovisionTarget(ctx context.Context, r *Run) (*mgmt.Cluster, *Outcome, error) {
	mc, err := s.managementCluster(r)
	if err == nil || !errors.Is(err, mgmt.ErrUnknownCluster) {
		return mc, nil, err
	}
	reached, serr := s.Store.StepsSucceeded(ctx, r.Cluster.ID, StepCredentials, StepApply)
	if serr != nil {
		return nil, nil, serr
	}
	if reached {
		return nil, nil, err
	}
	return nil, &Outcome{Skipped: true, Message: "nothing to remove: nothing was ever created on a management cluster"}, nil
}

// deleteCluster deletes the CAPI Cluster; CAPI cascades to its machines
// and infrastructure.
func (s *steps) deleteCluster(ctx context.Context, r *Run) (Outcome, error) {
	mc, skip, err := s.deprovisionTarget(ctx, r)
	if err != nil || skip != nil {
		return orSkip(skip), err
	}
	deleted, err := s.deleteOwned(ctx, mc, r, mgmt.ClusterGVK, r.Cluster.Namespace, r.Cluster.Name)
	if err != nil {
		return Outcome{}, err
	}
	if !deleted {
		return Outcome{Skipped: true, Message: "the CAPI Cluster of that name is not this tenant's: left alone"}, nil
	}
	return Outcome{Message: "CAPI Cluster deleted"}, nil
}

// waitDeleted waits until the CAPI Cluster is gone, then deletes what CAPI
// does not own (templates, identities) from the saved manifests.
func (s *steps) waitDeleted(ctx context.Context, r *Run) (Outcome, error) {
	mc, skip, err := s.deprovisionTarget(ctx, r)
	if err != nil || skip != nil {
		return orSkip(skip), err
	}
	exists, err := mc.Exists(ctx, mgmt.ClusterGVK, r.Cluster.Namespace, r.Cluster.Name)
	if err != nil {
		return Outcome{}, err
	}
	if exists {
		// Another tenant's Cluster of that name is not ours to wait for.
		err = mc.CheckOwner(ctx, mgmt.ClusterGVK, r.Cluster.Namespace, r.Cluster.Name, tenantOf(r))
		exists = !errors.Is(err, mgmt.ErrNotOwned)
		if err != nil && exists {
			return Outcome{}, err
		}
	}
	if exists {
		return s.recheck(r, "the CAPI Cluster is still being deleted")
	}
	manifests, err := s.Store.Manifests(ctx, r.Cluster.ID)
	if err != nil {
		return Outcome{}, err
	}
	objs, err := mgmt.DecodeObjects([]byte(manifests))
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	removed := 0
	for _, obj := range objs {
		deleted, err := s.deleteOwned(ctx, mc, r, obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName())
		if err != nil {
			return Outcome{}, err
		}
		if deleted {
			removed++
		}
	}
	if removed < len(objs) {
		return Outcome{Message: fmt.Sprintf("cluster and %d objects removed; %d not this tenant's, left alone", removed, len(objs)-removed)}, nil
	}
	return Outcome{Message: fmt.Sprintf("cluster and %d objects removed", len(objs))}, nil
}

// cleanupCredentials removes the credentials Secret unless another live
// cluster on the same management cluster uses it.
func (s *steps) cleanupCredentials(ctx context.Context, r *Run) (Outcome, error) {
	name := r.Spec.Spec.Credentials.SecretName
	users, err := s.Store.ClustersUsingSecret(ctx, r.Cluster, name)
	if err != nil {
		return Outcome{}, err
	}
	if len(users) > 0 {
		return Outcome{Skipped: true, Message: "secret " + name + " kept: used by " + strings.Join(users, ", ")}, nil
	}
	p, err := provider(r)
	if err != nil {
		return Outcome{}, err
	}
	mc, skip, err := s.deprovisionTarget(ctx, r)
	if err != nil || skip != nil {
		return orSkip(skip), err
	}
	ns, secretName := p.CredentialSecretRef(name, r.Cluster.Namespace)
	deleted, err := s.deleteOwned(ctx, mc, r, secretGVK, ns, secretName)
	if err != nil {
		return Outcome{}, err
	}
	if !deleted {
		return Outcome{Skipped: true, Message: "secret " + ns + "/" + secretName + " is not this tenant's: left alone"}, nil
	}
	return Outcome{Message: "secret " + ns + "/" + secretName + " removed"}, nil
}

func orSkip(o *Outcome) Outcome {
	if o == nil {
		return Outcome{}
	}
	return *o
}

func tenantOf(r *Run) string { return r.Cluster.TenantID.String() }

// applyOwned server-side applies obj unless an object of that name exists
// that is not the tenant's: the service never takes over another
// tenant's object, nor one it did not create (mgmt.Cluster.ApplyOwned).
// likelyAbsent (the objects of a first provisioning) applies create-only
// first, which needs no read of an object that is not there.
func (s *steps) applyOwned(ctx context.Context, mc *mgmt.Cluster, r *Run, obj *unstructured.Unstructured, likelyAbsent bool) error {
	if err := mc.ApplyOwned(ctx, obj, tenantOf(r), likelyAbsent); err != nil {
		if errors.Is(err, mgmt.ErrNotOwned) {
			return notOwned(err)
		}
		return refusal(err)
	}
	return nil
}

// deleteOwned deletes the object if it is the tenant's; one that is not
// (another tenant's, or not created by lok8s) is left alone and reported
// as not deleted.
func (s *steps) deleteOwned(ctx context.Context, mc *mgmt.Cluster, r *Run, gvk schema.GroupVersionKind, namespace, name string) (bool, error) {
	if err := mc.CheckOwner(ctx, gvk, namespace, name, tenantOf(r)); errors.Is(err, mgmt.ErrNotOwned) {
		r.Logger.Warn("not deleting an object that is not the tenant's", "kind", gvk.Kind, "namespace", namespace, "name", name)
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := mc.Delete(ctx, gvk, namespace, name); err != nil {
		return false, refusal(err)
	}
	return true, nil
}

// notOwned makes an object that is not the tenant's a permanent failure
// people can act on; other errors are returned as they are.
func notOwned(err error) error {
	if !errors.Is(err, mgmt.ErrNotOwned) {
		return err
	}
	return Permanent(coded(err, CodeObjectNotOwned, false,
		"an object of this name on the management cluster is another tenant's or was not created by lok8s: choose another namespace or cluster name", ""))
}

var secretGVK = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "not reported yet"
	}
	return s
}
