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

// CredentialInput is the body of PUT /v1/credentials/{name}. Which secret
// fields apply depends on the provider.
type CredentialInput struct {
	Provider        string `json:"provider"`
	HCloudToken     string `json:"hcloudToken,omitempty"`
	RobotUser       string `json:"robotUser,omitempty"`
	RobotPassword   string `json:"robotPassword,omitempty"`
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
}

// secrets validates the input for its provider and returns its secret keys
// and values; field errors never repeat a value.
func (in CredentialInput) secrets() (map[string]string, []FieldError) {
	var fields []FieldError
	set := map[string]string{
		"hcloudToken": in.HCloudToken, "robotUser": in.RobotUser, "robotPassword": in.RobotPassword,
		"accessKeyId": in.AccessKeyID, "secretAccessKey": in.SecretAccessKey,
	}
	var required, optional []string
	switch in.Provider {
	case "hetzner":
		required, optional = []string{"hcloudToken"}, []string{"robotUser", "robotPassword"}
		if (in.RobotUser == "") != (in.RobotPassword == "") {
			fields = append(fields, FieldError{Field: "robotPassword", Message: "robotUser and robotPassword go together: set both or neither"})
		}
	case "aws":
		required = []string{"accessKeyId", "secretAccessKey"}
	case "":
		return nil, []FieldError{{Field: "provider", Message: "required: hetzner or aws"}}
	default:
		return nil, []FieldError{{Field: "provider", Message: fmt.Sprintf("unknown provider %q: must be hetzner or aws", in.Provider)}}
	}
	out := map[string]string{}
	for _, k := range required {
		if strings.TrimSpace(set[k]) == "" {
			fields = append(fields, FieldError{Field: k, Message: "required for provider " + in.Provider})
		}
		out[k] = set[k]
	}
	for _, k := range optional {
		if set[k] != "" {
			out[k] = set[k]
		}
	}
	for k, v := range set {
		if _, used := out[k]; !used && v != "" {
			fields = append(fields, FieldError{Field: k, Message: "not used by provider " + in.Provider})
		}
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return out, fields
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
	in, err := decodeStrict[CredentialInput](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	secrets, fields := in.secrets()
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
	sealed, err := s.Keyring.Seal(plaintext, CredentialAAD(p.TenantID.String(), name))
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
		Name: name, Provider: in.Provider, KeysSet: keys, Fingerprint: s.Keyring.Fingerprint(plaintext), Sealed: sealed,
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

// CredentialAAD binds a sealed credential to its tenant and name, so a
// ciphertext copied to another row does not open.
func CredentialAAD(tenantID, name string) []byte {
	return []byte("lok8s/credentials/" + tenantID + "/" + name)
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
