package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Shape is the form a document was written in. Both are
// cluster.lok8s.dev/v1beta1 Capi and normalise to the same Capi; Render
// writes a Capi back in either.
type Shape string

const (
	// ShapeSections is the seed's form: the provider's settings, control
	// plane and pools in a provider section (spec.hcloud, spec.aws), the
	// credential in spec.credentials.secretName.
	ShapeSections Shape = "sections"
	// ShapeProvider is the lok8s CLI's current form (its
	// operator/crds/schema/capi.schema.yaml): spec.provider {name, config,
	// configRef, credentials {envVars, secretRef}}, spec.controlPlane and
	// spec.workers at the top level, spec.gitops.secretRef. A document
	// with spec.provider, or with spec.controlPlane or spec.workers, is of
	// this shape.
	ShapeProvider Shape = "provider"
)

// Shapes lists the shapes, for messages and validation.
var Shapes = []Shape{ShapeSections, ShapeProvider}

// DefaultProviderControlPlaneReplicas is spec.controlPlane.replicas when a
// document of ShapeProvider leaves it out: the CLI's schema default (1),
// where the seed's form defaults to DefaultControlPlaneReplicas (3).
const DefaultProviderControlPlaneReplicas = 1

// Ignored is a field the document may hold that this service accepts and
// does not use (it means something to the lok8s CLI or a Kubernetes API
// server only); responses report each, never silently.
type Ignored struct {
	Field  string
	Reason string
}

func (i Ignored) String() string { return i.Field + ": ignored: " + i.Reason }

// Document is a parsed spec with what Parse learned about the document
// itself: its shape and the fields it ignored.
type Document struct {
	Capi    *Capi
	Shape   Shape
	Ignored []Ignored
	// renames maps a field of the normalised spec to the field the
	// document wrote it as (spec.hcloud.region → spec.provider.config.region).
	renames []rename
	// noProvider: spec.provider named no provider, which was reported.
	noProvider bool
}

type rename struct{ from, to string }

// Field returns the path of a field of the normalised spec (as Validate
// and FieldErrors name it) as the document wrote it: unchanged for
// ShapeSections; spec.provider.config.region for spec.hcloud.region,
// spec.controlPlane.type for spec.hcloud.controlPlane.type and so on for
// ShapeProvider.
func (d *Document) Field(path string) string {
	if d == nil {
		return path
	}
	if path == "spec" && d.Shape == ShapeProvider {
		return "spec.provider"
	}
	for _, r := range d.renames {
		if within(path, r.from) {
			return r.to + path[len(r.from):]
		}
	}
	return path
}

func (d *Document) fieldErrors(errs FieldErrors) FieldErrors {
	out := errs[:0]
	for _, e := range errs {
		if e.Field == "spec" && d.noProvider {
			continue // spec.provider's own error says it
		}
		e.Field = d.Field(e.Field)
		out = append(out, e)
	}
	return out
}

// metadataIgnored are the Kubernetes ObjectMeta fields a document may
// carry beside metadata.name (one exported from a cluster has them); any
// other field of metadata is still an unknown field.
var metadataIgnored = []string{
	"namespace", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp",
	"deletionTimestamp", "deletionGracePeriodSeconds", "generateName", "finalizers", "ownerReferences",
	"managedFields", "selfLink",
}

// specIgnored are the spec sections the CLI reads and this service has no
// use for, with why.
var specIgnored = map[string]string{
	"kubehz": "the CLI's hosting and access settings; this service is the host",
	"runner": "the CLI's runner settings; this service runs the provisioning itself",
	"oidc":   "this service does not configure an OIDC issuer on the API server",
	"etcd":   "this service does not configure etcd encryption",
}

// providerSections maps a provider name of spec.provider.name to the
// normalised section its config becomes, for the built-in providers.
var providerSections = map[string]string{ProviderHetzner: "hcloud", ProviderAWS: "aws"}

// sectionProviderNames is providerSections reversed.
var sectionProviderNames = map[string]string{"hcloud": ProviderHetzner, "aws": ProviderAWS}

// ProviderName is the spec.provider.name of ShapeProvider that selects
// the provider section section: hetzner for hcloud, aws for aws, and the
// section's own name for the other provider sections (ParseSections'
// sections).
func ProviderName(section string) string {
	if n, ok := sectionProviderNames[section]; ok {
		return n
	}
	return section
}

