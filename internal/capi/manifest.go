package capi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ManifestFile is the name of a provider's manifest in its folder.
const ManifestFile = "provider.yaml"

// Manifest is a provider.yaml: what selects the provider, what it renders
// and which credentials it needs. See templates/README.md.
type Manifest struct {
	// Name is the provider's name, e.g. "hetzner".
	Name string `json:"name"`
	// Sections are the spec sections (spec.<section>) that select it.
	Sections []string `json:"sections"`
	// ClusterScopedKinds are the kinds this provider renders that are not
	// namespaced (they get no metadata.namespace).
	ClusterScopedKinds []string `json:"clusterScopedKinds,omitempty"`
	// Credentials describes the Secret the provider reads.
	Credentials Credentials `json:"credentials"`
	// Rendering is the default way to render the cluster; a flavor may replace
	// parts of it.
	Rendering
	// Flavors are alternatives chosen by a spec field; the first whose When
	// matches replaces the fields it sets.
	Flavors []Flavor `json:"flavors,omitempty"`
}

// Rendering is what a provider (or one of its flavors) renders.
type Rendering struct {
	Infrastructure *Infrastructure `json:"infrastructure,omitempty"`
	// Variables map template variables to paths into the spec document
	// (e.g. spec.hcloud.region), or to a built-in variable through a table
	// (Variable.From); a path that is absent, or a value the table lacks,
	// leaves the variable unset.
	Variables map[string]Variable `json:"variables,omitempty"`
	// Values are template variables with fixed values.
	Values map[string]string `json:"values,omitempty"`
	// ValueFiles are template variables whose value is the content of a
	// file of the catalog (a path from its root), read as is when the
	// catalog loads: not a template, so it may contain ${...} (a script a
	// template writes to the machines). Merged like Values.
	ValueFiles map[string]string `json:"valueFiles,omitempty"`
	// ControlPlane is the path of the {replicas, type} object that sets
	// CP_REPLICAS and CP_TYPE, if the provider has one.
	ControlPlane *string `json:"controlPlane,omitempty"`
	// Templates are rendered once per cluster, in order. Paths are relative
	// to the catalog root (core/cluster.yaml, providers/aws/x.yaml).
	Templates []string `json:"templates,omitempty"`
	// Items are lists of the spec whose items each render templates once
	// (a HetznerBareMetalHost per spec.hrobot.hosts item), after Templates
	// and before Pools.
	Items []ItemSource `json:"items,omitempty"`
	// Pools are the sources of worker pools, each rendered with its
	// templates once per pool.
	Pools []PoolSource `json:"pools,omitempty"`
	// Requirements are what the provider release needs (Kubernetes
	// versions, addon roles, the management cluster's provider release);
	// a flavor's replace the provider's whole.
	Requirements *Requirements `json:"requirements,omitempty"`
	// Patches are rendered once per cluster, after Templates and Pools,
	// and merged into the rendered objects they name (see Patch).
	Patches []Patch `json:"patches,omitempty"`
	// Kubeconfig says how the workload kubeconfig the provider writes
	// behaves; nil: a long-lived one, stored once.
	Kubeconfig *KubeconfigPolicy `json:"kubeconfig,omitempty"`
	// WaitTimeout is how long the machines may take to become Ready nodes
	// (a Go duration, 90m), when that is longer than the service's wait
	// timeout: bare metal installs for up to an hour.
	WaitTimeout string `json:"waitTimeout,omitempty"`
	// MachineFailures are provider conditions on a cluster's machines that
	// no wait ends: each fails the wait with its code and remediation.
	MachineFailures []MachineFailure `json:"machineFailures,omitempty"`
}

// KubeconfigPolicy describes the workload kubeconfig a provider writes to
// the <cluster>-kubeconfig Secret.
type KubeconfigPolicy struct {
	// Rotates: the Secret holds a short-lived credential its controller
	// rewrites (CAPA's EKS token, valid 15 minutes and refreshed every
	// sync period): the service never stores it and reads the Secret anew
	// for every use.
	Rotates bool `json:"rotates"`
	// Simulated: the workload API server is a simulation (CAPI's in-memory
	// provider) with no TokenRequest API that authenticates nobody, so a
	// download hands out CAPI's kubeconfig itself, instead of a token
	// issued to the caller. Development providers only.
	Simulated bool `json:"simulated"`
}

