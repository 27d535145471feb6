package capi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/spec"
)

// The variables every template may use. CP_* are set when the provider
// (flavor) has a control plane path present in the spec; POOL_* only in the
// templates rendered per pool.
const (
	VarClusterName               = "CLUSTER_NAME"                // metadata.name
	VarClusterNamespace          = "CLUSTER_NAMESPACE"           // the namespace of the cluster's objects
	VarClusterDomain             = "CLUSTER_DOMAIN"              // spec.cluster.domain
	VarK8sVersion                = "K8S_VERSION"                 // spec.kubernetes.version, v1.31.10
	VarK8sVersionMinor           = "K8S_VERSION_MINOR"           // v1.31
	VarCredentialSecretName      = "CREDENTIAL_SECRET_NAME"      // the credentials Secret's name
	VarCredentialSecretNamespace = "CREDENTIAL_SECRET_NAMESPACE" // and namespace
	VarProviderName              = "PROVIDER_NAME"               // the manifest's name
	VarInfraAPIVersion           = "INFRA_API_VERSION"           // infrastructure.apiVersion
	VarInfraAPIGroup             = "INFRA_API_GROUP"             // its group, for v1beta2 references
	VarInfraClusterKind          = "INFRA_CLUSTER_KIND"          // infrastructure.clusterKind
	VarInfraMachineTemplateKind  = "INFRA_MACHINE_TEMPLATE_KIND" // infrastructure.machineTemplateKind
	VarCPReplicas                = "CP_REPLICAS"                 // <controlPlane>.replicas
	VarCPType                    = "CP_TYPE"                     // <controlPlane>.type
	VarPoolName                  = "POOL_NAME"                   // the pool's key in the workers map
	VarPoolID                    = "POOL_ID"                     // namePrefix + POOL_NAME: names the pool's objects
	VarPoolReplicas              = "POOL_REPLICAS"               // the pool's replicas
	VarPoolType                  = "POOL_TYPE"                   // the pool's type
	VarPoolMinSize               = "POOL_MIN_SIZE"               // the pool's scaling.min, else its replicas
	VarPoolMaxSize               = "POOL_MAX_SIZE"               // the pool's scaling.max, else its replicas (at least 1)
)

var builtinVariables = append(slices.Clone(clusterBuiltins), VarPoolName, VarPoolID, VarPoolReplicas, VarPoolType, VarPoolMinSize, VarPoolMaxSize)

// clusterBuiltins are the built-in variables set for the cluster's
// templates (the pools' add POOL_*); a manifest variable may be derived
// from one ({variable, map}).
var clusterBuiltins = []string{
	VarClusterName, VarClusterNamespace, VarClusterDomain, VarK8sVersion, VarK8sVersionMinor,
	VarCredentialSecretName, VarCredentialSecretNamespace, VarProviderName,
	VarInfraAPIVersion, VarInfraAPIGroup, VarInfraClusterKind, VarInfraMachineTemplateKind,
	VarCPReplicas, VarCPType,
}

// RenderInput is what Render renders.
type RenderInput struct {
	// Spec is the cluster spec, loaded (spec.Load) with the catalog's
	// sections, as the catalog reads it (NewSpec). Render does not change
	// it.
	Spec *Spec
	// Namespace is the namespace of the cluster's objects; empty:
	// spec.cluster.namespace.
	Namespace string
	// CredentialSecretName names the credentials Secret; empty:
	// spec.credentials.secretName (itself defaulted to <name>-credentials).
	// When the provider keeps the Secret in a namespace of its own, the name
	// is prefixed, as CredentialSecretRef says.
	CredentialSecretName string
	// Labels go on every object (lok8s.dev/tenant, lok8s.dev/cluster).
	Labels map[string]string
	// Provider renders the spec when set: the one chosen when the cluster
	// was submitted (stored with it). Nil: the provider Detect selects.
	Provider *Provider
}

// providerOf is in.Provider, else the provider the spec selects.
func (c *Catalog) providerOf(in RenderInput) (*Provider, error) {
	if in.Provider != nil {
		return in.Provider, nil
	}
	return c.Detect(in.Spec.Capi)
}

