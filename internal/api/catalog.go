package api

import (
	"net/http"
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
}

// ProviderView is an installed infrastructure provider.
type ProviderView struct {
	Name string `json:"name"`
	// Sections are the spec sections that select it, the main one (with
	// the region, control plane and workers) first.
	Sections []string `json:"sections"`
	// Flavors are the variants its manifest defines.
	Flavors []string `json:"flavors"`
}

// CredentialProviderView is what a credential of a provider holds.
type CredentialProviderView struct {
	Provider string            `json:"provider"`
	Fields   []CredentialField `json:"fields"`
}

func (s *Server) catalog(w http.ResponseWriter, _ *http.Request) {
	out := CatalogView{Providers: make([]ProviderView, 0, len(s.Providers)), Credentials: []CredentialProviderView{},
		Addons: slices.Clone(s.SpecOptions.KnownAddons)}
	if out.Addons == nil {
		out.Addons = slices.Clone(spec.DefaultAddons)
	}
	for _, p := range s.Providers {
		out.Providers = append(out.Providers, ProviderView{Name: p.Name, Sections: nonNil(p.Sections), Flavors: nonNil(p.Flavors)})
	}
	for _, name := range s.CredentialProviders {
		fields, _ := s.CredentialFields(name)
		out.Credentials = append(out.Credentials, CredentialProviderView{Provider: name, Fields: append([]CredentialField{}, fields...)})
	}
	writeJSON(w, http.StatusOK, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
