package capi

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/drone/envsubst/v2"
	"github.com/drone/envsubst/v2/parse"
	"sigs.k8s.io/cluster-api/cmd/clusterctl/client/yamlprocessor"

	"lok8s.dev/provisioner/internal/spec"
)

// Errors of Detect, wrapped with the spec fields concerned.
var (
	// ErrNoProvider: the spec sets no provider section the catalog knows.
	ErrNoProvider = errors.New("no provider")
	// ErrAmbiguousProvider: the spec's sections select more than one provider.
	ErrAmbiguousProvider = errors.New("ambiguous provider")
)

// Catalog is the set of providers and templates: a file system whose root
// holds core/ and providers/<name>/provider.yaml.
type Catalog struct {
	fsys      fs.FS
	providers []*Provider // sorted by name
	bySection map[string]*Provider
	templates map[string][]byte // path -> content, every template named
	// parsed holds each valid template parsed once: its variables (with
	// their defaults) and its substitution template, so that rendering
	// neither scans nor parses a template again.
	parsed  map[string]parsedTemplate
	checked map[string]bool   // templates checked while loading, valid or not
	files   map[string]string // path -> content, every value file named
}

// Provider is one infrastructure provider of the catalog.
type Provider struct {
	// Name is the manifest's name, e.g. "hetzner".
	Name string
	// Dir is the provider's folder in the catalog, e.g. providers/hetzner.
	Dir string
	// Manifest is the provider.yaml as read.
	Manifest *Manifest
}

// Sections returns the spec sections that select the provider.
func (p *Provider) Sections() []string { return slices.Clone(p.Manifest.Sections) }

// Flavors returns the names of the provider's flavors.
func (p *Provider) Flavors() []string {
	names := make([]string, len(p.Manifest.Flavors))
	for i, f := range p.Manifest.Flavors {
		names[i] = f.Name
	}
	return names
}

