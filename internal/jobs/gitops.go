package jobs

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/gitops"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/store"
)

// gitops connects the workload cluster to spec.gitops: it installs the
// provider's controllers (the catalogue's flux or argo addon), applies the
// repository Secret (from a git credential, for a private repository) and
// the source objects, then re-checks until the controllers report the
// source ready; their reason and message are recorded for the status.
func (s *steps) gitops(ctx context.Context, r *Run) (Outcome, error) {
	g := r.Spec.Spec.GitOps
	if g == nil {
		return Outcome{Skipped: true, Message: "no gitops requested"}, nil
	}
	if s.Addons == nil || s.Installer == nil {
		return Outcome{}, Permanent(errors.New("addons are not configured on this service: gitops needs its controllers installed"))
	}
	plan, err := s.Addons.Plan([]string{g.Provider}, r.Cluster.Provider)
	if err != nil {
		return Outcome{}, Permanent(fmt.Errorf("gitops provider %s: %w", g.Provider, err))
	}
	w, err := s.workloadContext(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	// The controllers are installed once; a re-check after a snooze finds
	// them installed.
	recorded, err := s.Store.Addons(ctx, r.Cluster.ID)
	if err != nil {
		return Outcome{}, err
	}
	if !installed(recorded, g.Provider) {
		if _, err := s.installAddon(ctx, r, w, plan[0], nil, ""); err != nil {
			return Outcome{}, err
		}
	}
	src := gitops.Source{Provider: g.Provider, Repo: g.Repo, Branch: g.Branch, Path: g.Path}
	if g.SecretName != "" {
		if src.Credential, _, err = s.openCredential(ctx, r, g.SecretName); err != nil {
			return Outcome{}, err
		}
	}
	objs, err := gitops.Objects(src)
	if err != nil {
		return Outcome{}, Permanent(err)
	}
	kubeconfig, err := s.workloadKubeconfig(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return Outcome{}, Permanent(fmt.Errorf("workload kubeconfig: %w", err))
	}
	wc, err := mgmt.NewCluster("workload:"+r.Cluster.Name, cfg)
	if err != nil {
		return Outcome{}, err
	}
	if err := wc.EnsureNamespace(ctx, gitops.Namespace(g.Provider), nil); err != nil {
		return Outcome{}, err
	}
	for _, o := range objs {
		if err := wc.Apply(ctx, o); err != nil {
			return Outcome{}, err
		}
	}
	source := &unstructured.Unstructured{}
	source.SetGroupVersionKind(gitops.SourceGVK(g.Provider))
	if err := wc.Client().Get(ctx, client.ObjectKey{Namespace: gitops.Namespace(g.Provider), Name: gitops.Name}, source); err != nil {
		return Outcome{}, err
	}
	ready := gitops.ReadinessOf(g.Provider, source)
	if err := s.Store.SetGitOps(ctx, r.Cluster, store.GitOps{Provider: g.Provider, Repo: g.Repo, Ready: ready.Ready, Reason: ready.Reason, Message: ready.Message}); err != nil {
		return Outcome{}, err
	}
	if ready.Ready {
		return Outcome{Message: fmt.Sprintf("%s source ready: %s", g.Provider, ready.Message)}, nil
	}
	return s.recheck(r, fmt.Sprintf("%s source not ready (%s): %s", g.Provider, ready.Reason, ready.Message))
}

func installed(addons []store.Addon, name string) bool {
	for _, a := range addons {
		if a.Name == name {
			return a.State == store.AddonInstalled
		}
	}
	return false
}
