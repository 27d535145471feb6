package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

// The hosted-mode API under /api is what the lok8s CLI calls for a spec
// with spec.kubehz.hosting: hosted (github.com/kernpilot/lok8s
// .lok8s/libs/kubehz/hosted): create from a flat body, poll .status, fetch
// the kubeconfig, look up by domain, delete by id or domain. It is a
// second view of the same clusters: a create builds a full spec from the
// tenant's hosted profile and goes through the service's LoadSpec and Provision as
// POST /v1/clusters does; the kubeconfig is /v1's handler.

// HostedProfile is a tenant's defaults for one provider in hosted mode,
// set by an admin (PUT /v1/tenants/{tenant}/hosted-profiles/{provider}):
// what POST /api/clusters's flat body leaves out.
type HostedProfile struct {
	// Credential names the tenant's credential for the provider
	// (spec.provider.credentials.secretRef).
	Credential string `json:"credential"`
	// ManagementCluster names a configured management cluster, and
	// Namespace the namespace there; empty: the service's own (SaaS).
	ManagementCluster string `json:"managementCluster,omitempty"`
	Namespace         string `json:"namespace,omitempty"`
	// Config is spec.provider.config but the region, which the request
	// gives: sshKeyName, image, network, placementGroups (hetzner);
	// sshKeyName, flavor, ami (aws).
	Config map[string]any `json:"config,omitempty"`
	// ControlPlaneType is spec.controlPlane.type.
	ControlPlaneType string `json:"controlPlaneType,omitempty"`
	// Workers are spec.workers.
	Workers map[string]spec.Pool `json:"workers,omitempty"`
	// Bootstrap is spec.bootstrap.
	Bootstrap []spec.Addon `json:"bootstrap,omitempty"`
}

// HostedRequest is POST /api/clusters's body, as the CLI's
// kubehz::build_cluster_payload writes it.
type HostedRequest struct {
	Domain string `json:"domain"`
	// Kind is the CLI's driver: Capi, the only one this service runs.
	Kind string `json:"kind"`
	// Provider is a provider name; the CLI sends its spec.provider as it
	// reads it, so a whole {name, config} object in YAML or JSON text is
	// taken too (its name, and its config.region over Region).
	Provider             string `json:"provider"`
	Region               string `json:"region"`
	KubernetesVersion    string `json:"kubernetesVersion"`
	ControlPlaneReplicas *int32 `json:"controlPlaneReplicas"`
	// Hosting is hosted (or absent); Access is the CLI's kubehz access
	// (none, registered, managed), accepted and ignored.
	Hosting string `json:"hosting"`
	Access  string `json:"access"`
}

// HostedCluster is a cluster as the hosted-mode API shows it.
type HostedCluster struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
	// Status is the CLI's word for the phase: Running for Provisioned,
	// the phase's own name otherwise (Failed, Pending, Provisioning, ...).
	Status               string      `json:"status"`
	Phase                store.Phase `json:"phase"`
	Provider             string      `json:"provider"`
	Region               string      `json:"region,omitempty"`
	KubernetesVersion    string      `json:"kubernetesVersion"`
	ControlPlaneReplicas int32       `json:"controlPlaneReplicas,omitempty"`
	Message              string      `json:"message,omitempty"`
	Warnings             []string    `json:"warnings,omitempty"`
	CreatedAt            time.Time   `json:"createdAt"`
	UpdatedAt            time.Time   `json:"updatedAt"`
}

// hostedStatus maps a phase to the CLI's status words.
func hostedStatus(p store.Phase) string {
	if p == store.PhaseProvisioned {
		return "Running"
	}
	return string(p)
}

// hostedFacts are what the hosted view (and a repeated create) compare:
// the request's parameters as a stored spec has them.
type hostedFacts struct {
	provider, region, version string
	replicas                  int32
}

func factsOf(c store.Cluster) (string, hostedFacts) {
	var capi spec.Capi
	_ = json.Unmarshal(c.Spec, &capi) // a stored spec; its zero value shows as empty
	f := hostedFacts{provider: c.Provider, version: capi.Spec.Kubernetes.Version}
	var cp *spec.ControlPlane
	switch {
	case capi.Spec.HCloud != nil:
		f.region, cp = capi.Spec.HCloud.Region, capi.Spec.HCloud.ControlPlane
	case capi.Spec.AWS != nil:
		f.region, cp = capi.Spec.AWS.Region, capi.Spec.AWS.ControlPlane
	}
	if cp != nil && cp.Replicas != nil {
		f.replicas = *cp.Replicas
	}
	return capi.Spec.Cluster.Domain, f
}

