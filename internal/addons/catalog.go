package addons

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Errors of Plan and LoadCatalog, wrapped with the add-on and provider
// concerned.
var (
	// ErrUnknownAddon: the catalogue has no add-on of that name.
	ErrUnknownAddon = errors.New("unknown addon")
	// ErrUnsupportedProvider: the add-on has no chart for the provider.
	ErrUnsupportedProvider = errors.New("addon not available for provider")
	// ErrCatalog: a catalogue file is invalid.
	ErrCatalog = errors.New("invalid addon catalogue")
)

// Catalog is the set of add-ons: one <name>.yaml per add-on at the root of a
// file system (the repository's addons/ folder).
type Catalog struct {
	addons []*Addon // in install order
	byName map[string]*Addon
}

// Addon is one catalogue entry, as written in its file.
type Addon struct {
	// Name is what spec.bootstrap names; equal to the file's base name.
	Name string `json:"name"`
	// Order sorts installs, lowest first (CNI first); ties go by name.
	Order int `json:"order"`
	// Role is what the add-on is to a cluster, when a provider may require
	// it (its manifest's requirements.addons): "cni" or "ccm". The nodes
	// of a cluster become Ready only with these, so they are installed as
	// soon as the control plane is initialized, before the rest.
	Role string `json:"role,omitempty"`
	// Namespace is the release's namespace (created if missing).
	Namespace string `json:"namespace"`
	// Release is the Helm release name; default: Name.
	Release string `json:"release,omitempty"`
	// Chart is the chart on every provider unless the provider names its
	// own. An add-on without one exists only on the providers that do.
	Chart *Chart `json:"chart,omitempty"`
	// Values are the add-on's defaults (lowest precedence).
	Values map[string]any `json:"values,omitempty"`
	// Secrets go into the workload cluster before the chart, on every
	// provider (a provider's own are added).
	Secrets []SecretSpec `json:"secrets,omitempty"`
	// Providers holds per-provider settings, keyed by provider name
	// (hetzner, aws).
	Providers map[string]ProviderSettings `json:"providers,omitempty"`

	file string
}

