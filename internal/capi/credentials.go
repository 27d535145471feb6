package capi

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ErrCredentials: the credential fields do not fit the provider. The error
// names fields, never values.
var ErrCredentials = errors.New("credentials")

// CredentialKeys returns how credential fields map to the provider's Secret
// keys.
func (p *Provider) CredentialKeys() []CredentialKey { return slices.Clone(p.Manifest.Credentials.Keys) }

// RequiredCredentialFields returns the credential fields that must be set.
func (p *Provider) RequiredCredentialFields() []string {
	var fields []string
	for _, k := range p.Manifest.Credentials.Keys {
		if k.Required {
			fields = append(fields, k.Field)
		}
	}
	return fields
}

// CredentialSecretRef returns where the provider's credentials Secret lives
// for a cluster in clusterNamespace: the manifest's credentials.namespace,
// else clusterNamespace. In a namespace of the provider's own (shared by
// every tenant) the name is prefixed with the cluster's namespace, so that
// two tenants' Secrets never collide.
func (p *Provider) CredentialSecretRef(name, clusterNamespace string) (namespace, secretName string) {
	if ns := p.Manifest.Credentials.Namespace; ns != "" && ns != clusterNamespace {
		return ns, clusterNamespace + "-" + name
	}
	return clusterNamespace, name
}

// CredentialSecret builds the Secret the provider expects, named and placed
// as CredentialSecretRef says, from credential fields (e.g. hcloudToken).
// A required field missing or empty, or a field the provider does not know,
// is an ErrCredentials error naming the fields; values never appear in
// errors.
func (p *Provider) CredentialSecret(name, clusterNamespace string, fields map[string]string) (*unstructured.Unstructured, error) {
	if name == "" || clusterNamespace == "" {
		return nil, fmt.Errorf("capi: %w: provider %s: a Secret name and the cluster namespace are required", ErrCredentials, p.Name)
	}
	creds := p.Manifest.Credentials
	var missing, unknown []string
	data := map[string]any{}
	for _, k := range creds.Keys {
		v := fields[k.Field]
		if v == "" {
			if k.Required {
				missing = append(missing, k.Field)
			}
			continue
		}
		data[k.Key] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	for _, f := range sortedKeys(fields) {
		if !slices.ContainsFunc(creds.Keys, func(k CredentialKey) bool { return k.Field == f }) {
			unknown = append(unknown, f)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing required fields: "+strings.Join(missing, ", "))
	}
	if len(unknown) > 0 {
		known := make([]string, len(creds.Keys))
		for i, k := range creds.Keys {
			known[i] = k.Field
		}
		problems = append(problems, fmt.Sprintf("unknown fields: %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", ")))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("capi: %w: provider %s: %s", ErrCredentials, p.Name, strings.Join(problems, "; "))
	}
	ns, secretName := p.CredentialSecretRef(name, clusterNamespace)
	typ := creds.Type
	if typ == "" {
		typ = "Opaque"
	}
	s := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata":   map[string]any{"name": secretName, "namespace": ns},
		"type":       typ,
		"data":       data,
	}}
	if len(creds.Labels) > 0 {
		s.SetLabels(maps.Clone(creds.Labels))
	}
	return s, nil
}
