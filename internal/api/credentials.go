package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"

	"github.com/go-chi/chi/v5"
	"lok8s.dev/provisioner/internal/service"
)

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

func (s *Server) putCredential(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if err := service.CheckCredentialName(name); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.writeProblem(w, r, &service.Error{Status: http.StatusUnsupportedMediaType, Slug: "unsupported-media-type",
			Title: "Unsupported media type", Detail: "send credentials as application/json"})
		return
	}
	raw, err := decodeStrict[map[string]any](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	in, fields := stringFields(raw)
	if len(fields) > 0 {
		s.writeProblem(w, r, service.Invalid(fields...))
		return
	}
	view, created, err := s.svc.PutCredential(r.Context(), principal(r.Context()), name, in)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, view)
}

func (s *Server) getCredential(w http.ResponseWriter, r *http.Request) {
	view, err := s.svc.Credential(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request) {
	out, err := s.svc.Credentials(r.Context(), principal(r.Context()))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.DeleteCredential(r.Context(), principal(r.Context()), chi.URLParam(r, "name")); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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
			return v, service.Invalid(FieldError{Field: typeErr.Field, Message: "must be a " + typeErr.Type.String()})
		}
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return v, service.Invalid(FieldError{Field: strings.Trim(field, `"`), Message: "unknown field"})
		}
		return v, service.BadRequest("the body is not valid JSON: " + err.Error())
	}
	if dec.More() {
		return v, service.BadRequest("the body must hold one JSON object")
	}
	return v, nil
}
