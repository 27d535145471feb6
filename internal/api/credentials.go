package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"

	"github.com/go-chi/chi/v5"
	"k8s.io/apimachinery/pkg/util/validation"

	"lok8s.dev/provisioner/internal/store"
)

// CredentialField is one field a provider's credential takes.
type CredentialField struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
}

// stringFields checks that every field of a JSON object is a string.
func stringFields(raw map[string]any) (map[string]string, []FieldError) {
	out := make(map[string]string, len(raw))
	var fields []FieldError
	for k, v := range raw {
		str, ok := v.(string)
		if !ok {
			fields = append(fields, FieldError{Field: k, Message: "must be a string"})
			continue
		}
		out[k] = str
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return out, fields
}

// credentialSecrets validates a credential body for its provider and
// returns the provider and the secret fields. Field errors never repeat a
// value.
func (s *Server) credentialSecrets(in map[string]string) (string, map[string]string, []FieldError) {
	provider := in["provider"]
	if provider == "" {
		return "", nil, []FieldError{{Field: "provider", Message: "required: one of " + strings.Join(s.CredentialProviders, ", ")}}
	}
	known, ok := s.CredentialFields(provider)
	if !ok {
		return "", nil, []FieldError{{Field: "provider", Message: fmt.Sprintf("unknown provider %q: must be one of %s", provider, strings.Join(s.CredentialProviders, ", "))}}
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

func (s *Server) putCredential(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		s.writeProblem(w, r, errInvalid(FieldError{Field: "name", Message: strings.Join(msgs, "; ")}))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.writeProblem(w, r, &apiError{status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type",
			title: "Unsupported media type", detail: "send credentials as application/json"})
		return
	}
	raw, err := decodeStrict[map[string]any](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	in, fields := stringFields(raw)
	if len(fields) > 0 {
		s.writeProblem(w, r, errInvalid(fields...))
		return
	}
	provider, secrets, fields := s.credentialSecrets(in)
	if len(fields) > 0 {
		s.writeProblem(w, r, errInvalid(fields...))
		return
	}
	plaintext, err := json.Marshal(secrets) // map keys marshal sorted: a canonical form
	if err != nil {
		s.writeProblem(w, r, fmt.Errorf("marshal credential: %w", err))
		return
	}
	p := principal(r.Context())
	sealed, err := s.Keyring.Seal(plaintext, store.CredentialAAD(p.TenantID, name))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	keys := make([]string, 0, len(secrets))
	for k := range secrets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cred, created, err := s.store.PutCredential(r.Context(), s.actor(r), store.NewCredential{
		Name: name, Provider: provider, KeysSet: keys, Fingerprint: s.Keyring.Fingerprint(plaintext), Sealed: sealed,
	})
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, credentialView(cred))
}

func (s *Server) getCredential(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	cred, err := s.store.Credential(r.Context(), principal(r.Context()).TenantID, name)
	if errors.Is(err, store.ErrNotFound) {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("no credential named %q", name)))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, credentialView(cred))
}

// CredentialList is the caller's credentials.
type CredentialList struct {
	Items []CredentialView `json:"items"`
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request) {
	creds, err := s.store.Credentials(r.Context(), principal(r.Context()).TenantID)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out := CredentialList{Items: make([]CredentialView, 0, len(creds))}
	for _, c := range creds {
		out.Items = append(out.Items, credentialView(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	err := s.store.DeleteCredential(r.Context(), s.actor(r), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("no credential named %q", name)))
	case errors.Is(err, store.ErrConflict):
		s.writeProblem(w, r, errConflict(strings.TrimSuffix(err.Error(), ": "+store.ErrConflict.Error())+"; delete those clusters first"))
	case err != nil:
		s.writeProblem(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// decodeStrict decodes one JSON object, rejecting unknown fields and trailing data.
func decodeStrict[T any](body io.Reader) (T, error) {
	var v T
	raw, err := readBody(body)
	if err != nil {
		return v, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return v, errInvalid(FieldError{Field: typeErr.Field, Message: "must be a " + typeErr.Type.String()})
		}
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return v, errInvalid(FieldError{Field: strings.Trim(field, `"`), Message: "unknown field"})
		}
		return v, errBadRequest("the body is not valid JSON: " + err.Error())
	}
	if dec.More() {
		return v, errBadRequest("the body must hold one JSON object")
	}
	return v, nil
}