// normalise rewrites a generic document of either shape, in place, into
// the seed's form that Capi decodes, and returns what it learned. Errors
// it finds name the document's own fields; fields the decoder reports
// afterwards are mapped back with Document.Field.
func (d *decoder) normalise(root map[string]any) *Document {
	doc := &Document{Shape: ShapeSections}
	ignore := func(field, reason string) { doc.Ignored = append(doc.Ignored, Ignored{Field: field, Reason: reason}) }
	defer func() {
		slices.SortStableFunc(doc.Ignored, func(a, b Ignored) int { return strings.Compare(a.Field, b.Field) })
	}()

	if _, ok := root["status"]; ok {
		ignore("status", "the service reports a cluster's status; a submitted one is dropped")
		delete(root, "status")
	}
	if meta, ok := root["metadata"].(map[string]any); ok {
		for _, k := range sortedKeys(meta) {
			if slices.Contains(metadataIgnored, k) {
				ignore("metadata."+k, "only metadata.name is used")
				delete(meta, k)
			}
		}
	}
	s, ok := root["spec"].(map[string]any)
	if !ok {
		return doc
	}
	for _, k := range sortedKeys(specIgnored) {
		if _, set := s[k]; set {
			if _, isObj := s[k].(map[string]any); !isObj && s[k] != nil {
				d.fail("spec."+k, "must be an object"+describe(s[k]))
			} else {
				ignore("spec."+k, specIgnored[k])
			}
			delete(s, k)
		}
	}
	if mc, ok := s["managementCluster"].(map[string]any); ok {
		if local, set := mc["local"]; set {
			if _, isBool := local.(bool); !isBool && local != nil {
				d.fail("spec.managementCluster.local", "must be a boolean (true or false)"+describe(local))
			} else {
				ignore("spec.managementCluster.local", "the CLI creates a local kind management cluster; this service uses the management cluster named by spec.managementCluster.domain")
			}
			delete(mc, "local")
		}
	}

	_, hasProvider := s["provider"]
	_, hasCP := s["controlPlane"]
	_, hasWorkers := s["workers"]
	if !hasProvider && !hasCP && !hasWorkers {
		return doc
	}
	doc.Shape = ShapeProvider
	d.normaliseProvider(doc, s, ignore)
	return doc
}

// normaliseProvider turns spec.provider, spec.controlPlane and spec.workers
// into a provider section, spec.provider.credentials.secretRef into
// spec.credentials.secretName, spec.gitops.secretRef into
// spec.gitops.secretName and spec.hrobot.hosts[].serverNumber into
// serverID.
func (d *decoder) normaliseProvider(doc *Document, s map[string]any, ignore func(field, reason string)) {
	var legacy []string
	for _, name := range append(slices.Clone(BuiltinSections), d.sections...) {
		if name == "hrobot" {
			continue
		}
		if _, set := s[name]; set {
			legacy = append(legacy, name)
		}
	}
	slices.Sort(legacy)
	legacy = slices.Compact(legacy)

	section := ""
	hybrid := false
	var config map[string]any
	if raw, set := s["provider"]; set {
		delete(s, "provider")
		p, ok := raw.(map[string]any)
		if !ok {
			d.fail("spec.provider", "must be an object with name and config"+describe(raw))
			doc.noProvider = true
			return
		}
		var movedSecret bool
		section, config, movedSecret = d.providerObject(p, s, ignore)
		if movedSecret {
			doc.renames = append(doc.renames, rename{"spec.credentials.secretName", "spec.provider.credentials.secretRef"})
		}
		for _, name := range legacy {
			d.fail("spec."+name, "set the provider's settings once, in spec.provider.config: spec."+name+" is the deprecated form")
		}
		if section == "" {
			doc.noProvider = true
			delete(s, "controlPlane")
			delete(s, "workers")
			return
		}
	} else {
		// spec.controlPlane or spec.workers beside a deprecated provider
		// section (spec.hcloud, spec.aws), which the CLI's drivers still read.
		if len(legacy) != 1 {
			d.fail("spec.provider", "required with spec.controlPlane and spec.workers: "+
				"name the provider and its settings, such as {name: hetzner, config: {region: fsn1, sshKeyName: my-key}}")
			doc.noProvider = true
			delete(s, "controlPlane")
			delete(s, "workers")
			return
		}
		section = legacy[0]
		var ok bool
		if config, ok = s[section].(map[string]any); !ok {
			return // the decoder reports it
		}
		hybrid = true
	}
	for _, k := range []string{"controlPlane", "workers"} {
		if _, set := config[k]; set {
			at := "spec.provider.config." + k
			if hybrid {
				at = "spec." + section + "." + k
			}
			d.fail(at, "unknown field: the "+map[string]string{"controlPlane": "control plane", "workers": "worker pools"}[k]+" is spec."+k)
			delete(config, k)
		}
	}
	if cp, set := s["controlPlane"]; set {
		delete(s, "controlPlane")
		if m, ok := cp.(map[string]any); ok {
			if r, set := m["replicas"]; !set || r == nil {
				m = cloneMap(m)
				m["replicas"] = jsonInt(DefaultProviderControlPlaneReplicas)
			}
			cp = m
		}
		if cp != nil {
			config["controlPlane"] = cp
		}
	}
	if w, set := s["workers"]; set {
		delete(s, "workers")
		if w != nil {
			config["workers"] = w
		}
	}
	s[section] = config
	// Longest first: Document.Field takes the first rename that applies.
	doc.renames = append(doc.renames,
		rename{"spec." + section + ".controlPlane", "spec.controlPlane"},
		rename{"spec." + section + ".workers", "spec.workers"})
	if !hybrid {
		doc.renames = append(doc.renames, rename{"spec." + section, "spec.provider.config"})
	}

	if g, ok := s["gitops"].(map[string]any); ok {
		if ref, set := g["secretRef"]; set {
			if _, both := g["secretName"]; both {
				d.fail("spec.gitops.secretRef", "set one of spec.gitops.secretRef and spec.gitops.secretName")
			} else {
				g["secretName"] = ref
				doc.renames = append(doc.renames, rename{"spec.gitops.secretName", "spec.gitops.secretRef"})
			}
			delete(g, "secretRef")
		}
	}
	if r, ok := s["hrobot"].(map[string]any); ok {
		if hosts, ok := r["hosts"].([]any); ok {
			for i, h := range hosts {
				host, ok := h.(map[string]any)
				if !ok {
					continue
				}
				if n, set := host["serverNumber"]; set {
					at := fmt.Sprintf("spec.hrobot.hosts[%d]", i)
					if _, both := host["serverID"]; both {
						d.fail(at+".serverNumber", "set one of serverNumber and serverID")
					} else {
						host["serverID"] = n
						doc.renames = append(doc.renames, rename{at + ".serverID", at + ".serverNumber"})
					}
					delete(host, "serverNumber")
				}
			}
		}
	}
}

