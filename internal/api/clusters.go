package api

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

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
		return nil, &apiError{status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type",
			title: "Unsupported media type", detail: "send the cluster spec as application/yaml or application/json"}
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
		return nil, errBadRequest("could not read the request body")
	}
	return data, nil
}

// loadSpec parses, defaults and validates a spec, then checks what only the
// service knows: the provider, the named management cluster and the
// credential. Every problem found is returned in one validation error.
//
// The document may be of either shape (spec.Shape); every error names its
// field as the document wrote it, and the fields it accepts and ignores
// are reported with warnWith.
func (s *Server) loadSpec(r *http.Request, body []byte) (*spec.Document, string, error) {
	doc, err := spec.LoadDocument(body, s.SpecOptions)
	var specErrs spec.FieldErrors
	if err != nil && !errors.As(err, &specErrs) {
		return nil, "", err
	}
	capi := doc.Capi
	fields := fieldErrors(specErrs)
	reported := func(prefix string) bool {
		if prefix != "spec" {
			prefix = doc.Field(prefix)
		}
		for _, f := range specErrs {
			if f.Field == prefix || strings.HasPrefix(f.Field, prefix+".") || f.Field == doc.Field("spec") {
				return true
			}
		}
		return false
	}
	// add reports a problem the service finds, on the document's field.
	add := func(field, msg string) { fields = append(fields, FieldError{Field: doc.Field(field), Message: msg}) }
	provider := ""
	if !reported("spec") {
		if provider, err = s.DetectProvider(capi); err != nil {
			add("spec", err.Error())
		}
	}
	if provider != "" && s.CheckRequirements != nil {
		for _, fe := range s.CheckRequirements(capi) {
			add(fe.Field, fe.Message)
		}
	}
	if mc := capi.Spec.ManagementCluster; mc != nil && !reported("spec.managementCluster.domain") {
		switch {
		case !s.ManagementClusterKnown(mc.Domain):
			add("spec.managementCluster.domain", fmt.Sprintf("no management cluster %q is configured on this service", mc.Domain))
		case provider != "" && s.ProviderMissing != nil:
			if why := s.ProviderMissing(r.Context(), mc.Domain, capi); why != "" {
				add("spec.managementCluster.domain", why)
			}
		}
	}
	if secretName := capi.Spec.Credentials.SecretName; secretName != "" && !reported("spec.credentials.secretName") {
		cred, err := s.store.Credential(r.Context(), principal(r.Context()).TenantID, secretName)
		switch {
		case errors.Is(err, store.ErrNotFound):
			add("spec.credentials.secretName", fmt.Sprintf("no credential %q: create it first with PUT /v1/credentials/%s", secretName, secretName))
		case err != nil:
			return nil, "", err
		case provider != "" && cred.Provider != provider:
			add("spec.credentials.secretName", fmt.Sprintf("credential %q is for provider %s, the spec uses %s", secretName, cred.Provider, provider))
		}
	}
	if g := capi.Spec.GitOps; g != nil && g.SecretName != "" && !reported("spec.gitops.secretName") {
		cred, err := s.store.Credential(r.Context(), principal(r.Context()).TenantID, g.SecretName)
		switch {
		case errors.Is(err, store.ErrNotFound):
			add("spec.gitops.secretName", fmt.Sprintf("no credential %q: create it first with PUT /v1/credentials/%s (provider git)", g.SecretName, g.SecretName))
		case err != nil:
			return nil, "", err
		case cred.Provider != "git":
			add("spec.gitops.secretName", fmt.Sprintf("credential %q is for provider %s: a repository needs a git credential", g.SecretName, cred.Provider))
		}
	}
	if len(fields) > 0 {
		sortFields(fields)
		return nil, "", errInvalid(fields...)
	}
	return doc, provider, nil
}

// placement decides where a cluster's objects go: in SaaS mode the
// service's management cluster, in a namespace of the tenant's own (so
// tenants never share one); on a named management cluster, the spec's
// namespace.
func placement(p store.Principal, c *spec.Capi) (domain, namespace string) {
	if c.Spec.ManagementCluster == nil {
		return "", TenantNamespacePrefix + p.TenantName
	}
	return c.Spec.ManagementCluster.Domain, c.Spec.Cluster.Namespace
}

// TenantNamespacePrefix prefixes a tenant's namespace on the SaaS management cluster.
const TenantNamespacePrefix = "lok8s-"

