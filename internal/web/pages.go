package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

var funcs = template.FuncMap{
	"age":      age,
	"exact":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"duration": stepDuration,
	"path":     pathEscape,
	"expired":  func(t *time.Time) bool { return t != nil && !t.After(time.Now()) },
	// The guided form's inputs (newcluster.go).
	"textField":   textField,
	"numberField": numberField,
	"onOffField":  onOffField,
}

// age is how long ago t was, shortly ("3m", "2h", "5d").
func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func stepDuration(start, end *time.Time) string {
	if start == nil {
		return ""
	}
	e := time.Now()
	if end != nil {
		e = *end
	}
	return e.Sub(*start).Round(100 * time.Millisecond).String()
}

type clustersData struct {
	// Rows are the clusters shown, each rendered by the part cluster_row.
	Rows   []service.ClusterView
	Phases []store.Phase
	Phase  string
	Query  string
}

func (h *Handler) clustersPage(w http.ResponseWriter, r *http.Request) {
	d := clustersData{Phases: store.Phases, Phase: r.URL.Query().Get("phase"), Query: strings.TrimSpace(r.URL.Query().Get("q"))}
	page := pageData{Title: "Clusters", Nav: "clusters", Notice: notice(r), Warnings: h.carriedWarnings(r), Stream: "/v1/events", Data: &d}
	list, err := h.cfg.Service.ListClusters(r.Context(), principal(r), service.ClusterQuery{Limit: service.MaxPageSize, Phase: store.Phase(d.Phase)})
	if err != nil {
		page.Problem = h.problem(r, err)
		h.render(w, r, http.StatusOK, "clusters", page)
		return
	}
	for _, c := range list.Items {
		if d.Query != "" && !strings.Contains(c.Name, d.Query) {
			continue
		}
		d.Rows = append(d.Rows, c)
	}
	h.render(w, r, http.StatusOK, "clusters", page)
}

// clusterRow is the clusters list's line of one cluster alone (the part
// cluster_row), for the list's script to insert when the cluster appears
// on the event stream; another tenant's cluster is not found.
func (h *Handler) clusterRow(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	c, err := h.cfg.Service.Cluster(r.Context(), principal(r), name)
	if err != nil {
		h.renderClusterError(w, r, name, err)
		return
	}
	h.renderPart(w, r, "cluster_row", c)
}

// renderClusterError is the page of a cluster that could not be read: not
// found (another tenant's too), or the service's error.
func (h *Handler) renderClusterError(w http.ResponseWriter, r *http.Request, name string, err error) {
	prob := h.problem(r, err)
	h.render(w, r, prob.Status, "error", pageData{Title: "Cluster " + name, Nav: "clusters", Problem: prob})
}

type clusterData struct {
	Cluster    service.ClusterView
	Status     service.StatusView
	Operations []service.OperationView
	Pools      []poolRow
	// SpecPools are the worker pools the spec declares, for the scale form.
	SpecPools []specPool
	// SpecYAML is the spec with secret-looking values redacted.
	SpecYAML  string
	DeleteErr string
}

// specPool is a worker pool of a provider section of the spec.
type specPool struct {
	Section, Name string
	Replicas      int64
}

// specPools lists the worker pools of every provider section of a spec
// (any spec.<section>.workers map), by section and name, and those of a
// spec of the CLI's current shape (spec.workers), with section "".
func specPools(spec []byte) []specPool {
	var doc struct {
		Spec map[string]json.RawMessage `json:"spec"`
	}
	if json.Unmarshal(spec, &doc) != nil {
		return nil
	}
	var out []specPool
	for section, raw := range doc.Spec {
		var s struct {
			Workers map[string]struct {
				Replicas int64 `json:"replicas"`
			} `json:"workers"`
		}
		if section == "workers" {
			raw, section = json.RawMessage(`{"workers":`+string(raw)+`}`), ""
		}
		if json.Unmarshal(raw, &s) != nil {
			continue
		}
		for name, p := range s.Workers {
			out = append(out, specPool{Section: section, Name: name, Replicas: p.Replicas})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Section != out[j].Section {
			return out[i].Section < out[j].Section
		}
		return out[i].Name < out[j].Name
	})
	return out
}

type poolRow struct {
	Name string
	service.ReplicasView
}

// maxShownOperations bounds the timelines on a cluster's page.
const maxShownOperations = 5

