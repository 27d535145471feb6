package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// etag is a cluster spec's entity tag: its generation.
func etag(c store.Cluster) string { return strconv.Quote(strconv.FormatInt(c.Generation, 10)) }

// ifMatchGeneration reads If-Match: 0 when absent or "*", else the
// generation it names.
func ifMatchGeneration(r *http.Request) (int64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return 0, nil
	}
	v = strings.TrimPrefix(v, "W/")
	unquoted, err := strconv.Unquote(v)
	if err == nil {
		var gen int64
		if gen, err = strconv.ParseInt(unquoted, 10, 64); err == nil && gen > 0 {
			return gen, nil
		}
	}
	return 0, errInvalid(FieldError{Field: "If-Match", Message: `must be an ETag this API returned, such as "3"`})
}

func errPrecondition(detail string) *apiError {
	return &apiError{status: http.StatusPreconditionFailed, slug: "precondition-failed", title: "Precondition failed", detail: detail}
}

// busy turns a *store.BusyError into a 409 naming the running operation.
func busy(err error) error {
	var be *store.BusyError
	if errors.As(err, &be) {
		e := errConflict(fmt.Sprintf("cluster %q has a %s operation in progress (%s); wait for it or cancel it with POST /v1/clusters/%s/operations/%s/cancel",
			be.Cluster, be.Operation.Kind, be.Operation.ID, be.Cluster, be.Operation.ID))
		e.operation = be.Operation.ID.String()
		return e
	}
	return err
}

// replaceCluster is PUT /v1/clusters/{name}: the full spec.
func (s *Server) replaceCluster(w http.ResponseWriter, r *http.Request) {
	body, err := readSpecBody(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.updateCluster(w, r, body)
}

// patchCluster is PATCH /v1/clusters/{name}: a JSON merge patch (RFC 7386)
// of the stored spec, in the shape it was submitted in.
func (s *Server) patchCluster(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/merge-patch+json" {
		s.writeProblem(w, r, &apiError{status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type",
			title: "Unsupported media type", detail: "send a JSON merge patch as application/merge-patch+json"})
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
	c, _, err := s.clusterWithOperation(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	// The patch applies to the spec as GET shows it: in its shape.
	merged, err := jsonpatch.MergePatch(specInShape(c), patch)
	if err != nil {
		s.writeProblem(w, r, errBadRequest("the merge patch does not apply: "+err.Error()))
		return
	}
	s.updateCluster(w, r, merged)
}

// updateCluster validates the new spec and the change, then stores it and
// enqueues an update operation; a spec equal to the stored one changes
// nothing and answers 200.
func (s *Server) updateCluster(w http.ResponseWriter, r *http.Request, body []byte) {
	name := chi.URLParam(r, "name")
	ifGen, err := ifMatchGeneration(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	c, _, err := s.clusterWithOperation(r)
	if err == nil && c.DeletedAt != nil {
		err = errNotFound(fmt.Sprintf("cluster %q was deleted", name))
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if ifGen > 0 && ifGen != c.Generation {
		s.writeProblem(w, r, errPrecondition(fmt.Sprintf("the cluster is at generation %d, not %d: GET it again and reapply your change", c.Generation, ifGen)))
		return
	}
	doc, provider, err := s.loadSpec(r, body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	old, err := spec.ParseSections(c.Spec, s.SpecOptions.ProviderSections)
	if err != nil {
		s.writeProblem(w, r, fmt.Errorf("stored spec of %s: %w", name, err))
		return
	}
	old.Default()
	updated := doc.Capi
	if errs := spec.ValidateUpdate(old, updated, c.Provider, provider); len(errs) > 0 {
		for i := range errs {
			errs[i].Field = doc.Field(errs[i].Field) // as the document wrote it
		}
		s.writeProblem(w, r, errInvalid(fieldErrors(errs)...))
		return
	}
	if reflect.DeepEqual(old, updated) {
		w.Header().Set("ETag", etag(c))
		view := clusterView(c, nil, seesInternals(r))
		view.Warnings = warnIgnored(w, doc)
		writeJSON(w, http.StatusOK, view)
		return
	}
	specJSON, err := json.Marshal(updated)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	machines, err := s.machines(updated)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	c, op, err := s.store.UpdateSpec(r.Context(), s.actor(r), name, ifGen, specJSON, string(doc.Shape), machines, s.StepNames(store.OpUpdate), s.Enqueue)
	s.clusterChanged(r, name)
	switch {
	case errors.Is(err, store.ErrPreconditionFailed):
		s.writeProblem(w, r, errPrecondition("the cluster changed meanwhile: GET it again and reapply your change"))
		return
	case err != nil:
		s.writeProblem(w, r, busy(err))
		return
	}
	s.logger.InfoContext(r.Context(), "cluster update accepted", "cluster", name, "generation", c.Generation, "operation", op.ID.String(), "request_id", requestID(r.Context()))
	w.Header().Set("ETag", etag(c))
	w.Header().Set("Location", "/v1/clusters/"+name)
	view := clusterView(c, &op, seesInternals(r))
	view.Warnings = warnIgnored(w, doc)
	writeJSON(w, http.StatusAccepted, view)
}

// OperationList is a cluster's operations, newest first.
type OperationList struct {
	Items []OperationView `json:"items"`
}

const maxOperations = 100

func (s *Server) listOperations(w http.ResponseWriter, r *http.Request) {
	c, _, err := s.clusterWithOperation(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	ops, err := s.store.Operations(r.Context(), c.TenantID, c.ID, maxOperations)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out := OperationList{Items: make([]OperationView, 0, len(ops))}
	for _, op := range ops {
		out.Items = append(out.Items, operationView(op, seesInternals(r)))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) cancelOperation(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		s.writeProblem(w, r, errNotFound("no such operation"))
		return
	}
	c, op, err := s.store.CancelOperation(r.Context(), s.actor(r), name, id, s.CancelJob)
	s.clusterChanged(r, name)
	if errors.Is(err, store.ErrNotFound) {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("cluster %q has no operation %s", name, id)))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.logger.InfoContext(r.Context(), "operation cancelled", "cluster", name, "operation", id.String(), "request_id", requestID(r.Context()))
	writeJSON(w, http.StatusOK, clusterView(c, &op, seesInternals(r)))
}

func (s *Server) retryCluster(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	c, op, err := s.store.RetryOperation(r.Context(), s.actor(r), name, s.StepNames, s.Enqueue)
	s.clusterChanged(r, name)
	if errors.Is(err, store.ErrNotFound) {
		s.writeProblem(w, r, errNotFound(fmt.Sprintf("no cluster named %q", name)))
		return
	}
	if err != nil {
		s.writeProblem(w, r, busy(err))
		return
	}
	s.logger.InfoContext(r.Context(), "retry accepted", "cluster", name, "operation", op.ID.String(), "request_id", requestID(r.Context()))
	writeJSON(w, http.StatusAccepted, clusterView(c, &op, seesInternals(r)))
}