// Chart locates a chart: a Helm repository (its index.yaml), the chart's
// name in it and an exact version.
type Chart struct {
	Repository string `json:"repository"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	// Versions replace Version on clusters of those Kubernetes minors
	// ("v1.32": "1.30.1"), for charts tested with a range of Kubernetes
	// releases (the hcloud CCM's version policy). Resolved charts have
	// none: their Version is the one chosen.
	Versions map[string]string `json:"versions,omitempty"`
}

// Target is the cluster a plan is for.
type Target struct {
	// Provider is the cluster's provider (hetzner, aws).
	Provider string
	// KubernetesVersion is the cluster's Kubernetes version, v1.35.4, or
	// its minor, v1.35 (K8S_VERSION, K8S_VERSION_MINOR): it picks a chart
	// version from the chart's Versions. Empty: each chart's Version.
	KubernetesVersion string
}

// minor is the target's Kubernetes minor, v1.35, or "".
func (t Target) minor() string {
	m := kubernetesMinor.FindStringSubmatch(t.KubernetesVersion)
	if m == nil {
		return ""
	}
	return m[1]
}

// For returns the chart with the version for a cluster of that Kubernetes
// minor (v1.35): Versions' entry, else Version.
func (c Chart) For(minor string) Chart {
	if v, ok := c.Versions[minor]; ok && minor != "" {
		c.Version = v
	}
	c.Versions = nil
	return c
}

// String is name-version from repository.
func (c Chart) String() string { return fmt.Sprintf("%s-%s from %s", c.Name, c.Version, c.Repository) }

// ProviderSettings are an add-on's settings for one provider.
type ProviderSettings struct {
	// Chart replaces the add-on's chart on this provider.
	Chart *Chart `json:"chart,omitempty"`
	// Values are the provider's defaults, above the add-on's.
	Values map[string]any `json:"values,omitempty"`
	// Secrets are created in addition to the add-on's.
	Secrets []SecretSpec `json:"secrets,omitempty"`
}

// SecretSpec describes a Secret an add-on reads in the workload cluster.
// Each data key comes from a credential field or a variable.
type SecretSpec struct {
	Name string `json:"name"`
	// Namespace defaults to the add-on's namespace.
	Namespace string                `json:"namespace,omitempty"`
	Data      map[string]SecretData `json:"data"`
}

// SecretData is the source of one Secret key: exactly one of Credential (a
// field of the cluster's stored credential, e.g. hcloudToken) or Variable
// (e.g. HCLOUD_NETWORK).
type SecretData struct {
	Credential string `json:"credential,omitempty"`
	Variable   string `json:"variable,omitempty"`
	// Optional: a credential field the credential lacks leaves the key
	// out instead of failing (the hcloud CCM's robot-user).
	Optional bool `json:"optional,omitempty"`
}

// Resolved is an add-on for one provider: the chart, values and Secrets
// that apply there. Plan returns them in install order.
type Resolved struct {
	Name      string
	Provider  string
	Order     int
	Role      string
	Namespace string
	Release   string
	Chart     Chart
	// AddonValues and ProviderValues are the two catalogue layers of the
	// values chain, variables not yet substituted.
	AddonValues    map[string]any
	ProviderValues map[string]any
	// SecretSpecs are the add-on's and the provider's Secrets, namespaces
	// defaulted (see Resolved.Secrets).
	SecretSpecs []SecretSpec
}

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	exactSemver  = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	varName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretKey    = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	// kubernetesMinor: v1.35 or v1.35.4 (the minor is the first group).
	kubernetesMinor = regexp.MustCompile(`^(v1\.(?:0|[1-9][0-9]*))(?:\.(?:0|[1-9][0-9]*))?$`)
)

// LoadCatalog reads every *.yaml at the root of fsys (other files, such as
// README.md, are ignored) and checks each strictly: unknown fields, the
// name equal to the file's base name, DNS-label names and namespaces, a
// Helm-valid release name, an http(s) repository, an exact chart version, a
// chart on every provider listed (or for all), and Secret data naming
// exactly one source. Every problem is reported, each naming its file and
// field.
func LoadCatalog(fsys fs.FS) (*Catalog, error) {
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("addons: listing catalogue: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("addons: %w: no *.yaml files", ErrCatalog)
	}
	slices.Sort(files)
	c := &Catalog{byName: map[string]*Addon{}}
	var errs []error
	releases := map[string]string{}
	for _, file := range files {
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		var a Addon
		if err := yaml.UnmarshalStrict(data, &a); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		a.file = file
		if a.Release == "" {
			a.Release = a.Name
		}
		if err := a.validate(strings.TrimSuffix(path.Base(file), ".yaml")); err != nil {
			errs = append(errs, err)
			continue
		}
		key := a.Namespace + "/" + a.Release
		if other, dup := releases[key]; dup {
			errs = append(errs, fmt.Errorf("%s: release: %s is also installed by %s", file, key, other))
			continue
		}
		releases[key] = file
		c.byName[a.Name] = &a
		c.addons = append(c.addons, &a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("addons: %w:\n%w", ErrCatalog, err)
	}
	slices.SortFunc(c.addons, func(a, b *Addon) int {
		if a.Order != b.Order {
			return a.Order - b.Order
		}
		return strings.Compare(a.Name, b.Name)
	})
	return c, nil
}

// validate returns every problem of a, each as "<file>: <field>: <problem>".
func (a *Addon) validate(base string) error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", a.file, field, fmt.Sprintf(format, args...)))
	}
	switch {
	case a.Name == "":
		add("name", "required")
	case !dnsLabel.MatchString(a.Name) || len(a.Name) > 63:
		add("name", "%q must be a DNS label (lower-case letters, digits, '-')", a.Name)
	case a.Name != base:
		add("name", "%q must equal the file's name (%s.yaml)", a.Name, base)
	}
	if a.Order < 0 {
		add("order", "must be zero or more")
	}
	if a.Role != "" && !dnsLabel.MatchString(a.Role) {
		add("role", "%q must be a DNS label such as cni or ccm", a.Role)
	}
	if a.Namespace == "" {
		add("namespace", "required")
	} else if !dnsLabel.MatchString(a.Namespace) || len(a.Namespace) > 63 {
		add("namespace", "%q must be a DNS label", a.Namespace)
	}
	// Helm's limit: a release name is a DNS-1123 subdomain of at most 53.
	if !dnsSubdomain.MatchString(a.Release) || len(a.Release) > 53 {
		add("release", "%q must be lower-case letters, digits, '-' or '.', at most 53 characters", a.Release)
	}
	if a.Chart != nil {
		errs = append(errs, a.Chart.validate(a.file, "chart"))
	}
	a.validateSecrets("secrets", a.Secrets, add)
	if a.Chart == nil && len(a.Providers) == 0 {
		add("chart", "required unless every provider names its own (providers.<name>.chart)")
	}
	for _, p := range sortedKeys(a.Providers) {
		ps := a.Providers[p]
		field := "providers." + p
		if !dnsLabel.MatchString(p) {
			add(field, "provider name %q must be a DNS label", p)
		}
		switch {
		case ps.Chart != nil:
			errs = append(errs, ps.Chart.validate(a.file, field+".chart"))
		case a.Chart == nil:
			add(field+".chart", "required: the addon has no chart of its own")
		}
		a.validateSecrets(field+".secrets", ps.Secrets, add)
	}
	return errors.Join(errs...)
}

func (c *Chart) validate(file, field string) error {
	var errs []error
	add := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s.%s: %s", file, field, f, fmt.Sprintf(format, args...)))
	}
	if c.Repository == "" {
		add("repository", "required")
	} else if u, err := url.Parse(c.Repository); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add("repository", "%q must be an http(s) URL of a chart repository", c.Repository)
	}
	if c.Name == "" {
		add("name", "required")
	} else if strings.ContainsAny(c.Name, "/ ") {
		add("name", "%q must be a chart name, not a path", c.Name)
	}
	if c.Version == "" {
		add("version", "required: pin an exact version")
	} else if !exactSemver.MatchString(c.Version) {
		add("version", "%q must be an exact semantic version such as 1.2.3 (no ranges)", c.Version)
	}
	for _, minor := range sortedKeys(c.Versions) {
		if m := kubernetesMinor.FindStringSubmatch(minor); m == nil || m[1] != minor {
			add("versions."+minor, "%q must be a Kubernetes minor such as v1.32", minor)
		}
		if v := c.Versions[minor]; !exactSemver.MatchString(v) {
			add("versions."+minor, "%q must be an exact semantic version such as 1.2.3 (no ranges)", v)
		}
	}
	return errors.Join(errs...)
}

func (a *Addon) validateSecrets(field string, secrets []SecretSpec, add func(field, format string, args ...any)) {
	seen := map[string]bool{}
	for i, s := range secrets {
		f := fmt.Sprintf("%s[%d]", field, i)
		if s.Name == "" || !dnsSubdomain.MatchString(s.Name) {
			add(f+".name", "%q must be a DNS subdomain", s.Name)
		}
		if s.Namespace != "" && !dnsLabel.MatchString(s.Namespace) {
			add(f+".namespace", "%q must be a DNS label", s.Namespace)
		}
		key := s.Namespace + "/" + s.Name
		if seen[key] {
			add(f+".name", "duplicate Secret %q", s.Name)
		}
		seen[key] = true
		if len(s.Data) == 0 {
			add(f+".data", "required: at least one key")
		}
		for _, k := range sortedKeys(s.Data) {
			d := s.Data[k]
			kf := f + ".data." + k
			if !secretKey.MatchString(k) {
				add(kf, "%q is not a valid Secret key", k)
			}
			switch {
			case (d.Credential == "") == (d.Variable == ""):
				add(kf, "set exactly one of credential or variable")
			case d.Optional && d.Credential == "":
				add(kf+".optional", "only a credential may be optional")
			case d.Variable != "" && !varName.MatchString(d.Variable):
				add(kf+".variable", "%q is not a variable name", d.Variable)
			}
		}
	}
}

// Names returns the add-ons' names in install order: what spec.bootstrap
// may name (spec.ValidateOptions.KnownAddons).
func (c *Catalog) Names() []string {
	names := make([]string, len(c.addons))
	for i, a := range c.addons {
		names[i] = a.Name
	}
	return names
}

// Roles maps each add-on that has a role to it (cilium: cni, ccm: ccm).
func (c *Catalog) Roles() map[string]string {
	roles := map[string]string{}
	for _, a := range c.addons {
		if a.Role != "" {
			roles[a.Name] = a.Role
		}
	}
	return roles
}

// Addon returns the entry of that name, or nil.
func (c *Catalog) Addon(name string) *Addon { return c.byName[name] }

// SupportedProviders returns the providers the add-on has a chart for; nil means
// every provider (it has a chart of its own).
func (a *Addon) SupportedProviders() []string {
	if a.Chart != nil {
		return nil
	}
	return sortedKeys(a.Providers)
}

// Resolve returns the add-on as it applies on provider, with each chart's
// default Version (ResolveFor picks it by Kubernetes minor).
func (a *Addon) Resolve(provider string) (Resolved, error) {
	return a.ResolveFor(Target{Provider: provider})
}

// ResolveFor returns the add-on as it applies on the target cluster: its
// provider's chart (or the add-on's) at the version for its Kubernetes
// minor, its provider's values and Secrets.
func (a *Addon) ResolveFor(t Target) (Resolved, error) {
	provider := t.Provider
	ps, hasProvider := a.Providers[provider]
	chart := a.Chart
	if ps.Chart != nil {
		chart = ps.Chart
	}
	if chart == nil {
		return Resolved{}, fmt.Errorf("addons: %w: %s on %q (it has charts for %s)",
			ErrUnsupportedProvider, a.Name, provider, strings.Join(sortedKeys(a.Providers), ", "))
	}
	r := Resolved{
		Name:        a.Name,
		Provider:    provider,
		Order:       a.Order,
		Role:        a.Role,
		Namespace:   a.Namespace,
		Release:     a.Release,
		Chart:       chart.For(t.minor()),
		AddonValues: deepCopyMap(a.Values),
		SecretSpecs: slices.Clone(a.Secrets),
	}
	if hasProvider {
		r.ProviderValues = deepCopyMap(ps.Values)
		r.SecretSpecs = append(r.SecretSpecs, ps.Secrets...)
	}
	for i := range r.SecretSpecs {
		if r.SecretSpecs[i].Namespace == "" {
			r.SecretSpecs[i].Namespace = a.Namespace
		}
	}
	return r, nil
}

// Plan is PlanFor a target of that provider and no Kubernetes version:
// each chart at its default Version.
func (c *Catalog) Plan(names []string, provider string) ([]Resolved, error) {
	return c.PlanFor(names, Target{Provider: provider})
}

// PlanFor returns the named add-ons resolved for the target cluster
// (ResolveFor), in install order (Order, then name) whatever the order of
// names. Every unknown name and every add-on the provider lacks is
// reported; a name given twice is planned once.
func (c *Catalog) PlanFor(names []string, t Target) ([]Resolved, error) {
	want := map[string]bool{}
	var errs []error
	for _, n := range names {
		if c.byName[n] == nil {
			errs = append(errs, fmt.Errorf("addons: %w %q: the catalogue has %s", ErrUnknownAddon, n, strings.Join(c.Names(), ", ")))
			continue
		}
		want[n] = true
	}
	var plan []Resolved
	for _, a := range c.addons {
		if !want[a.Name] {
			continue
		}
		r, err := a.ResolveFor(t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plan = append(plan, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return plan, nil
}