// MachineFailure is a condition of a provider's machine objects (labelled
// cluster.x-k8s.io/cluster-name with the cluster's name) that fails the
// wait for the nodes: a condition of Type with Status (default "False")
// and, if set, Reason, in status.conditions or status.v1beta2.conditions,
// for at least For (since its lastTransitionTime).
type MachineFailure struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Condition  struct {
		Type   string `json:"type"`
		Status string `json:"status,omitempty"`
		Reason string `json:"reason,omitempty"`
	} `json:"condition"`
	// For is how long the condition must have held (a Go duration); empty:
	// as soon as it is seen.
	For string `json:"for,omitempty"`
	// Code is the failure code people see (NoHostAvailable).
	Code string `json:"code"`
	// Remediation is the one line that tells them what to do.
	Remediation string `json:"remediation"`
	// Retryable: a plain retry may work (the condition may clear alone).
	Retryable bool `json:"retryable,omitempty"`
}

// Patch is a template whose documents change objects the templates
// rendered: each names its target by apiVersion's group, kind and
// metadata.name, and is merged into it (mergePatch: maps key by key, lists
// of objects with a name by name, anything else replaced, null removes).
// A patch whose target was not rendered is an error.
type Patch struct {
	// File is the patch template, a path from the catalog root.
	File string `json:"file"`
	// When, if set, applies the patch only when the spec matches it.
	When *Condition `json:"when,omitempty"`
}

// Infrastructure names the provider's infrastructure kinds.
type Infrastructure struct {
	APIVersion          string `json:"apiVersion"`
	ClusterKind         string `json:"clusterKind"`
	MachineTemplateKind string `json:"machineTemplateKind"`
}

// Variable is a path into the spec document, optionally mapped through a
// table of values, or a built-in variable's value mapped through one. In
// YAML either "spec.x.y", {path: spec.x.y, map: {...}} or
// {variable: K8S_VERSION_MINOR, map: {...}}.
type Variable struct {
	Path string `json:"path,omitempty"`
	// From names a cluster-level built-in variable (K8S_VERSION_MINOR,
	// CLUSTER_NAME, ...) whose value is looked up in Map, instead of Path:
	// a table by Kubernetes minor, for instance.
	From string            `json:"variable,omitempty"`
	Map  map[string]string `json:"map,omitempty"`
}

// UnmarshalJSON reads a bare path or the object form.
func (v *Variable) UnmarshalJSON(data []byte) error {
	var path string
	if err := json.Unmarshal(data, &path); err == nil {
		*v = Variable{Path: path}
		return nil
	}
	type plain Variable
	var p plain
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("a variable is a spec path or {path, map}: %w", err)
	}
	*v = Variable(p)
	return nil
}

// PoolSource is a map of worker pools in the spec ({name: {replicas, type}})
// and the templates rendered for each pool.
type PoolSource struct {
	// Workers is the path of the pools map, e.g. spec.hcloud.workers.
	Workers string `json:"workers"`
	// NamePrefix prefixes POOL_NAME in POOL_ID, which names the pool's
	// objects, so that pools of two sources may share a name.
	NamePrefix string `json:"namePrefix,omitempty"`
	// Templates are rendered once per pool, in order.
	Templates []string `json:"templates"`
	// Values are fixed variables for this source's pools, e.g. another
	// INFRA_MACHINE_TEMPLATE_KIND.
	Values map[string]string `json:"values,omitempty"`
	// Patches are rendered once per pool, with the pool's variables, and
	// merged into the objects they name, which may be the cluster's (a
	// pool's entry in a list of the infrastructure cluster).
	Patches []Patch `json:"patches,omitempty"`
}

// ItemSource is a list in the spec ([{...}, ...]) and the templates
// rendered once per item, with the cluster's variables and the item's.
type ItemSource struct {
	// List is the path of the list, e.g. spec.hrobot.hosts; absent is no
	// items.
	List string `json:"list"`
	// Variables map template variables to paths into the item (serverID,
	// rootDeviceHints.wwn); an absent path leaves the variable unset.
	Variables map[string]string `json:"variables,omitempty"`
	// Templates are rendered once per item, in order.
	Templates []string `json:"templates"`
}

