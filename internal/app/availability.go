package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/service"
)

// availabilityTTL is how long what a management cluster said of its
// providers is reused; availabilityTimeout bounds asking it.
const (
	availabilityTTL     = 30 * time.Second
	availabilityTimeout = 3 * time.Second
)

// availability answers which providers each management cluster has: for
// GET /v1/catalog, and for a POST naming a management cluster (a provider
// it does not serve is a 422 there; the preflight step checks again, and
// for the SaaS default, before anything is applied).
type availability struct {
	catalog  *capi.Catalog
	registry *mgmt.Registry

	mu    sync.Mutex
	cache map[string]cachedView
}

type cachedView struct {
	view service.ManagementClusterView
	at   time.Time
}

// providerKinds are the infrastructure kinds a provider's manifest names
// (its default flavor): what a management cluster must serve to have it.
// The preflight step checks every kind of the flavor a spec renders.
func providerKinds(p *capi.Provider) []schema.GroupVersionKind {
	var kinds []schema.GroupVersionKind
	add := func(inf *capi.Infrastructure) {
		if inf == nil {
			return
		}
		gv, err := schema.ParseGroupVersion(inf.APIVersion)
		if err != nil {
			return
		}
		kinds = append(kinds, gv.WithKind(inf.ClusterKind), gv.WithKind(inf.MachineTemplateKind))
	}
	add(p.Manifest.Infrastructure)
	return kinds
}

// view asks management cluster domain ("" the SaaS default) which of the
// catalog's providers it serves, reusing a recent answer.
func (a *availability) view(ctx context.Context, domain string) service.ManagementClusterView {
	a.mu.Lock()
	if c, ok := a.cache[domain]; ok && time.Since(c.at) < availabilityTTL {
		a.mu.Unlock()
		return c.view
	}
	a.mu.Unlock()

	v := a.ask(ctx, domain)
	// Answers are kept, failures too: a management cluster that does not
	// answer costs one timeout per TTL, not one per request.
	a.mu.Lock()
	if a.cache == nil {
		a.cache = map[string]cachedView{}
	}
	a.cache[domain] = cachedView{view: v, at: time.Now()}
	a.mu.Unlock()
	return v
}

// ask asks management cluster domain which providers it serves.
func (a *availability) ask(ctx context.Context, domain string) service.ManagementClusterView {
	v := service.ManagementClusterView{Domain: domain, Providers: []service.ProviderAvailability{}, Installed: []service.InstalledProviderView{}}
	mc, err := a.registry.Cluster(domain)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, availabilityTimeout)
	defer cancel()
	inv, err := mc.Inventory(ctx)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Reachable = true
	for _, p := range inv.Providers {
		v.Installed = append(v.Installed, service.InstalledProviderView{Name: p.Name, Type: p.Type, Version: p.Version})
	}
	for _, p := range a.catalog.Providers() {
		missing, err := mc.MissingKinds(providerKinds(p))
		if err != nil {
			v.Reachable, v.Error = false, err.Error()
			return v
		}
		pa := service.ProviderAvailability{Name: p.Name, Installed: len(missing) == 0}
		for _, gvk := range missing {
			pa.Missing = append(pa.Missing, gvk.Kind+" ("+gvk.GroupVersion().String()+")")
		}
		if req := p.Manifest.Requirements; req != nil && req.Clusterctl != nil {
			if ip, ok := inv.Provider(req.Clusterctl.Name); ok {
				pa.Version = ip.Version
			}
		}
		v.Providers = append(v.Providers, pa)
	}
	return v
}

// managementClusters lists every configured management cluster's view.
func (a *availability) managementClusters(ctx context.Context) []service.ManagementClusterView {
	domains, _ := a.registry.Domains()
	if a.registry.DefaultConfigured() {
		domains = append([]string{""}, domains...)
	}
	out := make([]service.ManagementClusterView, 0, len(domains))
	for _, d := range domains {
		out = append(out, a.view(ctx, d))
	}
	return out
}

// providerMissing says why the named management cluster cannot take
// provider, or "" when it can or did not answer (preflight decides then).
func (a *availability) providerMissing(ctx context.Context, domain, provider string) string {
	v := a.view(ctx, domain)
	if !v.Reachable {
		return ""
	}
	for _, pa := range v.Providers {
		if pa.Name == provider && !pa.Installed {
			return fmt.Sprintf("management cluster %q does not have provider %s installed (it does not serve %s): install it there (clusterctl init) or choose another management cluster",
				domain, provider, strings.Join(pa.Missing, ", "))
		}
	}
	return ""
}