func hostedView(c store.Cluster, raw bool) HostedCluster {
	domain, f := factsOf(c)
	return HostedCluster{
		ID: c.ID.String(), Name: c.Name, Domain: domain, Status: hostedStatus(c.Phase), Phase: c.Phase,
		Provider: f.provider, Region: f.region, KubernetesVersion: f.version, ControlPlaneReplicas: f.replicas,
		Message: service.ForAudience(c.Message, raw), CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
	}
}

// hostedAccess are the CLI's spec.kubehz.access values.
var hostedAccess = []string{"none", "registered", "managed"}

// hostedProviderName reads the request's provider: a name, or the CLI's
// whole spec.provider object as YAML or JSON text (its payload builder
// reads .spec.provider, an object in the current shape). It returns the
// name and the object's config.region, if any.
func hostedProviderName(raw string) (name, region string) {
	raw = strings.TrimSpace(raw)
	if !strings.ContainsAny(raw, ":{\n") {
		return raw, ""
	}
	var obj struct {
		Name   string         `json:"name"`
		Config map[string]any `json:"config"`
	}
	if err := yaml.Unmarshal([]byte(raw), &obj); err != nil || obj.Name == "" {
		return raw, ""
	}
	region, _ = obj.Config["region"].(string)
	return obj.Name, region
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// hostedName derives a cluster's metadata.name from its domain:
// capi-example.lok8s.dev → capi-example-lok8s-dev, shortened with a hash
// of the domain past spec.MaxNameLength. Names are unique among a
// tenant's live clusters, so two creates for one domain cannot both win.
func hostedName(domain string) string {
	name := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(domain), "-"), "-")
	if len(name) <= spec.MaxNameLength && name != "" {
		return name
	}
	sum := sha256.Sum256([]byte(domain))
	suffix := hex.EncodeToString(sum[:4])
	keep := spec.MaxNameLength - len(suffix) - 1
	return strings.Trim(name[:min(len(name), keep)], "-") + "-" + suffix
}

// hostedFields maps the built spec's fields to the request's.
var hostedFields = map[string]string{
	"metadata.name":               "domain",
	"spec.cluster.domain":         "domain",
	"spec.kubernetes.version":     "kubernetesVersion",
	"spec.provider":               "provider",
	"spec.provider.name":          "provider",
	"spec.provider.config.region": "region",
	"spec.controlPlane.replicas":  "controlPlaneReplicas",
}

// hostedProblem names a problem of the built spec by the request's field,
// or, for what the tenant's profile put there, says so.
func hostedProblem(err error, provider string) error {
	var ae *service.Error
	if !errors.As(err, &ae) || len(ae.Fields) == 0 {
		return err
	}
	fields := make([]FieldError, 0, len(ae.Fields))
	for _, f := range ae.Fields {
		if to, ok := hostedFields[f.Field]; ok {
			fields = append(fields, FieldError{Field: to, Message: f.Message})
			continue
		}
		fields = append(fields, FieldError{Field: f.Field, Message: fmt.Sprintf(
			"%s (set by the tenant's hosted profile for %s: PUT /v1/tenants/{tenant}/hosted-profiles/%s)", f.Message, provider, provider)})
	}
	service.SortFields(fields)
	out := *ae
	out.Fields = fields
	return &out
}