// Flavor is an alternative rendering chosen by the spec.
type Flavor struct {
	Name string    `json:"name"`
	When Condition `json:"when"`
	// Rendering fields that are set replace the provider's (Patches too);
	// Variables, Values and ValueFiles are merged over the provider's.
	Rendering
}

// Condition matches the spec document: the value at Path equals Equals;
// or it is a list that contains Contains, an item that is that text (a
// scalar) or an object whose "name" is (lists are keyed by name, as
// patches merge them: spec.bootstrap names an add-on either way); or,
// with neither, Path is present.
type Condition struct {
	Path     string  `json:"path"`
	Equals   *string `json:"equals,omitempty"`
	Contains *string `json:"contains,omitempty"`
}

// Credentials is the Secret a provider reads its credentials from.
type Credentials struct {
	// Namespace is where the Secret must live when the provider's
	// controller reads it from its own namespace (CAPA: capa-system).
	// Empty: the cluster's namespace.
	Namespace string `json:"namespace,omitempty"`
	// Type is the Secret's type; empty: Opaque.
	Type string `json:"type,omitempty"`
	// Labels go on the Secret.
	Labels map[string]string `json:"labels,omitempty"`
	// Keys map credential fields to Secret keys.
	Keys []CredentialKey `json:"keys"`
}

// CredentialKey maps one credential field to one key of the Secret.
type CredentialKey struct {
	// Field is the credential's field name, e.g. hcloudToken.
	Field string `json:"field"`
	// Key is the Secret's key, e.g. hcloud.
	Key string `json:"key"`
	// Required fields must be given and non-empty.
	Required bool `json:"required,omitempty"`
}

var (
	variableName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	specPath     = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	failureCode  = regexp.MustCompile(`^[A-Z][A-Za-z]{2,63}$`)
)

