package service

import (
	"context"
	"maps"
	"slices"

	"lok8s.dev/provisioner/internal/spec"
)

// CatalogView is what the service can provision: its providers, the
// credential providers (infrastructure providers and git) with their
// fields, and the addons spec.bootstrap may name.
type CatalogView struct {
	Providers   []ProviderView           `json:"providers"`
	Credentials []CredentialProviderView `json:"credentials"`
	Addons      []string                 `json:"addons"`
	// AddonRoles maps the addons that have a role to it (cilium: cni,
	// ccm: ccm): what a provider's requiredAddons name.
	AddonRoles map[string]string `json:"addonRoles"`
	// ManagementClusters say which providers each management cluster has
	// installed, as it answered within a few seconds (cached briefly).
	ManagementClusters []ManagementClusterView `json:"managementClusters"`
}

// ManagementClusterView is one management cluster as the catalog sees it.
type ManagementClusterView struct {
	// Domain names a named management cluster; empty for the SaaS default.
	Domain    string `json:"domain,omitempty"`
	Reachable bool   `json:"reachable"`
	// Error says why it could not be asked.
	Error string `json:"error,omitempty"`
	// Providers are the catalog's providers and whether it serves their kinds.
	Providers []ProviderAvailability `json:"providers"`
	// Installed is clusterctl's inventory there (empty without one).
	Installed []InstalledProviderView `json:"installed"`
}

// ProviderAvailability says whether a management cluster has a provider.
type ProviderAvailability struct {
	Name      string `json:"name"`
	Installed bool   `json:"installed"`
	// Version is the provider's release from clusterctl's inventory, when known.
	Version string `json:"version,omitempty"`
	// Missing lists the kinds it does not serve.
	Missing []string `json:"missing,omitempty"`
}

// InstalledProviderView is one entry of clusterctl's inventory.
type InstalledProviderView struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

// ProviderView is an installed infrastructure provider.
type ProviderView struct {
	Name string `json:"name"`
	// Sections are the spec sections that select it, the main one (with
	// the region, control plane and workers) first.
	Sections []string `json:"sections"`
	// Flavors are the variants its manifest defines.
	Flavors []string `json:"flavors"`
	// Kubernetes is the range of Kubernetes minors its release supports
	// (unset bounds: not limited).
	Kubernetes VersionRangeView `json:"kubernetes"`
	// RequiredAddons are the addon roles spec.bootstrap must include (cni, ccm).
	RequiredAddons []string `json:"requiredAddons"`
}

// VersionRangeView is an inclusive range of Kubernetes minors.
type VersionRangeView struct {
	Min string `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
}

// CredentialProviderView is what a credential of a provider holds.
type CredentialProviderView struct {
	Provider string            `json:"provider"`
	Fields   []CredentialField `json:"fields"`
}

// Catalog is what the service can provision.
func (s *Service) Catalog(ctx context.Context) CatalogView {
	out := CatalogView{Providers: make([]ProviderView, 0, len(s.cfg.Providers)), Credentials: []CredentialProviderView{},
		Addons: slices.Clone(s.cfg.SpecOptions.KnownAddons), AddonRoles: map[string]string{}, ManagementClusters: []ManagementClusterView{}}
	maps.Copy(out.AddonRoles, s.cfg.AddonRoles)
	if s.cfg.ManagementClusters != nil {
		out.ManagementClusters = append(out.ManagementClusters, s.cfg.ManagementClusters(ctx)...)
	}
	if out.Addons == nil {
		out.Addons = slices.Clone(spec.DefaultAddons)
	}
	for _, p := range s.cfg.Providers {
		out.Providers = append(out.Providers, ProviderView{Name: p.Name, Sections: nonNil(p.Sections), Flavors: nonNil(p.Flavors),
			Kubernetes: p.Kubernetes, RequiredAddons: nonNil(p.RequiredAddons)})
	}
	for _, name := range s.cfg.CredentialProviders {
		fields, _ := s.cfg.CredentialFields(name)
		out.Credentials = append(out.Credentials, CredentialProviderView{Provider: name, Fields: append([]CredentialField{}, fields...)})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