// hostedSpec checks a request and builds the document POST /v1/clusters
// would take for it, in the current shape, from the tenant's profile.
func (s *Server) hostedSpec(r *http.Request, in HostedRequest) ([]byte, string, hostedFacts, []string, error) {
	var fields []FieldError
	var warnings []string
	name, objRegion := hostedProviderName(in.Provider)
	if name == "" {
		name = spec.ProviderHetzner // the CLI's default
	}
	region := in.Region
	if objRegion != "" {
		region = objRegion
	}
	if in.Domain == "" {
		fields = append(fields, FieldError{Field: "domain", Message: "required"})
	}
	if in.Kind != "" && in.Kind != spec.Kind {
		fields = append(fields, FieldError{Field: "kind", Message: fmt.Sprintf(
			"this service provisions %s clusters (Cluster API) only, not %s", spec.Kind, in.Kind)})
	}
	if in.KubernetesVersion == "" {
		fields = append(fields, FieldError{Field: "kubernetesVersion", Message: "required"})
	}
	if in.Hosting != "" && in.Hosting != "hosted" {
		fields = append(fields, FieldError{Field: "hosting", Message: "must be hosted: this API provisions clusters it hosts"})
	}
	switch {
	case in.Access != "" && !slices.Contains(hostedAccess, in.Access):
		fields = append(fields, FieldError{Field: "access", Message: "must be one of " + strings.Join(hostedAccess, ", ")})
	case in.Access != "" && in.Access != "none":
		warnings = append(warnings, "access: ignored: this service runs no kubehz agent on the cluster")
	}
	if len(fields) > 0 {
		service.SortFields(fields)
		return nil, "", hostedFacts{}, nil, service.Invalid(fields...)
	}
	raw, err := s.store.HostedProfile(r.Context(), principal(r.Context()).TenantID, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", hostedFacts{}, nil, service.Invalid(FieldError{Field: "provider", Message: fmt.Sprintf(
			"the tenant has no hosted profile for provider %q: an admin sets one with PUT /v1/tenants/{tenant}/hosted-profiles/%s", name, name)})
	}
	if err != nil {
		return nil, "", hostedFacts{}, nil, err
	}
	var profile HostedProfile
	if err := json.Unmarshal(raw, &profile); err != nil {
		return nil, "", hostedFacts{}, nil, fmt.Errorf("hosted profile %s: %w", name, err)
	}
	config := map[string]any{}
	for k, v := range profile.Config {
		config[k] = v
	}
	config["region"] = region
	cluster := map[string]any{"domain": in.Domain}
	if profile.Namespace != "" {
		cluster["namespace"] = profile.Namespace
	}
	controlPlane := map[string]any{"type": profile.ControlPlaneType}
	if in.ControlPlaneReplicas != nil {
		controlPlane["replicas"] = *in.ControlPlaneReplicas
	}
	doc := map[string]any{
		"apiVersion": spec.APIVersion, "kind": spec.Kind,
		"metadata": map[string]any{"name": hostedName(in.Domain)},
		"spec": map[string]any{
			"kubernetes": map[string]any{"version": in.KubernetesVersion},
			"cluster":    cluster,
			"provider": map[string]any{"name": name, "config": config,
				"credentials": map[string]any{"secretRef": profile.Credential}},
			"controlPlane": controlPlane,
		},
	}
	body := doc["spec"].(map[string]any)
	if profile.ManagementCluster != "" {
		body["managementCluster"] = map[string]any{"domain": profile.ManagementCluster}
	}
	if len(profile.Workers) > 0 {
		body["workers"] = profile.Workers
	}
	if len(profile.Bootstrap) > 0 {
		body["bootstrap"] = profile.Bootstrap
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, "", hostedFacts{}, nil, fmt.Errorf("hosted spec: %w", err)
	}
	f := hostedFacts{provider: name, region: region, version: in.KubernetesVersion, replicas: spec.DefaultProviderControlPlaneReplicas}
	if in.ControlPlaneReplicas != nil {
		f.replicas = *in.ControlPlaneReplicas
	}
	return data, name, f, warnings, nil
}

// sameHosted reports whether an existing cluster is what a request asks for.
func sameHosted(c store.Cluster, want hostedFacts) bool {
	_, got := factsOf(c)
	return got == want
}

// existingHosted answers a create for a domain the tenant has a live
// cluster for: that cluster (200) when it matches the request, else 409.
func (s *Server) existingHosted(w http.ResponseWriter, r *http.Request, c store.Cluster, want hostedFacts, warnings []string) {
	if !sameHosted(c, want) {
		domain, got := factsOf(c)
		s.writeProblem(w, r, service.Conflict(fmt.Sprintf(
			"domain %s already has cluster %s (provider %s, region %s, Kubernetes %s, %d control-plane machines); delete it first to create another",
			domain, c.ID, got.provider, got.region, got.version, got.replicas)))
		return
	}
	view := hostedView(c, seesInternals(r))
	view.Warnings = warnings
	writeJSON(w, http.StatusOK, view)
}

