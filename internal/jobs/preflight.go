package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/mgmt"
)

// clusterctlCore is the core provider's name in clusterctl's inventory.
const clusterctlCore = "cluster-api"

// inventoryMaxAge is how old a management cluster's inventory preflight
// may use: one read for many clusters provisioned at once, and a provider
// installed after a failed preflight is seen by a retry seconds later.
const inventoryMaxAge = 5 * time.Second

// preflight checks, before anything is applied, that the cluster's
// credential exists and opens, and that the management cluster can take
// the rendered objects: it serves every kind they use
// (CAPI core, the kubeadm providers and the infrastructure provider are
// installed) and, where clusterctl keeps an inventory, that the provider's
// release is the series the templates are written for. A provider that is
// missing is a failure with a code and a remediation at once, never a
// wait that ends in a timeout.
func (s *steps) preflight(ctx context.Context, r *Run) (Outcome, error) {
	p, err := provider(r)
	if err != nil {
		return Outcome{}, err
	}
	if _, _, err := s.openCredential(ctx, r, r.Spec.Spec.Credentials.SecretName); err != nil {
		return Outcome{}, err
	}
	objs, mc, err := s.savedObjectsAndCluster(ctx, r)
	if err != nil {
		return Outcome{}, err
	}
	var kinds []schema.GroupVersionKind
	seen := map[schema.GroupVersionKind]bool{}
	for _, o := range objs {
		if gvk := o.GroupVersionKind(); !seen[gvk] {
			seen[gvk] = true
			kinds = append(kinds, gvk)
		}
	}
	missing, err := mc.MissingKinds(kinds)
	if err != nil {
		return Outcome{}, err
	}
	where := managementName(r.Cluster.ManagementDomain)
	if len(missing) > 0 {
		names := make([]string, len(missing))
		for i, gvk := range missing {
			names[i] = gvk.Kind + " (" + gvk.GroupVersion().String() + ")"
		}
		return Outcome{}, Permanent(coded(
			fmt.Errorf("the %s management cluster does not serve %s: Cluster API or provider %s is not installed there", where, strings.Join(names, ", "), p.Name),
			CodeProviderNotInstalled, true,
			fmt.Sprintf("install Cluster API and provider %s on the %s management cluster (clusterctl init), then retry", p.Name, where),
			"missing kinds: "+strings.Join(names, ", ")))
	}
	req, _ := p.RequirementsFor(r.Spec)
	inv, err := mc.RecentInventory(ctx, inventoryMaxAge)
	if err != nil {
		return Outcome{}, err
	}
	out, err := checkInventory(inv, req, where, len(kinds))
	if err != nil {
		// What fails is checked against the inventory as it is now: a
		// retry right after installing the provider must see it.
		if inv, err = mc.RecentInventory(ctx, 0); err != nil {
			return Outcome{}, err
		}
		out, err = checkInventory(inv, req, where, len(kinds))
	}
	return out, err
}

// checkInventory checks clusterctl's inventory against the provider's
// requirements.
func checkInventory(inv mgmt.Inventory, req capi.Requirements, where string, kinds int) (Outcome, error) {
	if !inv.Clusterctl {
		return Outcome{Message: fmt.Sprintf("the %s management cluster serves all %d kinds; no clusterctl inventory, so provider versions are unknown", where, kinds)}, nil
	}
	found := []string{}
	if core, ok := inv.Provider(clusterctlCore); ok {
		found = append(found, core.Name+" "+core.Version)
	}
	if c := req.Clusterctl; c != nil {
		installed, ok := inv.Provider(c.Name)
		if !ok {
			return Outcome{}, Permanent(coded(
				fmt.Errorf("clusterctl's inventory on the %s management cluster has no %s", where, c.Name),
				CodeProviderNotInstalled, true,
				fmt.Sprintf("install %s %s.x on the %s management cluster (clusterctl init), then retry", c.Name, c.Release, where), ""))
		}
		if capi.MinorOf(installed.Version) != c.Release {
			return Outcome{}, Permanent(coded(
				fmt.Errorf("the %s management cluster runs %s %s; these templates are written for %s.x", where, c.Name, installed.Version, c.Release),
				CodeProviderUnsupported, true,
				fmt.Sprintf("upgrade %s on the %s management cluster to %s.x (clusterctl upgrade), then retry", c.Name, where, c.Release), installed.Version))
		}
		found = append(found, installed.Name+" "+installed.Version)
	}
	return Outcome{Message: "installed: " + strings.Join(found, ", ")}, nil
}

func managementName(domain string) string {
	if domain == "" {
		return "SaaS"
	}
	return domain
}
