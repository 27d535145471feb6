package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"lok8s.dev/provisioner/internal/store"
)

// CredentialField is one field a provider's credential takes.
type CredentialField struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
}

// CheckCredentialName refuses a credential name that is not a DNS subdomain.
func CheckCredentialName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return Invalid(FieldError{Field: "name", Message: strings.Join(msgs, "; ")})
	}
	return nil
}

// credentialSecrets validates a credential's fields for its provider
// (in["provider"]) and returns the provider and the secret fields. Field
// errors never repeat a value.
func (s *Service) credentialSecrets(in map[string]string) (string, map[string]string, []FieldError) {
	provider := in["provider"]
	if provider == "" {
		return "", nil, []FieldError{{Field: "provider", Message: "required: one of " + strings.Join(s.cfg.CredentialProviders, ", ")}}
	}
	known, ok := s.cfg.CredentialFields(provider)
	if !ok {
		return "", nil, []FieldError{{Field: "provider", Message: fmt.Sprintf("unknown provider %q: must be one of %s", provider, strings.Join(s.cfg.CredentialProviders, ", "))}}
	}
	var fields []FieldError
	secrets := map[string]string{}
	accepted := map[string]bool{"provider": true}
	for _, f := range known {
		accepted[f.Name] = true
		switch v := in[f.Name]; {
		case strings.TrimSpace(v) != "":
			secrets[f.Name] = v
		case f.Required:
			fields = append(fields, FieldError{Field: f.Name, Message: "required for provider " + provider})
		}
	}
	for k := range in {
		if !accepted[k] {
			fields = append(fields, FieldError{Field: k, Message: "not used by provider " + provider})
		}
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return provider, secrets, fields
}

// PutCredential adds or replaces p's tenant's credential name: in holds
// "provider" and the provider's secret fields. The secrets are stored
// sealed and never returned; created reports a new credential.
func (s *Service) PutCredential(ctx context.Context, p store.Principal, name string, in map[string]string) (view CredentialView, created bool, err error) {
	if err := CheckCredentialName(name); err != nil {
		return CredentialView{}, false, err
	}
	provider, secrets, fields := s.credentialSecrets(in)
	if len(fields) > 0 {
		return CredentialView{}, false, Invalid(fields...)
	}
	plaintext, err := json.Marshal(secrets) // map keys marshal sorted: a canonical form
	if err != nil {
		return CredentialView{}, false, fmt.Errorf("marshal credential: %w", err)
	}
	sealed, err := s.cfg.Keyring.Seal(plaintext, store.CredentialAAD(p.TenantID, name))
	if err != nil {
		return CredentialView{}, false, err
	}
	keys := make([]string, 0, len(secrets))
	for k := range secrets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cred, created, err := s.store.PutCredential(ctx, Actor(ctx, p), store.NewCredential{
		Name: name, Provider: provider, KeysSet: keys, Fingerprint: s.cfg.Keyring.Fingerprint(plaintext), Sealed: sealed,
	})
	if err != nil {
		return CredentialView{}, false, err
	}
	return credentialView(cred), created, nil
}

// Credential is p's tenant's credential name (its metadata).
func (s *Service) Credential(ctx context.Context, p store.Principal, name string) (CredentialView, error) {
	cred, err := s.store.Credential(ctx, p.TenantID, name)
	if errors.Is(err, store.ErrNotFound) {
		return CredentialView{}, NotFound(fmt.Sprintf("no credential named %q", name))
	}
	if err != nil {
		return CredentialView{}, err
	}
	return credentialView(cred), nil
}

// CredentialList is p's tenant's credentials.
type CredentialList struct {
	Items []CredentialView `json:"items"`
}

// Credentials lists p's tenant's credentials.
func (s *Service) Credentials(ctx context.Context, p store.Principal) (CredentialList, error) {
	creds, err := s.store.Credentials(ctx, p.TenantID)
	if err != nil {
		return CredentialList{}, err
	}
	out := CredentialList{Items: make([]CredentialView, 0, len(creds))}
	for _, c := range creds {
		out.Items = append(out.Items, credentialView(c))
	}
	return out, nil
}

// DeleteCredential deletes p's tenant's credential name, unless a live
// cluster uses it.
func (s *Service) DeleteCredential(ctx context.Context, p store.Principal, name string) error {
	err := s.store.DeleteCredential(ctx, Actor(ctx, p), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return NotFound(fmt.Sprintf("no credential named %q", name))
	case errors.Is(err, store.ErrConflict):
		return Conflict(strings.TrimSuffix(err.Error(), ": "+store.ErrConflict.Error()) + "; delete those clusters first")
	}
	return err
}