// hostedCreate is POST /api/clusters. A domain the tenant already has a
// live cluster for answers that cluster when the parameters match (the
// CLI sends no Idempotency-Key and may repeat itself), and 409 when not.
func (s *Server) hostedCreate(w http.ResponseWriter, r *http.Request) {
	in, err := decodeStrict[HostedRequest](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	body, provider, want, warnings, err := s.hostedSpec(r, in)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	warn(w, warnings)
	tenant := principal(r.Context()).TenantID
	existing, err := s.store.ClustersByDomain(r.Context(), tenant, in.Domain)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if len(existing) > 0 {
		s.existingHosted(w, r, existing[0], want, warnings)
		return
	}
	loaded, err := s.svc.LoadSpec(r.Context(), principal(r.Context()), body)
	if err != nil {
		s.writeProblem(w, r, hostedProblem(err, provider))
		return
	}
	ignored := service.Ignored(loaded.Doc)
	warn(w, ignored)
	warnings = append(warnings, ignored...)
	hash := sha256.Sum256(body)
	c, _, err := s.svc.Provision(r.Context(), principal(r.Context()), loaded, "", hash[:])
	if isConflict(err) {
		// A concurrent create for the domain won the name.
		if existing, lerr := s.store.ClustersByDomain(r.Context(), tenant, in.Domain); lerr == nil && len(existing) > 0 {
			s.existingHosted(w, r, existing[0], want, warnings)
			return
		}
	}
	if err != nil {
		s.writeProblem(w, r, hostedProblem(err, provider))
		return
	}
	w.Header().Set("Location", "/api/clusters/"+c.ID.String())
	view := hostedView(c, seesInternals(r))
	view.Warnings = warnings
	writeJSON(w, http.StatusAccepted, view)
}

func isConflict(err error) bool {
	var ae *service.Error
	return errors.As(err, &ae) && ae.Status == http.StatusConflict
}

// hostedCluster loads the caller's live cluster {id}; 404 for another
// tenant's, a deleted one, or an id that is not one.
func (s *Server) hostedCluster(r *http.Request) (store.Cluster, error) {
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		return store.Cluster{}, service.NotFound(fmt.Sprintf("no cluster with id %q", raw))
	}
	c, err := s.store.ClusterOfTenant(r.Context(), principal(r.Context()).TenantID, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.DeletedAt != nil) {
		return store.Cluster{}, service.NotFound(fmt.Sprintf("no cluster with id %s", id))
	}
	return c, err
}

// hostedGet is GET /api/clusters/{id}.
func (s *Server) hostedGet(w http.ResponseWriter, r *http.Request) {
	c, err := s.hostedCluster(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, hostedView(c, seesInternals(r)))
}

