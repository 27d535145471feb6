package api

import (
	"mime"
	"net/http"

	"github.com/go-chi/chi/v5"

	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
)

// replaceCluster is PUT /v1/clusters/{name}: the full spec.
func (s *Server) replaceCluster(w http.ResponseWriter, r *http.Request) {
	body, err := readSpecBody(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	res, err := s.svc.Replace(r.Context(), principal(r.Context()), chi.URLParam(r, "name"), body, r.Header.Get("If-Match"))
	s.writeUpdated(w, r, res, err)
}

// patchCluster is PATCH /v1/clusters/{name}: a JSON merge patch (RFC 7386)
// of the stored spec, in the shape it was submitted in.
func (s *Server) patchCluster(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/merge-patch+json" {
		s.writeProblem(w, r, &service.Error{Status: http.StatusUnsupportedMediaType, Slug: "unsupported-media-type",
			Title: "Unsupported media type", Detail: "send a JSON merge patch as application/merge-patch+json"})
		return
	}
	patch, err := readBody(r.Body)
	if err == nil {
		err = spec.CheckJSON(patch)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	res, err := s.svc.Patch(r.Context(), principal(r.Context()), chi.URLParam(r, "name"), patch, r.Header.Get("If-Match"))
	s.writeUpdated(w, r, res, err)
}

// writeUpdated answers a PUT or PATCH: 202 with the update started, 200
// when the spec was the stored one.
func (s *Server) writeUpdated(w http.ResponseWriter, r *http.Request, res service.Updated, err error) {
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	view := res.Cluster
	w.Header().Set("ETag", service.ETag(view.Generation))
	status := http.StatusOK
	if res.Started {
		w.Header().Set("Location", "/v1/clusters/"+view.Name)
		status = http.StatusAccepted
	}
	warn(w, view.Warnings)
	writeJSON(w, status, view)
}

// OperationList is a cluster's operations, newest first.
type OperationList struct {
	Items []service.OperationView `json:"items"`
}

func (s *Server) listOperations(w http.ResponseWriter, r *http.Request) {
	ops, err := s.svc.Operations(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, OperationList{Items: ops})
}

func (s *Server) cancelOperation(w http.ResponseWriter, r *http.Request) {
	view, err := s.svc.CancelOperation(r.Context(), principal(r.Context()), chi.URLParam(r, "name"), chi.URLParam(r, "id"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) retryCluster(w http.ResponseWriter, r *http.Request) {
	view, err := s.svc.Retry(r.Context(), principal(r.Context()), chi.URLParam(r, "name"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, view)
}