func (h *Handler) clusterPage(w http.ResponseWriter, r *http.Request) {
	h.renderCluster(w, r, http.StatusOK, pageData{Notice: notice(r)}, "")
}

func (h *Handler) renderCluster(w http.ResponseWriter, r *http.Request, status int, page pageData, deleteErr string) {
	name := chi.URLParam(r, "name")
	svc, p := h.cfg.Service, principal(r)
	c, err := svc.Cluster(r.Context(), p, name)
	if err != nil {
		h.renderClusterError(w, r, name, err)
		return
	}
	d := clusterData{Cluster: c, DeleteErr: deleteErr}
	if d.Status, err = svc.Status(r.Context(), p, name); err != nil {
		page.Problem = h.problem(r, err)
	}
	if d.Operations, err = svc.Operations(r.Context(), p, name); err != nil {
		page.Problem = h.problem(r, err)
	}
	if len(d.Operations) > maxShownOperations {
		d.Operations = d.Operations[:maxShownOperations]
	}
	for n, p := range d.Status.Pools {
		d.Pools = append(d.Pools, poolRow{Name: n, ReplicasView: p})
	}
	sort.Slice(d.Pools, func(i, j int) bool { return d.Pools[i].Name < d.Pools[j].Name })
	if y, err := yaml.JSONToYAML(redactSpec(c.Spec)); err == nil {
		d.SpecYAML = string(y)
	}
	d.SpecPools = specPools(c.Spec)
	page.Title, page.Nav, page.Data = "Cluster "+c.Name, "clusters", &d
	page.Stream, page.Cluster = "/v1/clusters/"+pathEscape(name)+"/events", c.Name
	h.render(w, r, status, "cluster", page)
}

func (h *Handler) retryCluster(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if _, err := h.cfg.Service.Retry(r.Context(), principal(r), name); err != nil {
		h.renderClusterProblem(w, r, err)
		return
	}
	http.Redirect(w, r, "/clusters/"+pathEscape(name)+"?done=retried", http.StatusSeeOther)
}

// renderClusterProblem shows the cluster's page with the problem a form's
// action met.
func (h *Handler) renderClusterProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := h.problem(r, err)
	h.renderCluster(w, r, p.Status, pageData{Problem: p}, "")
}

// scalePool sets one pool's replicas: a JSON merge patch of the spec,
// which the service validates before it starts the update.
func (h *Handler) scalePool(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	// <section>/<pool>, or /<pool> for spec.workers (the CLI's current shape)
	section, pool, found := strings.Cut(r.PostFormValue("pool"), "/")
	replicas, err := strconv.ParseInt(r.PostFormValue("replicas"), 10, 32)
	if err != nil || !found || pool == "" {
		h.renderCluster(w, r, http.StatusUnprocessableEntity, pageData{Problem: &service.Problem{Title: "Invalid request",
			Detail: "choose a pool and a whole number of replicas"}}, "")
		return
	}
	workers := map[string]any{"workers": map[string]any{pool: map[string]any{"replicas": replicas}}}
	var specPatch any = map[string]any{section: workers}
	if section == "" {
		specPatch = workers
	}
	patch, _ := json.Marshal(map[string]any{"spec": specPatch})
	if _, err := h.cfg.Service.Patch(r.Context(), principal(r), name, patch, ""); err != nil {
		h.renderClusterProblem(w, r, err)
		return
	}
	http.Redirect(w, r, "/clusters/"+pathEscape(name)+"?done=scaling", http.StatusSeeOther)
}

func (h *Handler) deleteCluster(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if r.PostFormValue("confirm") != name {
		h.renderCluster(w, r, http.StatusUnprocessableEntity, pageData{}, fmt.Sprintf("Type %q exactly to delete it.", name))
		return
	}
	if _, err := h.cfg.Service.Delete(r.Context(), principal(r), name); err != nil {
		h.renderClusterProblem(w, r, err)
		return
	}
	http.Redirect(w, r, "/?done=deleting", http.StatusSeeOther)
}

type newClusterData struct {
	Mode string
	// Spec is the YAML editor's text; in form mode, the spec the form made.
	Spec string
	Form clusterForm
	// Catalog offers the providers and addons; Credentials the tenant's.
	Catalog     service.CatalogView
	Credentials []service.CredentialView
	// FieldErrors are the API's errors by form input id; Lines the YAML
	// editor's text with its errors beside their lines.
	FieldErrors map[string][]string
	Lines       []specLine
	Valid       bool
}