// parseManifest reads a provider.yaml strictly and checks its structure.
// Template files are checked by the catalog.
func parseManifest(data []byte) (*Manifest, error) {
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(jsonData))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if msgs := validation.IsDNS1123Label(m.Name); len(msgs) > 0 {
		fail("name %q: %s", m.Name, strings.Join(msgs, "; "))
	}
	if len(m.Sections) == 0 {
		fail("sections: at least one spec section must select the provider")
	}
	for _, s := range m.Sections {
		if !regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`).MatchString(s) {
			fail("sections: %q is not a spec field name", s)
		}
	}
	if m.Infrastructure == nil {
		fail("infrastructure: required")
	}
	if len(m.Templates) == 0 {
		fail("templates: required")
	}
	m.check("", fail)
	seen := map[string]bool{}
	for i, f := range m.Flavors {
		at := fmt.Sprintf("flavors[%d]", i)
		if f.Name == "" {
			fail("%s.name: required", at)
		} else if seen[f.Name] {
			fail("%s.name: duplicate flavor %q", at, f.Name)
		}
		seen[f.Name] = true
		if !specPath.MatchString(f.When.Path) {
			fail("%s.when.path: %q is not a path such as spec.aws.flavor", at, f.When.Path)
		}
		f.When.check(at+".when", fail)
		f.check(at+".", fail)
	}
	keys := map[string]bool{}
	fields := map[string]bool{}
	for i, k := range m.Credentials.Keys {
		if k.Field == "" || k.Key == "" {
			fail("credentials.keys[%d]: field and key are required", i)
		}
		if msgs := validation.IsConfigMapKey(k.Key); k.Key != "" && len(msgs) > 0 {
			fail("credentials.keys[%d].key %q: %s", i, k.Key, strings.Join(msgs, "; "))
		}
		if keys[k.Key] || fields[k.Field] {
			fail("credentials.keys[%d]: duplicate field or key", i)
		}
		keys[k.Key], fields[k.Field] = true, true
	}
	if ns := m.Credentials.Namespace; ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			fail("credentials.namespace %q: %s", ns, strings.Join(msgs, "; "))
		}
	}
	return errors.Join(errs...)
}

func (r *Rendering) check(at string, fail func(string, ...any)) {
	if inf := r.Infrastructure; inf != nil {
		if inf.APIVersion == "" || !strings.Contains(inf.APIVersion, "/") {
			fail("%sinfrastructure.apiVersion: must be group/version, got %q", at, inf.APIVersion)
		}
		if inf.ClusterKind == "" || inf.MachineTemplateKind == "" {
			fail("%sinfrastructure: clusterKind and machineTemplateKind are required", at)
		}
	}
	for _, name := range sortedKeys(r.Variables) {
		if !variableName.MatchString(name) {
			fail("%svariables: %q is not a variable name (A-Z, 0-9, _)", at, name)
		}
		switch v := r.Variables[name]; {
		case v.From != "" && v.Path != "":
			fail("%svariables.%s: a path or a variable, not both", at, name)
		case v.From != "":
			if !slices.Contains(clusterBuiltins, v.From) {
				fail("%svariables.%s: variable %q is not a cluster-level built-in (%s)", at, name, v.From, strings.Join(clusterBuiltins, ", "))
			}
			if len(v.Map) == 0 {
				fail("%svariables.%s: a variable from %s needs a map", at, name, v.From)
			}
		case !specPath.MatchString(v.Path):
			fail("%svariables.%s: %q is not a path such as spec.hcloud.region", at, name, v.Path)
		}
	}
	for _, name := range sortedKeys(r.Values) {
		if !variableName.MatchString(name) {
			fail("%svalues: %q is not a variable name (A-Z, 0-9, _)", at, name)
		}
	}
	for _, name := range sortedKeys(r.ValueFiles) {
		if !variableName.MatchString(name) {
			fail("%svalueFiles: %q is not a variable name (A-Z, 0-9, _)", at, name)
		}
		if _, dup := r.Values[name]; dup {
			fail("%svalueFiles.%s: also set in values", at, name)
		}
	}
	checkPatches(at+"patches", r.Patches, fail)
	if r.WaitTimeout != "" {
		if d, err := time.ParseDuration(r.WaitTimeout); err != nil || d <= 0 {
			fail("%swaitTimeout: %q is not a positive duration such as 90m", at, r.WaitTimeout)
		}
	}
	for i, mf := range r.MachineFailures {
		f := fmt.Sprintf("%smachineFailures[%d]", at, i)
		if !strings.Contains(mf.APIVersion, "/") || mf.Kind == "" {
			fail("%s: apiVersion (group/version) and kind are required", f)
		}
		if mf.Condition.Type == "" {
			fail("%s.condition.type: required", f)
		}
		if st := mf.Condition.Status; st != "" && st != "True" && st != "False" && st != "Unknown" {
			fail("%s.condition.status: %q is not True, False or Unknown", f, st)
		}
		if mf.For != "" {
			if d, err := time.ParseDuration(mf.For); err != nil || d < 0 {
				fail("%s.for: %q is not a duration such as 10m", f, mf.For)
			}
		}
		if !failureCode.MatchString(mf.Code) {
			fail("%s.code: %q is not a failure code such as NoHostAvailable", f, mf.Code)
		}
		if mf.Remediation == "" {
			fail("%s.remediation: required", f)
		}
	}
	if cp := r.ControlPlane; cp != nil && *cp != "" && !specPath.MatchString(*cp) {
		fail("%scontrolPlane: %q is not a path", at, *cp)
	}
	if r.Requirements != nil {
		r.Requirements.check(at, fail)
	}
	for i, it := range r.Items {
		if !specPath.MatchString(it.List) {
			fail("%sitems[%d].list: %q is not a path such as spec.hrobot.hosts", at, i, it.List)
		}
		if len(it.Templates) == 0 {
			fail("%sitems[%d].templates: required", at, i)
		}
		for _, name := range sortedKeys(it.Variables) {
			if !variableName.MatchString(name) {
				fail("%sitems[%d].variables: %q is not a variable name (A-Z, 0-9, _)", at, i, name)
			}
			if !specPath.MatchString(it.Variables[name]) {
				fail("%sitems[%d].variables.%s: %q is not a path into the item such as rootDeviceHints.wwn", at, i, name, it.Variables[name])
			}
		}
	}
	for i, p := range r.Pools {
		if !specPath.MatchString(p.Workers) {
			fail("%spools[%d].workers: %q is not a path such as spec.hcloud.workers", at, i, p.Workers)
		}
		if len(p.Templates) == 0 {
			fail("%spools[%d].templates: required", at, i)
		}
		for _, name := range sortedKeys(p.Values) {
			if !variableName.MatchString(name) {
				fail("%spools[%d].values: %q is not a variable name", at, i, name)
			}
		}
		checkPatches(fmt.Sprintf("%spools[%d].patches", at, i), p.Patches, fail)
	}
}

func checkPatches(at string, patches []Patch, fail func(string, ...any)) {
	for i, p := range patches {
		if p.File == "" {
			fail("%s[%d].file: required", at, i)
		}
		if p.When != nil {
			if !specPath.MatchString(p.When.Path) {
				fail("%s[%d].when.path: %q is not a path such as spec.hcloud.placementGroups", at, i, p.When.Path)
			}
			p.When.check(fmt.Sprintf("%s[%d].when", at, i), fail)
		}
	}
}

func (c Condition) check(at string, fail func(string, ...any)) {
	if c.Equals != nil && c.Contains != nil {
		fail("%s: equals or contains, not both", at)
	}
}

// resolved is a provider's Rendering with a flavor applied.
type resolved struct {
	flavor string
	Rendering
}

// resolve applies the flavor that matches doc, if any.
func (m *Manifest) resolve(doc map[string]any) resolved {
	r := resolved{Rendering: m.Rendering}
	for _, f := range m.Flavors {
		if !f.When.matches(doc) {
			continue
		}
		r.flavor = f.Name
		if f.Infrastructure != nil {
			r.Infrastructure = f.Infrastructure
		}
		r.Variables = mergeMaps(r.Variables, f.Variables)
		r.Values = mergeMaps(r.Values, f.Values)
		r.ValueFiles = mergeMaps(r.ValueFiles, f.ValueFiles)
		if f.ControlPlane != nil {
			r.ControlPlane = f.ControlPlane
		}
		if f.Templates != nil {
			r.Templates = f.Templates
		}
		if f.Items != nil {
			r.Items = f.Items
		}
		if f.Pools != nil {
			r.Pools = f.Pools
		}
		if f.Requirements != nil {
			r.Requirements = f.Requirements
		}
		if f.Patches != nil {
			r.Patches = f.Patches
		}
		if f.Kubeconfig != nil {
			r.Kubeconfig = f.Kubeconfig
		}
		if f.WaitTimeout != "" {
			r.WaitTimeout = f.WaitTimeout
		}
		if f.MachineFailures != nil {
			r.MachineFailures = f.MachineFailures
		}
		break
	}
	return r
}

// applies reports whether a patch with condition c (nil: always) applies.
func (c *Condition) applies(doc map[string]any) bool { return c == nil || c.matches(doc) }

func (c Condition) matches(doc map[string]any) bool {
	v, ok := lookupPath(doc, c.Path)
	if !ok || v == nil {
		return false
	}
	if c.Contains != nil {
		items, _ := v.([]any)
		return slices.ContainsFunc(items, func(it any) bool {
			if m, ok := it.(map[string]any); ok {
				it = m["name"]
			}
			s, ok := scalarString(it)
			return ok && s == *c.Contains
		})
	}
	if c.Equals == nil {
		return true
	}
	s, ok := scalarString(v)
	return ok && s == *c.Equals
}

// templateFiles lists every template the manifest names (patches
// included), in a stable order.
func (m *Manifest) templateFiles() []string {
	var files []string
	addPatches := func(ps []Patch) {
		for _, p := range ps {
			files = append(files, p.File)
		}
	}
	add := func(r Rendering) {
		files = append(files, r.Templates...)
		addPatches(r.Patches)
		for _, it := range r.Items {
			files = append(files, it.Templates...)
		}
		for _, p := range r.Pools {
			files = append(files, p.Templates...)
			addPatches(p.Patches)
		}
	}
	add(m.Rendering)
	for _, f := range m.Flavors {
		add(f.Rendering)
	}
	slices.Sort(files)
	return slices.Compact(files)
}

// valueFiles lists every value file the manifest names, in a stable order.
func (m *Manifest) valueFiles() []string {
	var files []string
	for _, f := range m.ValueFiles {
		files = append(files, f)
	}
	for _, fl := range m.Flavors {
		for _, f := range fl.ValueFiles {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return slices.Compact(files)
}

func mergeMaps[V any](base, over map[string]V) map[string]V {
	if len(over) == 0 {
		return base
	}
	out := make(map[string]V, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
