package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// bootstrap installs the spec's addons on the workload cluster with Helm,
// in the catalogue's order (CNI first), each recorded as it goes: pending,
// installing, installed (chart version) or failed (Helm's message).
// Installing converges: an addon already deployed with the same chart and
// values is left as it is.
func (s *steps) bootstrap(ctx context.Context, r *Run) (Outcome, error) {
	requested := r.Spec.Spec.Bootstrap
	// The gitops step installs its provider's controllers as an addon:
	// list it too, so the status shows it from the start.
	var gitopsAddon []string
	if g := r.Spec.Spec.GitOps; g != nil && !slices.ContainsFunc(requested, func(a spec.Addon) bool { return a.Name == g.Provider }) {
		gitopsAddon = []string{g.Provider}
	}
	if len(requested) == 0 {
		if err := s.Store.PlanAddons(ctx, r.Cluster, gitopsAddon); err != nil {
			return Outcome{}, err
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
	plan, err := s.Addons.Plan(names, r.Cluster.Provider)
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	ordered := make([]string, 0, len(plan))
	for _, p := range plan {
		ordered = append(ordered, p.Name)
	}
	if err := s.Store.PlanAddons(ctx, r.Cluster, append(ordered, gitopsAddon...)); err != nil {
		return Outcome{}, err
	}

	w, err := s.workloadContext(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	var installed []string
	for _, addon := range plan {
		res, err := s.installAddon(ctx, r, w, addon, byName[addon.Name], versions[addon.Name])
		if err != nil {
			return Outcome{}, err
		}
		installed = append(installed, addon.Name+" "+res.Version)
	}
	return Outcome{Message: "installed " + strings.Join(installed, ", ")}, nil
}

// workload is what installing on a workload cluster needs.
type workload struct {
	kubeconfig  []byte
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
	return workload{kubeconfig: kubeconfig, credentials: credentials, vars: map[string]string{
		"CLUSTER_NAME": r.Cluster.Name, "API_SERVER_HOST": host, "API_SERVER_PORT": port,
		// CAPH names the cluster's hcloud network after the cluster.
		"HCLOUD_NETWORK": r.Cluster.Name,
	}}, nil
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
	res, err := s.Installer.Install(ctx, w.kubeconfig, addons.Request{Addon: addon, Version: version, Values: values, Secrets: secrets})
	if err != nil {
		return fail(err)
	}
	if err := s.Store.SetAddon(ctx, r.Cluster.ID, store.Addon{Name: addon.Name, State: store.AddonInstalled,
		Chart: res.Chart, Version: res.Version, Message: fmt.Sprintf("%s, revision %d", res.Action, res.Revision)}); err != nil {
		return addons.Result{}, err
	}
	return res, nil
}

// addonOverrides reads the operator's values for an addon, if any.
func (s *steps) addonOverrides(name string) (map[string]any, error) {
	if s.AddonOverrides == nil {
		return nil, nil
	}
	return addons.LoadOverrides(s.AddonOverrides, name)
}

// workloadKubeconfig opens the kubeconfig the kubeconfig step stored.
func (s *steps) workloadKubeconfig(ctx context.Context, r *Run) ([]byte, error) {
	sealed, err := s.Store.SealedKubeconfig(ctx, r.Cluster.TenantID, r.Cluster.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Permanent(errors.New("no workload kubeconfig stored: the kubeconfig step has not run"))
	}
	if err != nil {
		return nil, err
	}
	kc, err := s.Keyring.Open(sealed, store.KubeconfigAAD(r.Cluster.TenantID, r.Cluster.ID))
	if err != nil {
		return nil, Permanent(fmt.Errorf("workload kubeconfig cannot be opened with the configured keys: %w", err))
	}
	return kc, nil
}