// Rendered is the result of Render.
type Rendered struct {
	Provider *Provider
	// Flavor is the flavor that was applied, "" for the provider's default.
	Flavor string
	// Objects in render order: the templates in manifest order, each item
	// source's items in list order, then each pool source's pools by name.
	Objects []*unstructured.Unstructured
}

// MissingVariablesError lists every template variable that has neither a
// value nor a default, with the templates that use it.
type MissingVariablesError struct {
	Provider  string
	Flavor    string
	Variables map[string][]string // variable -> templates
}

func (e *MissingVariablesError) Error() string {
	names := sortedKeys(e.Variables)
	var where []string
	for _, n := range names {
		where = append(where, n+" in "+strings.Join(e.Variables[n], ", "))
	}
	flavor := ""
	if e.Flavor != "" {
		flavor = " (flavor " + e.Flavor + ")"
	}
	return fmt.Sprintf("capi: provider %s%s: value for variables [%s] is not set (%s)",
		e.Provider, flavor, strings.Join(names, ", "), strings.Join(where, "; "))
}

// unit is one template rendered with one set of variables.
type unit struct {
	file string
	vars map[string]string
}

// Render detects the spec's provider, applies the flavor the spec selects
// and renders its templates: the cluster's once, the items' once per item
// of their list, the pools' once per pool;
// then it merges the patches whose condition the spec meets into the
// objects they name (the cluster's patches, then each pool's). Every
// variable used and not set (and without a default) is reported in one
// *MissingVariablesError. Each object gets the cluster's namespace (unless
// its kind is cluster-scoped) and in.Labels.
//
// Values substituted into templates are escaped as for a double-quoted YAML
// string, so a spec value can never add a line, key or document; templates
// quote string variables ("${VAR}").
func (c *Catalog) Render(in RenderInput) (*Rendered, error) {
	pl, err := c.plan(in)
	if err != nil {
		return nil, err
	}
	p, r, vars, units, patches := pl.provider, pl.resolved, pl.vars, pl.units, pl.patches

	missing := map[string][]string{}
	for _, u := range append(slices.Clone(units), patches...) {
		for name, def := range c.parsed[u.file].vars {
			if _, ok := u.vars[name]; !ok && def == nil && !slices.Contains(missing[name], u.file) {
				missing[name] = append(missing[name], u.file)
			}
		}
	}
	if len(missing) > 0 {
		return nil, &MissingVariablesError{Provider: p.Name, Flavor: r.flavor, Variables: missing}
	}

	out := &Rendered{Provider: p, Flavor: r.flavor}
	ns := vars[VarClusterNamespace]
	seen := map[string]string{}
	var from []string // the template of each object
	for _, u := range units {
		objs, err := c.renderUnit(u, false)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if slices.Contains(p.Manifest.ClusterScopedKinds, o.GetKind()) {
				o.SetNamespace("")
			} else {
				o.SetNamespace(ns)
			}
			labels := o.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			maps.Copy(labels, in.Labels)
			o.SetLabels(labels)
			gk := o.GroupVersionKind().GroupKind()
			key := gk.String() + " " + o.GetNamespace() + "/" + o.GetName()
			if prev, dup := seen[key]; dup {
				return nil, fmt.Errorf("capi: %s and %s both render %s %q", prev, u.file, gk.Kind, o.GetName())
			}
			seen[key] = u.file
			out.Objects = append(out.Objects, o)
			from = append(from, u.file)
		}
	}
	for _, u := range patches {
		docs, err := c.renderUnit(u, true) // read by applyPatch only
		if err != nil {
			return nil, err
		}
		for _, patch := range docs {
			if err := applyPatch(out.Objects, patch); err != nil {
				return nil, fmt.Errorf("capi: patch %s: %w", u.file, err)
			}
		}
	}
	for i, o := range out.Objects {
		if err := checkObject(o); err != nil {
			return nil, fmt.Errorf("capi: %s rendered: %w", from[i], err)
		}
	}
	return out, nil
}

// renderPlan is what Render renders: the provider, its rendering with the
// spec's flavor applied, the cluster's variables, and each template and
// patch with the variables it is rendered with, in order.
type renderPlan struct {
	provider       *Provider
	resolved       resolved
	vars           map[string]string
	units, patches []unit
}