// providerObject reads spec.provider: it returns the normalised section
// its name selects and that section's settings (a copy of config), and
// moves credentials.secretRef to spec.credentials.secretName. It returns
// "" when the provider cannot be told, having reported why.
func (d *decoder) providerObject(p map[string]any, s map[string]any, ignore func(field, reason string)) (section string, config map[string]any, movedSecret bool) {
	for _, k := range sortedKeys(p) {
		switch k {
		case "name", "config", "configRef", "credentials":
		default:
			d.fail(joinKey("spec.provider", k), "unknown field")
		}
	}
	config = map[string]any{}
	switch c := p["config"].(type) {
	case nil:
	case map[string]any:
		config = c
	default:
		d.fail("spec.provider.config", "must be an object"+describe(c))
	}
	if ref, set := p["configRef"]; set && ref != nil {
		d.fail("spec.provider.configRef", "names a file beside the CLI's cluster.lok8s.yaml, which this service cannot read: "+
			"write its settings inline as spec.provider.config")
	}
	if creds, set := p["credentials"]; set && creds != nil {
		m, ok := creds.(map[string]any)
		if !ok {
			d.fail("spec.provider.credentials", "must be an object"+describe(creds))
		}
		for _, k := range sortedKeys(m) {
			switch k {
			case "envVars":
				vars, ok := m[k].([]any)
				bad := !ok && m[k] != nil
				for i, v := range vars {
					if _, ok := v.(string); !ok {
						d.fail(fmt.Sprintf("spec.provider.credentials.envVars[%d]", i), "must be a string"+describe(v))
						bad = true
					}
				}
				if !ok && m[k] != nil {
					d.fail("spec.provider.credentials.envVars", "must be a list"+describe(m[k]))
				}
				if !bad {
					ignore("spec.provider.credentials.envVars", "the CLI reads credentials from its environment; "+
						"this service uses the credential named by spec.provider.credentials.secretRef (PUT /v1/credentials/{name})")
				}
			case "secretRef":
				if old, both := s["credentials"].(map[string]any); both && old["secretName"] != nil {
					d.fail("spec.provider.credentials.secretRef", "set one of spec.provider.credentials.secretRef and spec.credentials.secretName")
					continue
				}
				ref, ok := m[k].(string)
				if !ok && m[k] != nil {
					d.fail("spec.provider.credentials.secretRef", "must be a string"+describe(m[k]))
					continue
				}
				old, _ := s["credentials"].(map[string]any)
				old = cloneMap(old)
				old["secretName"] = ref
				s["credentials"] = old
				movedSecret = true
			default:
				d.fail(joinKey("spec.provider.credentials", k), "unknown field")
			}
		}
	}
	name, ok := p["name"].(string)
	switch {
	case p["name"] == nil:
		d.fail("spec.provider.name", "required: the infrastructure provider, one of "+strings.Join(d.providerNames(), ", "))
		return "", nil, movedSecret
	case !ok:
		d.fail("spec.provider.name", "must be a string"+describe(p["name"]))
		return "", nil, movedSecret
	}
	if section, ok := providerSections[name]; ok {
		return section, cloneMap(config), movedSecret
	}
	if slices.Contains(d.sections, name) && !slices.Contains(BuiltinSections, name) {
		return name, cloneMap(config), movedSecret
	}
	d.fail("spec.provider.name", fmt.Sprintf("unknown provider %q: this service provides %s", name, strings.Join(d.providerNames(), ", ")))
	return "", nil, movedSecret
}

