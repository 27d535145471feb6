package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// specMediaTypes are the body types POST /v1/clusters accepts.
var specMediaTypes = map[string]bool{
	"application/json": true, "application/yaml": true, "application/x-yaml": true, "text/yaml": true,
}

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// readSpecBody checks the content type and reads the (size-limited) body;
// a body sent as JSON must be valid JSON, not merely valid YAML.
func readSpecBody(r *http.Request) ([]byte, error) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !specMediaTypes[mediaType] {
		return nil, &service.Error{Status: http.StatusUnsupportedMediaType, Slug: "unsupported-media-type",
			Title: "Unsupported media type", Detail: "send the cluster spec as application/yaml or application/json"}
	}
	body, err := readBody(r.Body)
	if err != nil {
		return nil, err
	}
	if mediaType == "application/json" {
		if err := spec.CheckJSON(body); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// readBody reads a request body; past the size limit the error is the
// *http.MaxBytesError that problemFor turns into a 413.
func readBody(body io.Reader) ([]byte, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, service.BadRequest("could not read the request body")
	}
	return data, nil
}

// warn sends the warnings (the fields a document had that the service
// accepts and ignores) as Warning headers: 299, as the Kubernetes API
// server warns.
func warn(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", "299 - "+strconv.QuoteToASCII(msg))
	}
}

func (s *Server) createCluster(w http.ResponseWriter, r *http.Request) {
	body, err := readSpecBody(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	dryRun, err := boolParam(r, "dryRun")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		s.writeProblem(w, r, service.Invalid(FieldError{Field: "Idempotency-Key", Message: fmt.Sprintf("must be at most %d characters", maxIdempotencyKey)}))
		return
	}
	p := principal(r.Context())
	if dryRun {
		view, err := s.svc.Check(r.Context(), p, body)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		warn(w, view.Warnings)
		writeJSON(w, http.StatusOK, view)
		return
	}
	view, err := s.svc.Create(r.Context(), p, body, key)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("ETag", service.ETag(view.Generation))
	w.Header().Set("Location", "/v1/clusters/"+view.Name)
	warn(w, view.Warnings)
	writeJSON(w, http.StatusAccepted, view)
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	in := service.ClusterQuery{Limit: service.DefaultPageSize, Cursor: q.Get("cursor"), Phase: store.Phase(q.Get("phase"))}
	if v := q.Get("limit"); v != "" {
		in.Limit, _ = strconv.Atoi(v) // not a number: 0, refused as out of range
	}
	out, err := s.svc.ListClusters(r.Context(), principal(r.Context()), in)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// clusterWithOperation loads the caller's cluster {name} and its latest operation.
func (s *Server) clusterWithOperation(r *http.Request) (store.Cluster, *store.Operation, error) {
	return s.svc.ClusterOf(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	view, err := s.svc.Cluster(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("ETag", service.ETag(view.Generation))
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	body, err := s.svc.StatusJSON(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	view, err := s.svc.Delete(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, view)
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, service.Invalid(FieldError{Field: name, Message: "must be true or false"})
	}
	return b, nil
}