// prepare is where Render and VariablesOf both begin: in's provider, its
// spec's document, what the provider's manifest resolves for it, and the
// cluster's variables. op names the caller in errors.
func (c *Catalog) prepare(in RenderInput, op string) (p *Provider, doc map[string]any, r resolved, vars map[string]string, err error) {
	if in.Spec == nil {
		return nil, nil, r, nil, fmt.Errorf("capi: %s: no spec", op)
	}
	if p, err = c.providerOf(in); err != nil {
		return nil, nil, r, nil, err
	}
	doc = in.Spec.doc
	r = p.resolve(in.Spec)
	if vars, err = p.clusterVariables(in, doc, r); err != nil {
		return nil, nil, r, nil, err
	}
	return p, doc, r, vars, nil
}

// plan lists the units Render renders for in.
func (c *Catalog) plan(in RenderInput) (*renderPlan, error) {
	p, doc, r, vars, err := c.prepare(in, "render")
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(r.ValueFiles) {
		vars[name] = c.files[r.ValueFiles[name]]
	}

	var units, patches []unit
	for _, file := range r.Templates {
		units = append(units, unit{file: file, vars: vars})
	}
	for _, pt := range r.Patches {
		if pt.When.applies(doc) {
			patches = append(patches, unit{file: pt.File, vars: vars})
		}
	}
	for _, src := range r.Items {
		items, err := itemsAt(doc, src.List)
		if err != nil {
			return nil, fmt.Errorf("capi: provider %s: %w", p.Name, err)
		}
		for i, item := range items {
			iv := maps.Clone(vars)
			for _, name := range sortedKeys(src.Variables) {
				v, ok := lookupPath(item, src.Variables[name])
				if !ok || v == nil {
					continue
				}
				str, err := valueString(v)
				if err != nil {
					return nil, fmt.Errorf("capi: provider %s: %s[%d].%s: %w", p.Name, src.List, i, src.Variables[name], err)
				}
				iv[name] = str
			}
			for _, file := range src.Templates {
				units = append(units, unit{file: file, vars: iv})
			}
		}
	}
	for _, src := range r.Pools {
		pools, err := poolsAt(doc, src.Workers)
		if err != nil {
			return nil, fmt.Errorf("capi: provider %s: %w", p.Name, err)
		}
		for _, name := range sortedKeys(pools) {
			pv := maps.Clone(vars)
			pv[VarPoolName] = name
			pv[VarPoolID] = src.NamePrefix + name
			setIfScalar(pv, VarPoolReplicas, pools[name]["replicas"])
			setIfScalar(pv, VarPoolType, pools[name]["type"])
			if lo, hi, ok := poolBounds(pools[name]); ok {
				pv[VarPoolMinSize], pv[VarPoolMaxSize] = strconv.Itoa(int(lo)), strconv.Itoa(int(hi))
			}
			maps.Copy(pv, src.Values)
			for _, file := range src.Templates {
				units = append(units, unit{file: file, vars: pv})
			}
			for _, pt := range src.Patches {
				if pt.When.applies(doc) {
					patches = append(patches, unit{file: pt.File, vars: pv})
				}
			}
		}
	}
	return &renderPlan{provider: p, resolved: r, vars: vars, units: units, patches: patches}, nil
}

// renderUnit renders a unit's objects: from its compiled template when it
// has one and the values allow (compiledTemplate), else as text. With
// readOnly, the objects may share their constant parts with the compiled
// template: the caller must not change them (patches: applyPatch).
func (c *Catalog) renderUnit(u unit, readOnly bool) ([]*unstructured.Unstructured, error) {
	if ct := c.parsed[u.file].compiled; ct != nil {
		if objs, ok := ct.render(u.vars, readOnly); ok {
			return objs, nil
		}
	}
	return c.renderText(u)
}

// renderText substitutes a unit's variables into its template and decodes
// the objects.
func (c *Catalog) renderText(u unit) ([]*unstructured.Unstructured, error) {
	// As clusterctl's yamlprocessor substitutes (with the same library,
	// drone/envsubst), on the template parsed at load: an unset variable
	// is empty, so its ${VAR:=default} applies (Render has reported every
	// unset one without a default).
	data, err := c.parsed[u.file].tmpl.Execute(func(name string) string {
		v, ok := u.vars[name]
		if !ok {
			return ""
		}
		return escapeValue(v)
	})
	if err != nil {
		return nil, fmt.Errorf("capi: %s: %w", u.file, err)
	}
	objs, err := decodeObjects([]byte(data))
	if err != nil {
		return nil, fmt.Errorf("capi: %s rendered: %w", u.file, err)
	}
	return objs, nil
}