// Selected reports whether the form chose addon.
func (d *newClusterData) Selected(addon string) bool { return slices.Contains(d.Form.Addons, addon) }

func (h *Handler) newClusterPage(w http.ResponseWriter, r *http.Request) {
	d := &newClusterData{Mode: modeForm}
	if r.URL.Query().Get("mode") == modeYAML {
		d.Mode = modeYAML
	}
	page := pageData{Title: "New cluster", Nav: "new", Data: d}
	page.Problem = h.loadChoices(r, d)
	d.Form = defaultClusterForm(d.Catalog, d.Credentials)
	h.render(w, r, http.StatusOK, "new", page)
}

// loadChoices fills in what the form offers: providers, addons and the
// tenant's credentials.
func (h *Handler) loadChoices(r *http.Request, d *newClusterData) *service.Problem {
	d.Catalog = h.cfg.Service.Catalog(r.Context())
	creds, err := h.cfg.Service.Credentials(r.Context(), principal(r))
	if err != nil {
		return h.problem(r, err)
	}
	d.Credentials = creds.Items
	return nil
}

// createCluster checks the spec (typed in the YAML editor, or made from
// the guided form) with ?dryRun=true, putting each error beside its field
// or line, and, when it is valid and the person asked to create it,
// submits it.
func (h *Handler) createCluster(w http.ResponseWriter, r *http.Request) {
	d := &newClusterData{Mode: modeYAML, Spec: r.PostFormValue("spec")}
	page := pageData{Title: "New cluster", Nav: "new", Data: d}
	if p := h.loadChoices(r, d); p != nil {
		page.Problem = p
		h.render(w, r, p.Status, "new", page)
		return
	}
	action := r.PostFormValue("action")
	var inputs map[string]string
	if r.PostFormValue("mode") == modeForm {
		d.Mode, d.Form = modeForm, clusterFormOf(r)
		inputs = d.Form.formFields()
		doc, err := d.Form.spec(d.Form.section(d.Catalog))
		if err != nil {
			page.Problem = &service.Problem{Title: "The form could not be written as a spec", Detail: err.Error()}
			h.render(w, r, http.StatusUnprocessableEntity, "new", page)
			return
		}
		d.Spec = string(doc)
		if action == "edit" { // carry the form's spec over to the YAML editor
			d.Mode = modeYAML
			h.render(w, r, http.StatusOK, "new", page)
			return
		}
	}
	checked, err := h.checkSpec(r, []byte(d.Spec))
	if err == nil && action == "create" {
		var created service.ClusterView
		if created, err = h.cfg.Service.Create(r.Context(), principal(r), []byte(d.Spec), ""); err == nil {
			http.Redirect(w, r, h.carryWarnings(r, "/?done=created", created.Warnings), http.StatusSeeOther)
			return
		}
	}
	if err != nil {
		p := h.problem(r, err)
		page.Problem = placeProblem(d, p, inputs)
		h.render(w, r, p.Status, "new", page)
		return
	}
	d.Valid = true
	page.Notice = "The spec is valid. Create it when ready."
	page.Warnings = checked.Warnings
	h.render(w, r, http.StatusOK, "new", page)
}

// maxSpecBytes bounds a spec the form submits, as the API bounds request
// bodies (api.DefaultMaxBodyBytes).
const maxSpecBytes = api.DefaultMaxBodyBytes

// checkSpec is the service's dry run of a spec typed or made by the form:
// one that looks like JSON (it starts with "{") must be JSON, not merely
// YAML, as the API holds a body sent as application/json to.
func (h *Handler) checkSpec(r *http.Request, doc []byte) (service.DryRunView, error) {
	if len(doc) > maxSpecBytes {
		return service.DryRunView{}, &service.Error{Status: http.StatusRequestEntityTooLarge, Slug: "body-too-large", Title: "Request body too large",
			Detail: fmt.Sprintf("the spec must be at most %d bytes", maxSpecBytes)}
	}
	if bytes.HasPrefix(bytes.TrimSpace(doc), []byte("{")) {
		if err := spec.CheckJSON(doc); err != nil {
			return service.DryRunView{}, err
		}
	}
	return h.cfg.Service.Check(r.Context(), principal(r), doc)
}

