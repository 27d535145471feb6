package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/uuid"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/readmodel"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// LoadedSpec is a spec document LoadSpec accepted, read against the
// provider catalog once for the request: what Create, Check, an update
// and the hosted create go on with.
type LoadedSpec struct {
	Doc *spec.Document
	// Provider is the provider the spec selects.
	Provider *capi.Provider
	// Spec is Doc's spec as the catalog reads it (its document decoded once).
	Spec *capi.Spec
}

// machines counts what the spec asks its provider for, held against the
// tenant's quota.
func (l *LoadedSpec) machines() (int64, error) {
	n, err := l.Provider.Machines(l.Spec)
	if err != nil {
		return 0, fmt.Errorf("count machines: %w", err)
	}
	return n, nil
}

// LoadSpec parses, defaults and validates a spec document of either shape
// (spec.Shape), then checks what only the service knows: the provider (and
// its requirements), the named management cluster and p's credentials.
// Every problem found is returned in one validation error, each naming its
// field as the document wrote it. It detects the provider and reads the
// spec for the catalog once, and returns them with the document.
func (s *Service) LoadSpec(ctx context.Context, p store.Principal, body []byte) (*LoadedSpec, error) {
	doc, err := spec.LoadDocument(body, s.cfg.SpecOptions)
	var specErrs spec.FieldErrors
	if err != nil && !errors.As(err, &specErrs) {
		return nil, err
	}
	sp := doc.Capi
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
	var provider *capi.Provider
	var read *capi.Spec
	if !reported("spec") {
		if provider, err = s.cfg.Catalog.Detect(sp); err != nil {
			add("spec", err.Error())
		}
	}
	if provider != nil {
		if read, err = capi.NewSpec(sp); err != nil {
			add("spec", err.Error())
		} else {
			for _, fe := range provider.CheckRequirements(read, s.cfg.AddonRoles) {
				add(fe.Field, fe.Message)
			}
		}
	}
	if mc := sp.Spec.ManagementCluster; mc != nil && !reported("spec.managementCluster.domain") {
		switch {
		case !s.cfg.ManagementClusterKnown(mc.Domain):
			add("spec.managementCluster.domain", fmt.Sprintf("no management cluster %q is configured on this service", mc.Domain))
		case provider != nil && s.cfg.ProviderMissing != nil:
			if why := s.cfg.ProviderMissing(ctx, mc.Domain, provider.Name); why != "" {
				add("spec.managementCluster.domain", why)
			}
		}
	}
	if secretName := sp.Spec.Credentials.SecretName; secretName != "" && !reported("spec.credentials.secretName") {
		cred, err := s.store.Credential(ctx, p.TenantID, secretName)
		switch {
		case errors.Is(err, store.ErrNotFound):
			add("spec.credentials.secretName", fmt.Sprintf("no credential %q: create it first with PUT /v1/credentials/%s", secretName, secretName))
		case err != nil:
			return nil, err
		case provider != nil && cred.Provider != provider.Name:
			add("spec.credentials.secretName", fmt.Sprintf("credential %q is for provider %s, the spec uses %s", secretName, cred.Provider, provider.Name))
		}
	}
	if g := sp.Spec.GitOps; g != nil && g.SecretName != "" && !reported("spec.gitops.secretName") {
		cred, err := s.store.Credential(ctx, p.TenantID, g.SecretName)
		switch {
		case errors.Is(err, store.ErrNotFound):
			add("spec.gitops.secretName", fmt.Sprintf("no credential %q: create it first with PUT /v1/credentials/%s (provider git)", g.SecretName, g.SecretName))
		case err != nil:
			return nil, err
		case cred.Provider != "git":
			add("spec.gitops.secretName", fmt.Sprintf("credential %q is for provider %s: a repository needs a git credential", g.SecretName, cred.Provider))
		}
	}
	if len(fields) > 0 {
		SortFields(fields)
		return nil, Invalid(fields...)
	}
	return &LoadedSpec{Doc: doc, Provider: provider, Spec: read}, nil
}