// Variables returns the cluster-level template variables of the spec, as
// Render computes them for the cluster's templates: the built-ins, the
// manifest's variables and values once the spec's flavor is applied, and
// the defaults (${VAR:=default}) of the cluster templates' variables that
// are not otherwise set. Value files are left out. namespace is as
// RenderInput.Namespace. The add-on values use these (addons.Values).
func (c *Catalog) Variables(s *Spec, namespace string) (map[string]string, error) {
	return c.VariablesOf(RenderInput{Spec: s, Namespace: namespace})
}

// VariablesOf is Variables for in's spec, namespace and provider (nil:
// detected), as Render would compute them.
func (c *Catalog) VariablesOf(in RenderInput) (map[string]string, error) {
	_, doc, r, vars, err := c.prepare(RenderInput{Spec: in.Spec, Namespace: in.Namespace, Provider: in.Provider}, "variables")
	if err != nil {
		return nil, err
	}
	files := slices.Clone(r.Templates)
	for _, pt := range r.Patches {
		if pt.When.applies(doc) {
			files = append(files, pt.File)
		}
	}
	for _, file := range files {
		for name, def := range c.parsed[file].vars {
			if _, set := vars[name]; !set && def != nil && !strings.Contains(*def, "$") {
				vars[name] = *def
			}
		}
	}
	return vars, nil
}

// clusterVariables computes the variables of the cluster's templates.
func (p *Provider) clusterVariables(in RenderInput, doc map[string]any, r resolved) (map[string]string, error) {
	s := in.Spec
	ns := in.Namespace
	if ns == "" {
		ns = s.Spec.Cluster.Namespace
	}
	if ns == "" {
		ns = spec.DefaultNamespace
	}
	secret := in.CredentialSecretName
	if secret == "" {
		secret = s.Spec.Credentials.SecretName
	}
	if secret == "" && s.Metadata.Name != "" {
		secret = s.Metadata.Name + "-credentials"
	}
	secretNS, secretName := p.CredentialSecretRef(secret, ns)
	vars := map[string]string{
		VarClusterName:               s.Metadata.Name,
		VarClusterNamespace:          ns,
		VarClusterDomain:             s.Spec.Cluster.Domain,
		VarK8sVersion:                s.Spec.Kubernetes.Version,
		VarCredentialSecretName:      secretName,
		VarCredentialSecretNamespace: secretNS,
		VarProviderName:              p.Name,
	}
	if minor := MinorOf(s.Spec.Kubernetes.Version); minor != "" {
		vars[VarK8sVersionMinor] = minor
	}
	if inf := r.Infrastructure; inf != nil {
		gv, err := schema.ParseGroupVersion(inf.APIVersion)
		if err != nil {
			return nil, fmt.Errorf("capi: provider %s: infrastructure.apiVersion: %w", p.Name, err)
		}
		vars[VarInfraAPIVersion] = inf.APIVersion
		vars[VarInfraAPIGroup] = gv.Group
		vars[VarInfraClusterKind] = inf.ClusterKind
		vars[VarInfraMachineTemplateKind] = inf.MachineTemplateKind
	}
	for k, v := range vars {
		if v == "" {
			delete(vars, k) // unset, so that a template using it fails
		}
	}
	if r.ControlPlane != nil && *r.ControlPlane != "" {
		if cp, ok := lookupPath(doc, *r.ControlPlane); ok {
			if m, ok := cp.(map[string]any); ok {
				setIfScalar(vars, VarCPReplicas, m["replicas"])
				setIfScalar(vars, VarCPType, m["type"])
			}
		}
	}
	builtins := maps.Clone(vars)
	for _, name := range sortedKeys(r.Variables) {
		v := r.Variables[name]
		var val any
		var ok bool
		if v.From != "" {
			val, ok = builtins[v.From]
		} else {
			val, ok = lookupPath(doc, v.Path)
		}
		if !ok || val == nil {
			continue
		}
		str, err := valueString(val)
		if err != nil {
			return nil, fmt.Errorf("capi: provider %s: variable %s (%s): %w", p.Name, name, v.Path, err)
		}
		if v.Map != nil {
			mapped, ok := v.Map[str]
			if !ok {
				continue // unset: reported as missing
			}
			str = mapped
		}
		vars[name] = str
	}
	maps.Copy(vars, r.Values)
	return vars, nil
}