// DryRunView is the answer to a dry run: the spec as it would be stored,
// in the shape it was written in, and the fields it had that are ignored.
type DryRunView struct {
	Valid    bool            `json:"valid"`
	Spec     json.RawMessage `json:"spec"`
	Warnings []string        `json:"warnings,omitempty"`
}

// warnIgnored reports the fields a document had that the service accepts
// and ignores: a Warning header each (299, as the Kubernetes API server
// warns) and the list for the response body.
func warnIgnored(w http.ResponseWriter, doc *spec.Document) []string {
	if len(doc.Ignored) == 0 {
		return nil
	}
	out := make([]string, 0, len(doc.Ignored))
	for _, i := range doc.Ignored {
		msg := i.String()
		w.Header().Add("Warning", "299 - "+strconv.QuoteToASCII(msg))
		out = append(out, msg)
	}
	return out
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
		s.writeProblem(w, r, errInvalid(FieldError{Field: "Idempotency-Key", Message: fmt.Sprintf("must be at most %d characters", maxIdempotencyKey)}))
		return
	}
	doc, provider, err := s.loadSpec(r, body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if dryRun {
		view, err := s.dryRun(r, doc)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		view.Warnings = warnIgnored(w, doc)
		writeJSON(w, http.StatusOK, view)
		return
	}
	hash := sha256.Sum256(body)
	c, op, err := s.provision(r, doc, provider, key, hash[:])
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(c))
	w.Header().Set("Location", "/v1/clusters/"+c.Name)
	view := clusterView(c, &op, seesInternals(r))
	view.Warnings = warnIgnored(w, doc)
	writeJSON(w, http.StatusAccepted, view)
}

// dryRun checks a loaded spec against the tenant's quota and returns it as
// it would be stored, in its document's shape.
func (s *Server) dryRun(r *http.Request, doc *spec.Document) (DryRunView, error) {
	machines, err := s.machines(doc.Capi)
	if err != nil {
		return DryRunView{}, err
	}
	if err := s.store.CheckQuota(r.Context(), principal(r.Context()).TenantID, machines); err != nil {
		return DryRunView{}, err
	}
	rendered, err := spec.Render(doc.Capi, doc.Shape)
	if err != nil {
		return DryRunView{}, fmt.Errorf("render spec: %w", err)
	}
	return DryRunView{Valid: true, Spec: rendered}, nil
}

// provision stores a loaded spec as a new cluster of the caller's tenant
// and enqueues its provisioning: what POST /v1/clusters and POST
// /api/clusters both do. key and hash make a retry with the same
// Idempotency-Key replay the first request.
func (s *Server) provision(r *http.Request, doc *spec.Document, provider, key string, hash []byte) (store.Cluster, store.Operation, error) {
	capi := doc.Capi
	machines, err := s.machines(capi)
	if err != nil {
		return store.Cluster{}, store.Operation{}, err
	}
	specJSON, err := json.Marshal(capi)
	if err != nil {
		return store.Cluster{}, store.Operation{}, fmt.Errorf("marshal spec: %w", err)
	}
	mgmtDomain, namespace := placement(principal(r.Context()), capi)
	c, op, _, err := s.store.CreateCluster(r.Context(), s.actor(r), store.NewCluster{
		Name: capi.Metadata.Name, Provider: provider, ManagementDomain: mgmtDomain, Namespace: namespace, Spec: specJSON,
		SpecShape: string(doc.Shape), Machines: machines, Steps: s.StepNames(store.OpProvision), IdempotencyKey: key, RequestHash: hash,
	}, s.Enqueue)
	s.clusterChanged(r, capi.Metadata.Name)
	switch {
	case errors.Is(err, store.ErrConflict):
		return c, op, errConflict(fmt.Sprintf("a cluster named %q already exists; choose another name or delete it first", capi.Metadata.Name))
	case errors.Is(err, store.ErrPlacementTaken):
		// Only on a named management cluster: SaaS namespaces are the tenant's own.
		return c, op, errInvalid(FieldError{Field: "spec.cluster.namespace",
			Message: fmt.Sprintf("namespace %q of management cluster %q belongs to another tenant: choose another namespace", namespace, mgmtDomain)})
	case errors.Is(err, store.ErrIdempotencyMismatch):
		return c, op, &apiError{status: http.StatusUnprocessableEntity, slug: "idempotency-key-reused",
			title: "Idempotency-Key reused", detail: "this Idempotency-Key was used with a different request body; use a new key"}
	case err != nil:
		return c, op, err
	}
	s.logger.InfoContext(r.Context(), "cluster accepted", "cluster", c.Name, "operation", op.ID.String(), "request_id", requestID(r.Context()))
	return c, op, nil
}

