package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/kubeconfigs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// installCNIAndCCM installs the addons of spec.bootstrap that have a role
// (the CNI and the cloud-controller-manager) as soon as the control plane
// is initialized: the nodes become Ready only with them. It also lists
// every addon in the status, pending, so the whole plan shows from the
// start.
func (s *steps) installCNIAndCCM(ctx context.Context, r *Run) (Outcome, error) {
	return s.installAddons(ctx, r, true, func(a addons.Resolved) bool { return a.Role != "" })
}

// installOtherAddons installs the rest of spec.bootstrap once the nodes
// are Ready.
func (s *steps) installOtherAddons(ctx context.Context, r *Run) (Outcome, error) {
	return s.installAddons(ctx, r, false, func(a addons.Resolved) bool { return a.Role == "" })
}

// installAllAddons installs every addon of spec.bootstrap (an update:
// added addons are installed, changed values applied).
func (s *steps) installAllAddons(ctx context.Context, r *Run) (Outcome, error) {
	return s.installAddons(ctx, r, true, func(addons.Resolved) bool { return true })
}

// installAddons installs the spec's addons that pick selects on the
// workload cluster with Helm, in the catalogue's order (CNI first), each
// recorded as it goes: pending, installing, installed (chart version) or
// failed (Helm's message). With plan, the addon list in the status is set
// to everything spec.bootstrap (and the gitops step) will install.
// Installing converges: an addon already deployed with the same chart and
// values is left as it is.
func (s *steps) installAddons(ctx context.Context, r *Run, plan bool, pick func(addons.Resolved) bool) (Outcome, error) {
	requested := r.Spec.Spec.Bootstrap
	// The gitops step installs its provider's controllers as an addon:
	// list it too, so the status shows it from the start.
	var gitopsAddon []string
	if g := r.Spec.Spec.GitOps; g != nil && !slices.ContainsFunc(requested, func(a spec.Addon) bool { return a.Name == g.Provider }) {
		gitopsAddon = []string{g.Provider}
	}
	if len(requested) == 0 {
		if plan {
			if err := s.Store.PlanAddons(ctx, r.Cluster, gitopsAddon); err != nil {
				return Outcome{}, err
			}
		}
		return Outcome{Skipped: true, Message: "no addons requested"}, nil
	}
	if s.Addons == nil || s.Installer == nil {
		return Outcome{}, Permanent(errors.New("addons are not configured on this service"))
	}
	names := make([]string, 0, len(requested))
	byName := map[string]map[string]any{}
	versions := map[string]string{}
	for _, a := range requested {
		names = append(names, a.Name)
		byName[a.Name], versions[a.Name] = a.Values, a.Version
	}
	// The chart versions follow the cluster's Kubernetes minor where the
	// catalogue says so (the hcloud CCM's version policy).
	all, err := s.Addons.PlanFor(names, addons.Target{Provider: r.Cluster.Provider, KubernetesVersion: r.Spec.Spec.Kubernetes.Version})
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	if plan {
		ordered := make([]string, 0, len(all))
		for _, p := range all {
			ordered = append(ordered, p.Name)
		}
		if err := s.Store.PlanAddons(ctx, r.Cluster, append(ordered, gitopsAddon...)); err != nil {
			return Outcome{}, err
		}
	}
	var picked []addons.Resolved
	for _, a := range all {
		if pick(a) {
			picked = append(picked, a)
		}
	}
	if len(picked) == 0 {
		return Outcome{Skipped: true, Message: "no addons of this stage requested"}, nil
	}

	w, err := s.workloadContext(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	var installed []string
	for _, addon := range picked {
		res, err := s.installAddon(ctx, r, w, addon, byName[addon.Name], versions[addon.Name])
		if err != nil {
			return Outcome{}, err
		}
		installed = append(installed, addon.Name+" "+res.Version)
	}
	return Outcome{Message: "installed " + strings.Join(installed, ", ")}, nil
}

// workload is what installing on a workload cluster needs, besides its
// kubeconfig: that is read for each use (workloadKubeconfig), since a
// rotating one may be stale by the next addon.
type workload struct {
	credentials map[string]string
	vars        map[string]string
}

func (s *steps) workloadContext(ctx context.Context, r *Run) (workload, error) {
	kubeconfig, err := s.workloadKubeconfig(ctx, r)
	if err != nil {
		return workload{}, err
	}
	credentials, _, err := s.openCredential(ctx, r, r.Spec.Spec.Credentials.SecretName)
	if err != nil {
		return workload{}, err
	}
	host, port, err := addons.APIServer(kubeconfig)
	if err != nil {
		return workload{}, Permanent(err)
	}
	// The cluster's template variables (POD_CIDR, HCLOUD_NETWORK_ENABLED,
	// K8S_VERSION_MINOR, …: capi.Catalog.Variables), so that the addons'
	// values agree with what was rendered; then what only the workload
	// cluster knows.
	p, err := provider(r)
	if err != nil {
		return workload{}, err
	}
	vars, err := s.Catalog.VariablesOf(capi.RenderInput{Spec: r.Spec, Namespace: r.Cluster.Namespace, Provider: p})
	if err != nil {
		return workload{}, Permanent(err)
	}
	vars["CLUSTER_NAME"], vars["API_SERVER_HOST"], vars["API_SERVER_PORT"] = r.Cluster.Name, host, port
	// CAPH names the cluster's hcloud network after the cluster.
	vars["HCLOUD_NETWORK"] = r.Cluster.Name
	return workload{credentials: credentials, vars: vars}, nil
}

// installAddon installs one addon and records its state: installing, then
// installed with the chart version, or failed with Helm's message.
func (s *steps) installAddon(ctx context.Context, r *Run, w workload, addon addons.Resolved, specValues map[string]any, version string) (addons.Result, error) {
	fail := func(err error) (addons.Result, error) {
		if serr := s.Store.SetAddon(context.WithoutCancel(ctx), r.Cluster.ID, store.Addon{Name: addon.Name, State: store.AddonFailed,
			Chart: addon.Chart.Name, Message: err.Error()}); serr != nil {
			return addons.Result{}, errors.Join(err, serr)
		}
		err = fmt.Errorf("addon %s: %w", addon.Name, err)
		if errors.Is(err, addons.ErrReleaseBusy) {
			return addons.Result{}, err // another install is finishing: retry
		}
		if workloadUnreachable(err) {
			// Right after the control plane initializes, its load balancer
			// or API server may not answer yet (CAPH's quickstart: "give it
			// another minute and retry"): River retries with backoff.
			return addons.Result{}, err
		}
		return addons.Result{}, Permanent(coded(err, CodeAddonFailed, false,
			fmt.Sprintf("fix addon %s's values or version in spec.bootstrap (PATCH the cluster), which installs it again", addon.Name), ""))
	}
	if err := s.Store.SetAddon(ctx, r.Cluster.ID, store.Addon{Name: addon.Name, State: store.AddonInstalling, Chart: addon.Chart.Name}); err != nil {
		return addons.Result{}, err
	}
	overrides, err := s.addonOverrides(addon.Name)
	if err != nil {
		return fail(err)
	}
	values, err := addons.Values(addon.Layers(overrides, specValues), w.vars)
	if err != nil {
		return fail(err)
	}
	secrets, err := addon.Secrets(w.credentials, w.vars)
	if err != nil {
		return fail(err)
	}
	kubeconfig, err := s.workloadKubeconfig(ctx, r)
	if err != nil {
		return addons.Result{}, err
	}
	res, err := s.Installer.Install(ctx, kubeconfig, addons.Request{Addon: addon, Version: version, Values: values, Secrets: secrets})
	if err != nil {
		return fail(err)
	}
	if err := s.Store.SetAddon(ctx, r.Cluster.ID, store.Addon{Name: addon.Name, State: store.AddonInstalled,
		Chart: res.Chart, Version: res.Version, Message: fmt.Sprintf("%s, revision %d", res.Action, res.Revision)}); err != nil {
		return addons.Result{}, err
	}
	return res, nil
}

// workloadUnreachable reports whether err says the workload API server did
// not answer (as opposed to refusing a chart).
func workloadUnreachable(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "Kubernetes cluster unreachable", "no such host", "i/o timeout", ": EOF", "connection reset by peer", "TLS handshake timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// addonOverrides reads the operator's values for an addon, if any.
func (s *steps) addonOverrides(name string) (map[string]any, error) {
	if s.AddonOverrides == nil {
		return nil, nil
	}
	return addons.LoadOverrides(s.AddonOverrides, name)
}

// workloadKubeconfig returns the workload kubeconfig for one use, made at
// once: a rotating one (EKS) is read anew from the management cluster each
// time, so callers never keep it past that use.
func (s *steps) workloadKubeconfig(ctx context.Context, r *Run) ([]byte, error) {
	rotating, err := rotates(r)
	if err != nil {
		return nil, err
	}
	kc, err := s.Kubeconfigs.KubeconfigOf(ctx, r.Cluster, rotating)
	switch {
	case errors.Is(err, kubeconfigs.ErrNotAvailable):
		return nil, Permanent(fmt.Errorf("no workload kubeconfig: the kubeconfig step has not run: %w", err))
	case errors.Is(err, mgmt.ErrUnknownCluster):
		return nil, Permanent(err)
	case errors.Is(err, mgmt.ErrNotOwned):
		return nil, notOwned(err)
	case err != nil:
		return nil, err
	}
	return kc, nil
}

// rotates reports whether the run's workload kubeconfig rotates, from its
// stored provider (and the spec's flavor).
func rotates(r *Run) (bool, error) {
	p, err := provider(r)
	if err != nil {
		return false, err
	}
	return p.KubeconfigPolicy(r.Spec).Rotates, nil
}