// lookupPath follows a dotted path of object keys.
func lookupPath(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, key := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[key]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// poolsAt reads the pools map at path; absent is no pools.
func poolsAt(doc map[string]any, path string) (map[string]map[string]any, error) {
	v, ok := lookupPath(doc, path)
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must be an object of pools", path)
	}
	pools := make(map[string]map[string]any, len(m))
	for name, p := range m {
		pm, ok := p.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s.%s: must be an object", path, name)
		}
		pools[name] = pm
	}
	return pools, nil
}

// poolBounds is a pool's size range (spec.Pool.Bounds): its scaling bounds,
// else its replicas, the upper one at least 1. ok is false when the pool
// has no replicas to take them from.
func poolBounds(pool map[string]any) (lo, hi int32, ok bool) {
	data, err := json.Marshal(pool)
	if err != nil {
		return 0, 0, false
	}
	var p spec.Pool
	if json.Unmarshal(data, &p) != nil || p.Replicas == nil {
		return 0, 0, false
	}
	lo, hi = p.Bounds()
	return lo, hi, true
}

// itemsAt reads the list of objects at path; absent is no items.
func itemsAt(doc map[string]any, path string) ([]map[string]any, error) {
	v, ok := lookupPath(doc, path)
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: must be a list", path)
	}
	items := make([]map[string]any, len(list))
	for i, it := range list {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: must be an object", path, i)
		}
		items[i] = m
	}
	return items, nil
}

// scalarString formats a string, number or boolean.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	default:
		return "", false
	}
}

// valueString formats a scalar as is and an object or list as JSON, which
// a template can use as a YAML flow value.
func valueString(v any) (string, error) {
	if s, ok := scalarString(v); ok {
		return s, nil
	}
	data, err := json.Marshal(v)
	return string(data), err
}

func setIfScalar(vars map[string]string, name string, v any) {
	if s, ok := scalarString(v); ok && s != "" {
		vars[name] = s
	}
}

// escapeValue escapes a value for the inside of a double-quoted YAML
// scalar (JSON's string escapes are a subset of YAML's). Plain names and
// numbers are unchanged.
func escapeValue(v string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // a string always encodes
	out := strings.TrimSuffix(buf.String(), "\n")
	return out[1 : len(out)-1]
}

// decodeObjects reads YAML documents into objects, skipping empty ones.
// Every object must have apiVersion, kind and metadata.name.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		jsonData, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if t := bytes.TrimSpace(jsonData); len(t) == 0 || string(t) == "null" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(jsonData, &head); err != nil {
			return nil, fmt.Errorf("document %d: not an object: %w", i+1, err)
		}
		if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
			return nil, fmt.Errorf("document %d: apiVersion, kind and metadata.name are required", i+1)
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(jsonData); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		objs = append(objs, o)
	}
}

// checkObject catches the mistakes the apiserver would report less
// clearly: bad names and label values (a long cluster and pool name).
func checkObject(o *unstructured.Unstructured) error {
	var msgs []string
	if m := validation.IsDNS1123Subdomain(o.GetName()); len(m) > 0 {
		msgs = append(msgs, fmt.Sprintf("name %q: %s", o.GetName(), strings.Join(m, "; ")))
	}
	labels := o.GetLabels()
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		if m := validation.IsQualifiedName(k); len(m) > 0 {
			msgs = append(msgs, fmt.Sprintf("label %q: %s", k, strings.Join(m, "; ")))
		}
		if m := validation.IsValidLabelValue(v); len(m) > 0 {
			msgs = append(msgs, fmt.Sprintf("label %s=%q: %s", k, v, strings.Join(m, "; ")))
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s %s: %s", o.GetKind(), o.GetName(), strings.Join(msgs, "; "))
	}
	return nil
}

// YAML writes the objects as a multi-document YAML stream, in order, each
// with sorted keys: the same objects always give the same bytes.
func (r *Rendered) YAML() ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range r.Objects {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("capi: %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(data)
	}
	return buf.Bytes(), nil
}