// LoadCatalog reads every providers/<name>/provider.yaml of fsys and checks
// it: the manifest's schema, that no two providers claim a spec section,
// that every template and patch it names exists, has valid variable
// syntax, is YAML with apiVersion, kind and metadata.name in every
// document, and uses only variables the catalog defines (built-in, the
// manifest's variables, values and value files) or gives a default, and
// that every value file exists. Errors name the file.
func LoadCatalog(fsys fs.FS) (*Catalog, error) {
	manifests, err := fs.Glob(fsys, "providers/*/"+ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("capi: listing providers: %w", err)
	}
	if len(manifests) == 0 {
		return nil, fmt.Errorf("capi: no providers/*/%s in the template catalog", ManifestFile)
	}
	slices.Sort(manifests)
	c := &Catalog{fsys: fsys, bySection: map[string]*Provider{}, templates: map[string][]byte{}, parsed: map[string]parsedTemplate{}, checked: map[string]bool{}, files: map[string]string{}}
	var errs []error
	names := map[string]string{}
	for _, file := range manifests {
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		m, err := parseManifest(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		p := &Provider{Name: m.Name, Dir: path.Dir(file), Manifest: m}
		if other, dup := names[m.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: provider name %q is also used by %s", file, m.Name, other))
			continue
		}
		names[m.Name] = file
		for _, s := range m.Sections {
			if other, dup := c.bySection[s]; dup {
				errs = append(errs, fmt.Errorf("%s: section %q is also claimed by provider %s (%s/%s)", file, s, other.Name, other.Dir, ManifestFile))
				continue
			}
			c.bySection[s] = p
		}
		if err := c.loadTemplates(file, m); err != nil {
			errs = append(errs, err)
		}
		c.providers = append(c.providers, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("capi: loading template catalog: %w", err)
	}
	slices.SortFunc(c.providers, func(a, b *Provider) int { return strings.Compare(a.Name, b.Name) })
	return c, nil
}

// parsedTemplate is a template's variables (name → default, nil for
// none), its parsed substitution template and, when it has the forms that
// allow it, its objects compiled (compiledTemplate).
type parsedTemplate struct {
	vars     map[string]*string
	tmpl     *envsubst.Template
	compiled *compiledTemplate
}

// spacedVariable finds a variable written with spaces inside its braces
// ("${ NAME }"), a form clusterctl's processor still accepts.
var spacedVariable = regexp.MustCompile(`\$\{(\s+[A-Za-z0-9_$]+\s*|[A-Za-z0-9_$]+\s+)\}`)

// loadTemplates reads and checks the templates a manifest names.
func (c *Catalog) loadTemplates(manifestFile string, m *Manifest) error {
	known := knownVariables(m)
	proc := yamlprocessor.NewSimpleProcessor()
	var errs []error
	for _, file := range m.templateFiles() {
		if !fs.ValidPath(file) {
			errs = append(errs, fmt.Errorf("%s: template path %q must be relative to the catalog root", manifestFile, file))
			continue
		}
		if _, valid := c.templates[file]; c.checked[file] && !valid {
			continue // reported already; a valid one is checked against this manifest's variables too
		}
		c.checked[file] = true
		data, ok := c.templates[file]
		if !ok {
			var err error
			data, err = fs.ReadFile(c.fsys, file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: template %w", manifestFile, err))
				continue
			}
		}
		if spaced := spacedVariable.Find(data); spaced != nil {
			// clusterctl rewrites these before substituting; we take
			// only the canonical form, so that a parsed template is the
			// text as written.
			errs = append(errs, fmt.Errorf("%s: variable %q: write it without spaces, as ${NAME}", file, spaced))
			continue
		}
		vars, err := proc.GetVariableMap(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: variable syntax: %w", file, err))
			continue
		}
		tmpl, err := envsubst.Parse(string(data))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: variable syntax: %w", file, err))
			continue
		}
		var unknown []string
		for _, name := range sortedKeys(vars) {
			if vars[name] == nil && !known[name] {
				unknown = append(unknown, name)
			}
		}
		if len(unknown) > 0 {
			errs = append(errs, fmt.Errorf("%s: variables %s are neither built in nor defined by %s, and have no default",
				file, strings.Join(unknown, ", "), manifestFile))
			continue
		}
		// Every variable set to a placeholder, the result must be YAML
		// documents with apiVersion and kind.
		out, err := proc.Process(data, func(string) (string, error) { return "x", nil })
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		if _, err := decodeObjects(out); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		pt := parsedTemplate{vars: vars, tmpl: tmpl}
		if tree, err := parse.Parse(string(data)); err == nil {
			pt.compiled = compileTemplate(data, tree)
		}
		c.templates[file] = data
		c.parsed[file] = pt
	}
	for _, file := range m.valueFiles() {
		if !fs.ValidPath(file) {
			errs = append(errs, fmt.Errorf("%s: value file path %q must be relative to the catalog root", manifestFile, file))
			continue
		}
		if _, ok := c.files[file]; ok {
			continue
		}
		data, err := fs.ReadFile(c.fsys, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: value file %w", manifestFile, err))
			continue
		}
		c.files[file] = string(data)
	}
	return errors.Join(errs...)
}

// knownVariables are the variables a manifest's templates may use without
// a default.
func knownVariables(m *Manifest) map[string]bool {
	known := map[string]bool{}
	for _, v := range builtinVariables {
		known[v] = true
	}
	add := func(r Rendering) {
		for k := range r.Variables {
			known[k] = true
		}
		for k := range r.Values {
			known[k] = true
		}
		for k := range r.ValueFiles {
			known[k] = true
		}
		for _, it := range r.Items {
			for k := range it.Variables {
				known[k] = true
			}
		}
		for _, p := range r.Pools {
			for k := range p.Values {
				known[k] = true
			}
		}
	}
	add(m.Rendering)
	for _, f := range m.Flavors {
		add(f.Rendering)
	}
	return known
}

// Providers returns the catalog's providers, sorted by name.
func (c *Catalog) Providers() []*Provider { return slices.Clone(c.providers) }

// Provider returns the provider of that name, or nil.
func (c *Catalog) Provider(name string) *Provider {
	for _, p := range c.providers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// ProviderSections returns the spec sections that select some provider,
// sorted: what spec.ValidateOptions.ProviderSections expects.
func (c *Catalog) ProviderSections() []string {
	return sortedKeys(c.bySection)
}

// SectionProviders maps each section to its provider's name: what
// spec.ValidateOptions.SectionProviders expects.
func (c *Catalog) SectionProviders() map[string]string {
	m := make(map[string]string, len(c.bySection))
	for s, p := range c.bySection {
		m[s] = p.Name
	}
	return m
}

// ValidateOptions returns opts with the catalog's provider sections set, for
// spec.Load and spec.Validate.
func (c *Catalog) ValidateOptions(opts spec.ValidateOptions) spec.ValidateOptions {
	opts.ProviderSections = c.ProviderSections()
	opts.SectionProviders = c.SectionProviders()
	return opts
}

// Detect returns the provider selected by the spec's provider sections. No
// section, a section no provider claims, or sections of two providers are
// errors (ErrNoProvider, ErrAmbiguousProvider) naming the spec fields.
func (c *Catalog) Detect(s *spec.Capi) (*Provider, error) {
	set := s.Spec.ProviderSections()
	var unclaimed []string
	var found []*Provider
	var fields []string
	for _, name := range set {
		p, ok := c.bySection[name]
		if !ok {
			unclaimed = append(unclaimed, "spec."+name)
			continue
		}
		fields = append(fields, "spec."+name)
		if !slices.Contains(found, p) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) > 1:
		names := make([]string, len(found))
		for i, p := range found {
			names[i] = p.Name
		}
		return nil, fmt.Errorf("%w: %s select different providers (%s): set the sections of one provider only",
			ErrAmbiguousProvider, joinAnd(fields), strings.Join(names, ", "))
	case len(unclaimed) > 0:
		return nil, fmt.Errorf("%w: no installed provider handles %s (known sections: %s)",
			ErrNoProvider, joinAnd(unclaimed), strings.Join(c.sectionFields(), ", "))
	case len(found) == 0:
		return nil, fmt.Errorf("%w: the spec sets no provider section: set one of %s",
			ErrNoProvider, strings.Join(c.sectionFields(), ", "))
	}
	return found[0], nil
}

func (c *Catalog) sectionFields() []string {
	sections := c.ProviderSections()
	for i, s := range sections {
		sections[i] = "spec." + s
	}
	return sections
}

func joinAnd(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