// Ignored lists the fields a document had that the service accepts and
// ignores, as warnings.
func Ignored(doc *spec.Document) []string {
	if len(doc.Ignored) == 0 {
		return nil
	}
	out := make([]string, 0, len(doc.Ignored))
	for _, i := range doc.Ignored {
		out = append(out, i.String())
	}
	return out
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

// Check is a dry run of Create: it checks the spec document body as Create
// would, and p's quota, and returns the spec as it would be stored, in
// its document's shape. It stores nothing.
func (s *Service) Check(ctx context.Context, p store.Principal, body []byte) (DryRunView, error) {
	loaded, err := s.LoadSpec(ctx, p, body)
	if err != nil {
		return DryRunView{}, err
	}
	machines, err := loaded.machines()
	if err != nil {
		return DryRunView{}, err
	}
	if err := s.store.CheckQuota(ctx, p.TenantID, machines); err != nil {
		return DryRunView{}, err
	}
	doc := loaded.Doc
	rendered, err := spec.Render(doc.Capi, doc.Shape)
	if err != nil {
		return DryRunView{}, fmt.Errorf("render spec: %w", err)
	}
	return DryRunView{Valid: true, Spec: rendered, Warnings: Ignored(doc)}, nil
}

// Create stores the spec document body as a new cluster of p's tenant and
// enqueues its provisioning. A retry with the same idempotencyKey (""
// for none) replays the first request; with another body it is refused.
// The view's Warnings are the document's ignored fields.
func (s *Service) Create(ctx context.Context, p store.Principal, body []byte, idempotencyKey string) (ClusterView, error) {
	loaded, err := s.LoadSpec(ctx, p, body)
	if err != nil {
		return ClusterView{}, err
	}
	hash := sha256.Sum256(body)
	c, op, err := s.Provision(ctx, p, loaded, idempotencyKey, hash[:])
	if err != nil {
		return ClusterView{}, err
	}
	view := clusterView(c, &op, seesInternals(p))
	view.Warnings = Ignored(loaded.Doc)
	return view, nil
}

// Provision stores a loaded spec (LoadSpec) as a new cluster of p's tenant
// and enqueues its provisioning: what Create and the hosted-mode create
// both do. key and hash make a retry with the same idempotency key replay
// the first request.
func (s *Service) Provision(ctx context.Context, p store.Principal, loaded *LoadedSpec, key string, hash []byte) (store.Cluster, store.Operation, error) {
	sp := loaded.Doc.Capi
	machines, err := loaded.machines()
	if err != nil {
		return store.Cluster{}, store.Operation{}, err
	}
	specJSON, err := json.Marshal(sp)
	if err != nil {
		return store.Cluster{}, store.Operation{}, fmt.Errorf("marshal spec: %w", err)
	}
	mgmtDomain, namespace := placement(p, sp)
	c, op, _, err := s.store.CreateCluster(ctx, Actor(ctx, p), store.NewCluster{
		Name: sp.Metadata.Name, Provider: loaded.Provider.Name, ManagementDomain: mgmtDomain, Namespace: namespace, Spec: specJSON,
		SpecShape: string(loaded.Doc.Shape), Machines: machines, Steps: s.cfg.StepNames(store.OpProvision), IdempotencyKey: key, RequestHash: hash,
	}, s.cfg.Enqueue)
	s.clusterChanged(p, sp.Metadata.Name)
	switch {
	case errors.Is(err, store.ErrConflict):
		return c, op, Conflict(fmt.Sprintf("a cluster named %q already exists; choose another name or delete it first", sp.Metadata.Name))
	case errors.Is(err, store.ErrPlacementTaken):
		// Only on a named management cluster: SaaS namespaces are the tenant's own.
		return c, op, Invalid(FieldError{Field: "spec.cluster.namespace",
			Message: fmt.Sprintf("namespace %q of management cluster %q belongs to another tenant: choose another namespace", namespace, mgmtDomain)})
	case errors.Is(err, store.ErrIdempotencyMismatch):
		return c, op, &Error{Status: http.StatusUnprocessableEntity, Slug: "idempotency-key-reused",
			Title: "Idempotency-Key reused", Detail: "this Idempotency-Key was used with a different request body; use a new key"}
	case err != nil:
		return c, op, err
	}
	s.logger.InfoContext(ctx, "cluster accepted", "cluster", c.Name, "operation", op.ID.String(), "request_id", RequestID(ctx))
	return c, op, nil
}

// ClusterList is a page of clusters.
type ClusterList struct {
	Items      []ClusterView `json:"items"`
	NextCursor string        `json:"nextCursor,omitempty"`
}

// Page sizes of ListClusters.
const (
	DefaultPageSize = 50
	MaxPageSize     = 200
)

// ClusterQuery selects a page of clusters: Limit of them (1 to
// MaxPageSize), after Cursor (a NextCursor; "" for the first page), of
// Phase ("" for any).
type ClusterQuery struct {
	Limit  int
	Cursor string
	Phase  store.Phase
}

// ListClusters is a page of p's tenant's clusters, each with its latest
// operation.
func (s *Service) ListClusters(ctx context.Context, p store.Principal, q ClusterQuery) (ClusterList, error) {
	var fields []FieldError
	if q.Limit < 1 || q.Limit > MaxPageSize {
		fields = append(fields, FieldError{Field: "limit", Message: fmt.Sprintf("must be an integer from 1 to %d", MaxPageSize)})
	}
	if q.Phase != "" && !validPhase(q.Phase) {
		fields = append(fields, FieldError{Field: "phase", Message: fmt.Sprintf("must be one of %v", store.Phases)})
	}
	if len(fields) > 0 {
		return ClusterList{}, Invalid(fields...)
	}
	clusters, next, err := s.store.ListClusters(ctx, p.TenantID, store.ListClustersParams{Limit: q.Limit, Cursor: q.Cursor, Phase: q.Phase})
	if errors.Is(err, store.ErrBadCursor) {
		return ClusterList{}, Invalid(FieldError{Field: "cursor", Message: "not a cursor this API returned"})
	}
	if err != nil {
		return ClusterList{}, err
	}
	ids := make([]uuid.UUID, len(clusters))
	for i, c := range clusters {
		ids[i] = c.ID
	}
	ops, err := s.store.LatestOperations(ctx, ids)
	if err != nil {
		return ClusterList{}, err
	}
	out := ClusterList{Items: make([]ClusterView, 0, len(clusters)), NextCursor: next}
	for _, c := range clusters {
		var op *store.Operation
		if o, ok := ops[c.ID]; ok {
			op = &o
		}
		out.Items = append(out.Items, clusterView(c, op, seesInternals(p)))
	}
	return out, nil
}

func validPhase(p store.Phase) bool {
	for _, known := range store.Phases {
		if p == known {
			return true
		}
	}
	return false
}

// errNoCluster is the 404 of a cluster name p's tenant does not have.
func errNoCluster(name string) *Error {
	e := NotFound(fmt.Sprintf("no cluster named %q", name))
	e.Phase = "NotFound"
	return e
}

// ClusterOf loads p's tenant's cluster name and its latest operation (nil
// when it has none); another tenant's cluster is not found.
func (s *Service) ClusterOf(ctx context.Context, p store.Principal, name string) (store.Cluster, *store.Operation, error) {
	c, err := s.store.Cluster(ctx, p.TenantID, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Cluster{}, nil, errNoCluster(name)
	}
	if err != nil {
		return store.Cluster{}, nil, err
	}
	op, err := s.store.LatestOperation(ctx, c.ID)
	if errors.Is(err, store.ErrNotFound) {
		return c, nil, nil
	}
	if err != nil {
		return store.Cluster{}, nil, err
	}
	return c, &op, nil
}

// Cluster is p's tenant's cluster name with its latest operation.
func (s *Service) Cluster(ctx context.Context, p store.Principal, name string) (ClusterView, error) {
	c, op, err := s.ClusterOf(ctx, p, name)
	if err != nil {
		return ClusterView{}, err
	}
	return clusterView(c, op, seesInternals(p)), nil
}

// ETag is the entity tag of a cluster's spec: its generation, quoted.
func ETag(generation int64) string { return strconv.Quote(strconv.FormatInt(generation, 10)) }

// Status is the status of p's tenant's cluster name, from Postgres.
func (s *Service) Status(ctx context.Context, p store.Principal, name string) (StatusView, error) {
	c, op, err := s.ClusterOf(ctx, p, name)
	if err != nil {
		return StatusView{}, err
	}
	addons, err := s.store.Addons(ctx, c.ID)
	if err != nil {
		return StatusView{}, err
	}
	view := statusView(c, op, addons, seesInternals(p))
	switch g, err := s.store.GitOpsState(ctx, c.ID); {
	case err == nil:
		view.GitOps = &GitOpsView{Provider: g.Provider, Repo: g.Repo, Ready: g.Ready, Reason: g.Reason, Message: g.Message, UpdatedAt: g.UpdatedAt}
	case !errors.Is(err, store.ErrNotFound):
		return StatusView{}, err
	}
	return view, nil
}

// StatusJSON is Status encoded as JSON (as json.Encoder writes it, with a
// newline): from the read model when it holds it, else from Postgres (and
// kept), so the same bytes come from memory as from Postgres.
func (s *Service) StatusJSON(ctx context.Context, p store.Principal, name string) ([]byte, error) {
	load := func() ([]byte, bool, error) {
		view, err := s.Status(ctx, p, name)
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(view); err != nil {
			return nil, false, fmt.Errorf("encode status: %w", err)
		}
		return buf.Bytes(), true, nil
	}
	if s.cfg.Reads == nil {
		body, _, err := load()
		return body, err
	}
	key := readmodel.ClusterKey{Tenant: p.TenantID, Name: name, Raw: seesInternals(p)}
	return s.cfg.Reads.Statuses.Load(key, load)
}

// maxOperations bounds Operations.
const maxOperations = 100

// Operations are the latest operations of p's tenant's cluster name,
// newest first.
func (s *Service) Operations(ctx context.Context, p store.Principal, name string) ([]OperationView, error) {
	c, _, err := s.ClusterOf(ctx, p, name)
	if err != nil {
		return nil, err
	}
	ops, err := s.store.Operations(ctx, c.TenantID, c.ID, maxOperations)
	if err != nil {
		return nil, err
	}
	out := make([]OperationView, 0, len(ops))
	for _, op := range ops {
		out = append(out, operationView(op, seesInternals(p)))
	}
	return out, nil
}

// parseIfMatch reads an entity tag the caller last saw (an If-Match
// value): 0 for "" or "*" (any generation), else the generation it names.
func parseIfMatch(v string) (int64, error) {
	v = strings.TrimSpace(v)
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
	return 0, Invalid(FieldError{Field: "If-Match", Message: `must be an ETag this API returned, such as "3"`})
}

// busy turns a *store.BusyError into a 409 naming the running operation.
func busy(err error) error {
	var be *store.BusyError
	if errors.As(err, &be) {
		e := Conflict(fmt.Sprintf("cluster %q has a %s operation in progress (%s); wait for it or cancel it with POST /v1/clusters/%s/operations/%s/cancel",
			be.Cluster, be.Operation.Kind, be.Operation.ID, be.Cluster, be.Operation.ID))
		e.Operation = be.Operation.ID.String()
		return e
	}
	return err
}

// Updated is the answer to Replace and Patch: the cluster, and whether the
// change started an update (false: the spec was the stored one).
type Updated struct {
	Cluster ClusterView
	Started bool
}

// Replace sets the spec of p's tenant's cluster name to the document body
// and starts its update. ifMatch, when not "" or "*", is the ETag the
// caller last saw: a cluster since changed is refused.
func (s *Service) Replace(ctx context.Context, p store.Principal, name string, body []byte, ifMatch string) (Updated, error) {
	return s.update(ctx, p, name, body, ifMatch)
}

// Patch applies a JSON merge patch (RFC 7386) to the spec of p's tenant's
// cluster name, as its view shows it (in its shape), then updates it as
// Replace does.
func (s *Service) Patch(ctx context.Context, p store.Principal, name string, patch []byte, ifMatch string) (Updated, error) {
	c, _, err := s.ClusterOf(ctx, p, name)
	if err != nil {
		return Updated{}, err
	}
	merged, err := jsonpatch.MergePatch(specInShape(c), patch)
	if err != nil {
		return Updated{}, BadRequest("the merge patch does not apply: " + err.Error())
	}
	return s.update(ctx, p, name, merged, ifMatch)
}

// update validates the new spec and the change, then stores it and
// enqueues an update operation; a spec equal to the stored one changes
// nothing.
func (s *Service) update(ctx context.Context, p store.Principal, name string, body []byte, ifMatch string) (Updated, error) {
	ifGen, err := parseIfMatch(ifMatch)
	if err != nil {
		return Updated{}, err
	}
	c, _, err := s.ClusterOf(ctx, p, name)
	if err == nil && c.DeletedAt != nil {
		err = NotFound(fmt.Sprintf("cluster %q was deleted", name))
	}
	if err != nil {
		return Updated{}, err
	}
	if ifGen > 0 && ifGen != c.Generation {
		return Updated{}, PreconditionFailed(fmt.Sprintf("the cluster is at generation %d, not %d: GET it again and reapply your change", c.Generation, ifGen))
	}
	loaded, err := s.LoadSpec(ctx, p, body)
	if err != nil {
		return Updated{}, err
	}
	doc := loaded.Doc
	old, err := spec.ParseSections(c.Spec, s.cfg.SpecOptions.ProviderSections)
	if err != nil {
		return Updated{}, fmt.Errorf("stored spec of %s: %w", name, err)
	}
	old.Default()
	updated := doc.Capi
	if errs := spec.ValidateUpdate(old, updated, c.Provider, loaded.Provider.Name); len(errs) > 0 {
		for i := range errs {
			errs[i].Field = doc.Field(errs[i].Field) // as the document wrote it
		}
		return Updated{}, Invalid(fieldErrors(errs)...)
	}
	if reflect.DeepEqual(old, updated) {
		view := clusterView(c, nil, seesInternals(p))
		view.Warnings = Ignored(doc)
		return Updated{Cluster: view}, nil
	}
	specJSON, err := json.Marshal(updated)
	if err != nil {
		return Updated{}, err
	}
	machines, err := loaded.machines()
	if err != nil {
		return Updated{}, err
	}
	c, op, err := s.store.UpdateSpec(ctx, Actor(ctx, p), name, ifGen, specJSON, string(doc.Shape), machines, s.cfg.StepNames(store.OpUpdate), s.cfg.Enqueue)
	s.clusterChanged(p, name)
	switch {
	case errors.Is(err, store.ErrPreconditionFailed):
		return Updated{}, PreconditionFailed("the cluster changed meanwhile: GET it again and reapply your change")
	case err != nil:
		return Updated{}, busy(err)
	}
	s.logger.InfoContext(ctx, "cluster update accepted", "cluster", name, "generation", c.Generation, "operation", op.ID.String(), "request_id", RequestID(ctx))
	view := clusterView(c, &op, seesInternals(p))
	view.Warnings = Ignored(doc)
	return Updated{Cluster: view, Started: true}, nil
}

// Delete starts deleting p's tenant's cluster name.
func (s *Service) Delete(ctx context.Context, p store.Principal, name string) (ClusterView, error) {
	c, op, err := s.Deprovision(ctx, p, name)
	if errors.Is(err, store.ErrNotFound) {
		return ClusterView{}, errNoCluster(name)
	}
	if err != nil {
		return ClusterView{}, err
	}
	return clusterView(c, &op, seesInternals(p)), nil
}

// Deprovision starts deleting p's tenant's cluster name: what Delete and
// the hosted-mode deletes do. A cluster p's tenant does not have is
// store.ErrNotFound.
func (s *Service) Deprovision(ctx context.Context, p store.Principal, name string) (store.Cluster, store.Operation, error) {
	c, op, err := s.store.StartDeprovision(ctx, Actor(ctx, p), name, s.cfg.StepNames(store.OpDeprovision), s.cfg.Enqueue, s.cfg.CancelJob)
	s.clusterChanged(p, name)
	if err != nil {
		return c, op, err
	}
	s.logger.InfoContext(ctx, "cluster deletion accepted", "cluster", c.Name, "operation", op.ID.String(), "request_id", RequestID(ctx))
	return c, op, nil
}

// Retry reruns the failed or cancelled latest operation of p's tenant's
// cluster name from its failed step.
func (s *Service) Retry(ctx context.Context, p store.Principal, name string) (ClusterView, error) {
	c, op, err := s.store.RetryOperation(ctx, Actor(ctx, p), name, s.cfg.StepNames, s.cfg.Enqueue)
	s.clusterChanged(p, name)
	if errors.Is(err, store.ErrNotFound) {
		return ClusterView{}, NotFound(fmt.Sprintf("no cluster named %q", name))
	}
	if err != nil {
		return ClusterView{}, busy(err)
	}
	s.logger.InfoContext(ctx, "retry accepted", "cluster", name, "operation", op.ID.String(), "request_id", RequestID(ctx))
	return clusterView(c, &op, seesInternals(p)), nil
}

// CancelOperation cancels operation id of p's tenant's cluster name.
func (s *Service) CancelOperation(ctx context.Context, p store.Principal, name, id string) (ClusterView, error) {
	opID, err := uuid.Parse(id)
	if err != nil {
		return ClusterView{}, NotFound("no such operation")
	}
	c, op, err := s.store.CancelOperation(ctx, Actor(ctx, p), name, opID, s.cfg.CancelJob)
	s.clusterChanged(p, name)
	if errors.Is(err, store.ErrNotFound) {
		return ClusterView{}, NotFound(fmt.Sprintf("cluster %q has no operation %s", name, opID))
	}
	if err != nil {
		return ClusterView{}, err
	}
	s.logger.InfoContext(ctx, "operation cancelled", "cluster", name, "operation", opID.String(), "request_id", RequestID(ctx))
	return clusterView(c, &op, seesInternals(p)), nil
}
