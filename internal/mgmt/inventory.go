package mgmt

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// clusterctlProviderList lists clusterctl's inventory (ClusterctlProviderGVK).
var clusterctlProviderList = ClusterctlProviderGVK.GroupVersion().WithKind("ProviderList")

// InstalledProvider is one entry of clusterctl's inventory.
type InstalledProvider struct {
	// Name is the inventory object's name: <type>-<providerName>, e.g.
	// cluster-api, infrastructure-hetzner.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Type      string `json:"type"`
	Version   string `json:"version"`
}

// Inventory is what clusterctl recorded as installed on a management
// cluster. Clusterctl is false when the cluster has no such inventory (the
// providers were installed without clusterctl, e.g. by an operator or
// plain manifests): then only the served kinds tell what is there.
type Inventory struct {
	Clusterctl bool                `json:"clusterctl"`
	Providers  []InstalledProvider `json:"providers,omitempty"`
}

// Provider returns the inventory entry named name, if there is one.
func (inv Inventory) Provider(name string) (InstalledProvider, bool) {
	i := slices.IndexFunc(inv.Providers, func(p InstalledProvider) bool { return p.Name == name })
	if i < 0 {
		return InstalledProvider{}, false
	}
	return inv.Providers[i], true
}

// Inventory reads clusterctl's inventory of installed providers.
func (c *Cluster) Inventory(ctx context.Context) (Inventory, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(clusterctlProviderList)
	err := c.client.List(ctx, list)
	if meta.IsNoMatchError(err) {
		return Inventory{}, nil
	}
	if err != nil {
		return Inventory{}, fmt.Errorf("read clusterctl's provider inventory: %w", err)
	}
	inv := Inventory{Clusterctl: true}
	for _, p := range list.Items {
		typ, _, _ := unstructured.NestedString(p.Object, "type")
		version, _, _ := unstructured.NestedString(p.Object, "version")
		inv.Providers = append(inv.Providers, InstalledProvider{Name: p.GetName(), Namespace: p.GetNamespace(), Type: typ, Version: version})
	}
	slices.SortFunc(inv.Providers, func(a, b InstalledProvider) int { return strings.Compare(a.Name, b.Name) })
	return inv, nil
}

// RecentInventory is Inventory read at most maxAge ago: preflight, run
// for every cluster, reads it once per maxAge instead of once per
// cluster (without clusterctl's CRDs that read was a discovery request
// each time).
func (c *Cluster) RecentInventory(ctx context.Context, maxAge time.Duration) (Inventory, error) {
	c.invMu.Lock()
	defer c.invMu.Unlock()
	if !c.invAt.IsZero() && time.Since(c.invAt) < maxAge {
		return c.inv, nil
	}
	inv, err := c.Inventory(ctx)
	if err != nil {
		return Inventory{}, err
	}
	c.inv, c.invAt = inv, time.Now()
	return inv, nil
}

// MissingKinds returns the kinds among gvks the management cluster does
// not serve: their CRDs are not installed (the provider is missing, or of
// a release without that API version).
func (c *Cluster) MissingKinds(gvks []schema.GroupVersionKind) ([]schema.GroupVersionKind, error) {
	var missing []schema.GroupVersionKind
	for _, gvk := range gvks {
		_, err := c.client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		switch {
		case meta.IsNoMatchError(err):
			missing = append(missing, gvk)
		case err != nil:
			return nil, fmt.Errorf("discover %s: %w", gvk, err)
		}
	}
	return missing, nil
}