// ClusterList is a page of clusters.
type ClusterList struct {
	Items      []ClusterView `json:"items"`
	NextCursor string        `json:"nextCursor,omitempty"`
}

const (
	defaultPageSize = 50
	maxPageSize     = 200
)

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := store.ListClustersParams{Limit: defaultPageSize, Cursor: q.Get("cursor"), Phase: store.Phase(q.Get("phase"))}
	var fields []FieldError
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			fields = append(fields, FieldError{Field: "limit", Message: fmt.Sprintf("must be an integer from 1 to %d", maxPageSize)})
		}
		p.Limit = n
	}
	if p.Phase != "" && !validPhase(p.Phase) {
		fields = append(fields, FieldError{Field: "phase", Message: fmt.Sprintf("must be one of %v", store.Phases)})
	}
	if len(fields) > 0 {
		s.writeProblem(w, r, errInvalid(fields...))
		return
	}
	clusters, next, err := s.store.ListClusters(r.Context(), principal(r.Context()).TenantID, p)
	if errors.Is(err, store.ErrBadCursor) {
		s.writeProblem(w, r, errInvalid(FieldError{Field: "cursor", Message: "not a cursor this API returned"}))
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	ids := make([]uuid.UUID, len(clusters))
	for i, c := range clusters {
		ids[i] = c.ID
	}
	ops, err := s.store.LatestOperations(r.Context(), ids)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out := ClusterList{Items: make([]ClusterView, 0, len(clusters)), NextCursor: next}
	for _, c := range clusters {
		var op *store.Operation
		if o, ok := ops[c.ID]; ok {
			op = &o
		}
		out.Items = append(out.Items, clusterView(c, op, seesInternals(r)))
	}
	writeJSON(w, http.StatusOK, out)
}

func validPhase(p store.Phase) bool {
	for _, known := range store.Phases {
		if p == known {
			return true
		}
	}
	return false
}

// clusterWithOperation loads the caller's cluster {name} and its latest operation.
func (s *Server) clusterWithOperation(r *http.Request) (store.Cluster, *store.Operation, error) {
	name := chi.URLParam(r, "name")
	c, err := s.store.Cluster(r.Context(), principal(r.Context()).TenantID, name)
	if errors.Is(err, store.ErrNotFound) {
		e := errNotFound(fmt.Sprintf("no cluster named %q", name))
		e.phase = "NotFound"
		return store.Cluster{}, nil, e
	}
	if err != nil {
		return store.Cluster{}, nil, err
	}
	op, err := s.store.LatestOperation(r.Context(), c.ID)
	if errors.Is(err, store.ErrNotFound) {
		return c, nil, nil
	}
	if err != nil {
		return store.Cluster{}, nil, err
	}
	return c, &op, nil
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	c, op, err := s.clusterWithOperation(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(c))
	writeJSON(w, http.StatusOK, clusterView(c, op, seesInternals(r)))
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	body, err := s.statusBody(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// loadStatus reads the request's cluster status from Postgres.
func (s *Server) loadStatus(r *http.Request) (StatusView, error) {
	c, op, err := s.clusterWithOperation(r)
	if err != nil {
		return StatusView{}, err
	}
	addons, err := s.store.Addons(r.Context(), c.ID)
	if err != nil {
		return StatusView{}, err
	}
	view := statusView(c, op, addons, seesInternals(r))
	switch g, err := s.store.GitOpsState(r.Context(), c.ID); {
	case err == nil:
		view.GitOps = &GitOpsView{Provider: g.Provider, Repo: g.Repo, Ready: g.Ready, Reason: g.Reason, Message: g.Message, UpdatedAt: g.UpdatedAt}
	case !errors.Is(err, store.ErrNotFound):
		return StatusView{}, err
	}
	return view, nil
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	c, op, err := s.store.StartDeprovision(r.Context(), s.actor(r), name, s.StepNames(store.OpDeprovision), s.Enqueue, s.CancelJob)
	s.clusterChanged(r, name)
	if errors.Is(err, store.ErrNotFound) {
		e := errNotFound(fmt.Sprintf("no cluster named %q", name))
		e.phase = "NotFound"
		s.writeProblem(w, r, e)
		return
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.logger.InfoContext(r.Context(), "cluster deletion accepted", "cluster", c.Name, "operation", op.ID.String(), "request_id", requestID(r.Context()))
	writeJSON(w, http.StatusAccepted, clusterView(c, &op, seesInternals(r)))
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errInvalid(FieldError{Field: name, Message: "must be true or false"})
	}
	return b, nil
}