// hostedKubeconfig is GET /api/clusters/{id}/kubeconfig: /v1's kubeconfig
// (raw YAML) of the cluster the id names.
func (s *Server) hostedKubeconfig(w http.ResponseWriter, r *http.Request) {
	c, err := s.hostedCluster(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	chi.RouteContext(r.Context()).URLParams.Add("name", c.Name)
	s.clusterKubeconfig(w, r)
}

// hostedDomain reads ?domain=, which GET and DELETE /api/clusters need.
func hostedDomain(r *http.Request) (string, error) {
	domain := r.URL.Query().Get("domain")
	if domain == "" {
		return "", service.Invalid(FieldError{Field: "domain", Message: "required: the cluster's domain (spec.cluster.domain)"})
	}
	return domain, nil
}

// hostedList is GET /api/clusters?domain=D: the tenant's live clusters of
// that domain, as an array ([] when none).
func (s *Server) hostedList(w http.ResponseWriter, r *http.Request) {
	_, clusters, err := s.domainClusters(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out := make([]HostedCluster, 0, len(clusters))
	for _, c := range clusters {
		out = append(out, hostedView(c, seesInternals(r)))
	}
	writeJSON(w, http.StatusOK, out)
}

// domainClusters reads ?domain= and the tenant's live clusters of it.
func (s *Server) domainClusters(r *http.Request) (string, []store.Cluster, error) {
	domain, err := hostedDomain(r)
	if err != nil {
		return "", nil, err
	}
	clusters, err := s.store.ClustersByDomain(r.Context(), principal(r.Context()).TenantID, domain)
	return domain, clusters, err
}

// deprovision starts deleting the tenant's live cluster c, as DELETE
// /v1/clusters/{name} does.
func (s *Server) deprovision(r *http.Request, c store.Cluster) (store.Cluster, error) {
	name := c.Name
	c, _, err := s.svc.Deprovision(r.Context(), principal(r.Context()), name)
	if errors.Is(err, store.ErrNotFound) {
		return c, service.NotFound(fmt.Sprintf("no cluster named %q", name))
	}
	return c, err
}

// hostedDelete is DELETE /api/clusters/{id}.
func (s *Server) hostedDelete(w http.ResponseWriter, r *http.Request) {
	c, err := s.hostedCluster(r)
	if err == nil {
		c, err = s.deprovision(r, c)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, hostedView(c, seesInternals(r)))
}

// hostedDeleteByDomain is DELETE /api/clusters?domain=D: every live
// cluster of the domain (one, as creates keep it), 404 when none.
func (s *Server) hostedDeleteByDomain(w http.ResponseWriter, r *http.Request) {
	domain, clusters, err := s.domainClusters(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if len(clusters) == 0 {
		s.writeProblem(w, r, service.NotFound(fmt.Sprintf("no cluster with domain %q", domain)))
		return
	}
	out := make([]HostedCluster, 0, len(clusters))
	for _, c := range clusters {
		c, err := s.deprovision(r, c)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		out = append(out, hostedView(c, seesInternals(r)))
	}
	writeJSON(w, http.StatusAccepted, out)
}

// hostedRegister is POST /api/clusters/register, where the CLI announces
// a self-hosted cluster for a later claim in kubehz's dashboard (by its
// SSH key fingerprint, checked against the user's Hetzner Cloud keys).
// This service provisions and hosts clusters; it does not adopt ones it
// did not create, so it refuses, documented: 501, problem
// not-implemented. The CLI treats any failure there as a warning and
// provisions on without kubehz integration (kubehz::register_cluster).
func (s *Server) hostedRegister(w http.ResponseWriter, r *http.Request) {
	s.writeProblem(w, r, &service.Error{Status: http.StatusNotImplemented, Slug: "not-implemented", Title: "Not implemented",
		Detail: "this service does not register self-hosted clusters: use spec.kubehz.hosting: hosted to have it provision one, " +
			"or spec.kubehz.access: none for a self-hosted one"})
}

// getHostedProfile is GET /v1/tenants/{tenant}/hosted-profiles/{provider} (admin).
func (s *Server) getHostedProfile(w http.ResponseWriter, r *http.Request) {
	t, err := s.tenantParam(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	provider := chi.URLParam(r, "provider")
	raw, err := s.store.HostedProfile(r.Context(), t.ID, provider)
	if errors.Is(err, store.ErrNotFound) {
		err = service.NotFound(fmt.Sprintf("tenant %s has no hosted profile for %q", t.Name, provider))
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}

// putHostedProfile is PUT /v1/tenants/{tenant}/hosted-profiles/{provider}
// (admin): the tenant's defaults for hosted creates of that provider. The
// credential must be the tenant's and of the provider; the full spec is
// checked on each create.
func (s *Server) putHostedProfile(w http.ResponseWriter, r *http.Request) {
	t, err := s.tenantParam(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	provider := chi.URLParam(r, "provider")
	in, err := decodeStrict[HostedProfile](r.Body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	var fields []FieldError
	if in.Credential == "" {
		fields = append(fields, FieldError{Field: "credential", Message: "required: the tenant's credential for " + provider})
	} else {
		cred, err := s.store.Credential(r.Context(), t.ID, in.Credential)
		switch {
		case errors.Is(err, store.ErrNotFound):
			fields = append(fields, FieldError{Field: "credential", Message: fmt.Sprintf("tenant %s has no credential %q", t.Name, in.Credential)})
		case err != nil:
			s.writeProblem(w, r, err)
			return
		case cred.Provider != provider:
			fields = append(fields, FieldError{Field: "credential", Message: fmt.Sprintf("credential %q is for provider %s, not %s", in.Credential, cred.Provider, provider)})
		}
	}
	if _, set := in.Config["region"]; set {
		fields = append(fields, FieldError{Field: "config.region", Message: "each create gives the region"})
	}
	if in.ManagementCluster != "" && !s.ManagementClusterKnown(in.ManagementCluster) {
		fields = append(fields, FieldError{Field: "managementCluster", Message: fmt.Sprintf("no management cluster %q is configured on this service", in.ManagementCluster)})
	}
	if len(fields) > 0 {
		service.SortFields(fields)
		s.writeProblem(w, r, service.Invalid(fields...))
		return
	}
	raw, err := json.Marshal(in)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if err := s.store.SetHostedProfile(r.Context(), s.actor(r), t.ID, provider, raw); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
}