// placeProblem puts the API's field errors beside the form's inputs or the
// YAML editor's lines, and returns the problem with only those it could
// not place, to be shown above the form.
func placeProblem(d *newClusterData, p *service.Problem, inputs map[string]string) *service.Problem {
	shown := *p
	if d.Mode == modeForm {
		d.FieldErrors, shown.Errors = placeErrors(p.Errors, inputs)
	} else {
		lines, rest := annotateSpec(d.Spec, p)
		if slices.ContainsFunc(lines, func(l specLine) bool { return len(l.Errors) > 0 }) {
			d.Lines, shown.Errors = lines, rest
			shown.Line, shown.Column = 0, 0 // a syntax error is shown on its line
		}
	}
	switch placed := len(p.Errors) - len(shown.Errors); {
	case placed > 0 && len(shown.Errors) == 0:
		shown.Detail = "Fix what is marked beside the " + noun(d.Mode) + " (" + plural(placed, "error", "errors") + "), then check again."
	case placed > 0:
		shown.Detail = plural(placed, "error is", "errors are") + " marked beside the " + noun(d.Mode) + "; these are not:"
	}
	return &shown
}

func noun(mode string) string {
	if mode == modeForm {
		return "fields"
	}
	return "spec's lines"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

type credentialsData struct {
	Items []service.CredentialView
	// Providers are the credential providers and the fields each takes.
	Providers []service.CredentialProviderView
	// Name and Provider refill the form after an error (secrets never do).
	Name, Provider string
}

func (h *Handler) credentialsPage(w http.ResponseWriter, r *http.Request) {
	h.renderCredentials(w, r, http.StatusOK, pageData{Notice: notice(r)}, &credentialsData{})
}

func (h *Handler) renderCredentials(w http.ResponseWriter, r *http.Request, status int, page pageData, d *credentialsData) {
	list, err := h.cfg.Service.Credentials(r.Context(), principal(r))
	if err != nil && page.Problem == nil {
		page.Problem = h.problem(r, err)
	}
	d.Items = list.Items
	d.Providers = h.cfg.Service.Catalog(r.Context()).Credentials
	page.Title, page.Nav, page.Data = "Credentials", "credentials", d
	h.render(w, r, status, "credentials", page)
}

// putCredential adds or replaces a credential: the provider and its secret
// fields, one KEY=VALUE a line.
func (h *Handler) putCredential(w http.ResponseWriter, r *http.Request) {
	d := &credentialsData{Name: strings.TrimSpace(r.PostFormValue("name")), Provider: strings.TrimSpace(r.PostFormValue("provider"))}
	body := map[string]string{"provider": d.Provider}
	var bad []service.FieldError
	for i, line := range strings.Split(r.PostFormValue("fields"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			bad = append(bad, service.FieldError{Field: fmt.Sprintf("fields line %d", i+1), Message: "write KEY=VALUE"})
			continue
		}
		body[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if len(bad) > 0 {
		h.renderCredentials(w, r, http.StatusUnprocessableEntity, pageData{Problem: &service.Problem{Title: "Invalid request", Errors: bad}}, d)
		return
	}
	if d.Name == "" {
		h.renderCredentials(w, r, http.StatusUnprocessableEntity, pageData{Problem: &service.Problem{Title: "Invalid request",
			Errors: []service.FieldError{{Field: "name", Message: "is required"}}}}, d)
		return
	}
	if _, _, err := h.cfg.Service.PutCredential(r.Context(), principal(r), d.Name, body); err != nil {
		p := h.problem(r, err)
		h.renderCredentials(w, r, p.Status, pageData{Problem: p}, d)
		return
	}
	http.Redirect(w, r, "/credentials?done=cred-saved", http.StatusSeeOther)
}

func (h *Handler) deleteCredential(w http.ResponseWriter, r *http.Request) {
	if err := h.cfg.Service.DeleteCredential(r.Context(), principal(r), chi.URLParam(r, "name")); err != nil {
		p := h.problem(r, err)
		h.renderCredentials(w, r, p.Status, pageData{Problem: p}, &credentialsData{})
		return
	}
	http.Redirect(w, r, "/credentials?done=cred-delete", http.StatusSeeOther)
}