// providerNames are the names spec.provider.name accepts: the built-in
// providers and the other provider sections the caller named.
func (d *decoder) providerNames() []string {
	names := []string{ProviderHetzner, ProviderAWS}
	for _, s := range d.sections {
		if !slices.Contains(BuiltinSections, s) {
			names = append(names, s)
		}
	}
	return names
}

func jsonInt(n int) json.Number { return json.Number(strconv.Itoa(n)) }

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Render writes c, a normalised spec, as a JSON document of shape: as
// json.Marshal does for ShapeSections; for ShapeProvider with the
// provider section's settings in spec.provider.config, its control plane
// and pools in spec.controlPlane and spec.workers, the credential in
// spec.provider.credentials.secretRef, spec.gitops.secretRef and
// spec.hrobot.hosts[].serverNumber. Ignored fields are not kept, so a
// document and its rendering differ by those (and by defaults filled in).
func Render(c *Capi, shape Shape) (json.RawMessage, error) {
	plain, err := json.Marshal(c)
	if err != nil || shape != ShapeProvider {
		return plain, err
	}
	sections := c.Spec.ProviderSections()
	sections = slices.DeleteFunc(sections, func(s string) bool { return s == "hrobot" })
	if len(sections) != 1 {
		return plain, nil // no provider to name: the seed's form says it as it is
	}
	section := sections[0]
	var generic struct {
		Spec map[string]any `json:"spec"`
	}
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("render spec: %w", err)
	}
	config, _ := generic.Spec[section].(map[string]any)
	name := ProviderName(section)
	out := providerShapeDoc{APIVersion: c.APIVersion, Kind: c.Kind, Metadata: c.Metadata}
	s := &out.Spec
	s.Kubernetes, s.Cluster, s.ManagementCluster = c.Spec.Kubernetes, c.Spec.Cluster, c.Spec.ManagementCluster
	s.ControlPlane, s.Workers = config["controlPlane"], config["workers"]
	delete(config, "controlPlane")
	delete(config, "workers")
	s.Provider = providerShapeProvider{Name: name, Config: config}
	if ref := c.Spec.Credentials.SecretName; ref != "" {
		s.Provider.Credentials = &providerShapeCredentials{SecretRef: ref}
	}
	if r, ok := generic.Spec["hrobot"].(map[string]any); ok {
		hosts, _ := r["hosts"].([]any)
		for _, h := range hosts {
			if host, ok := h.(map[string]any); ok {
				host["serverNumber"] = host["serverID"]
				delete(host, "serverID")
			}
		}
		s.HRobot = r
	}
	s.Bootstrap = c.Spec.Bootstrap
	if g, ok := generic.Spec["gitops"].(map[string]any); ok {
		if ref, set := g["secretName"]; set {
			g["secretRef"] = ref
			delete(g, "secretName")
		}
		s.GitOps = g
	}
	return json.Marshal(out)
}

// providerShapeDoc orders the fields of a ShapeProvider rendering as the
// CLI's examples do.
type providerShapeDoc struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   Metadata          `json:"metadata"`
	Spec       providerShapeSpec `json:"spec"`
}

type providerShapeSpec struct {
	Kubernetes        Kubernetes            `json:"kubernetes"`
	Cluster           ClusterSettings       `json:"cluster"`
	ManagementCluster *ManagementCluster    `json:"managementCluster,omitempty"`
	Provider          providerShapeProvider `json:"provider"`
	ControlPlane      any                   `json:"controlPlane,omitempty"`
	Workers           any                   `json:"workers,omitempty"`
	HRobot            any                   `json:"hrobot,omitempty"`
	Bootstrap         []Addon               `json:"bootstrap,omitempty"`
	GitOps            any                   `json:"gitops,omitempty"`
}

type providerShapeProvider struct {
	Name        string                    `json:"name"`
	Config      map[string]any            `json:"config,omitempty"`
	Credentials *providerShapeCredentials `json:"credentials,omitempty"`
}

type providerShapeCredentials struct {
	SecretRef string `json:"secretRef"`
}
