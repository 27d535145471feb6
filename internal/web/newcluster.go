package web

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
)

// The create page's two ways in: a guided form, or a spec pasted or loaded.
const (
	modeForm = "form"
	modeYAML = "yaml"
)

// clusterForm is the guided form: the fields most clusters set. Anything
// else (more pools, bare metal, GitOps) is written in the YAML editor, which
// the form's spec can be carried over to.
type clusterForm struct {
	Name, Provider, Version, Domain, Credential string
	Region, SSHKey                              string
	CPReplicas, CPType                          string
	PoolName, PoolReplicas, PoolType            string
	Addons                                      []string
	// Hetzner Cloud only (spec.provider.config of provider hetzner): the
	// servers' image, and the private network and placement groups,
	// "true", "false" or "" for the API's default.
	Image, Network, PlacementGroups string
}

func clusterFormOf(r *http.Request) clusterForm {
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	_ = r.ParseForm()
	return clusterForm{
		Name: v("name"), Provider: v("provider"), Version: v("version"), Domain: v("domain"), Credential: v("credential"),
		Region: v("region"), SSHKey: v("sshKeyName"),
		CPReplicas: v("cpReplicas"), CPType: v("cpType"),
		PoolName: v("poolName"), PoolReplicas: v("poolReplicas"), PoolType: v("poolType"),
		Addons: r.PostForm["addons"],
		Image:  v("image"), Network: v("network"), PlacementGroups: v("placementGroups"),
	}
}

// defaultClusterForm is what the form starts with: the provider and
// credential of the tenant's most recently saved infrastructure credential
// (or the first provider when there is none).
func defaultClusterForm(cat service.CatalogView, creds []service.CredentialView) clusterForm {
	f := clusterForm{Version: "v1.34.2", CPReplicas: "3", PoolName: "workers", PoolReplicas: "3"}
	if len(cat.Providers) > 0 {
		f.Provider = cat.Providers[0].Name
	}
	var latest *service.CredentialView
	for i, c := range creds {
		infra := slices.ContainsFunc(cat.Providers, func(p service.ProviderView) bool { return p.Name == c.Provider })
		if infra && (latest == nil || c.UpdatedAt.After(latest.UpdatedAt)) {
			latest = &creds[i]
		}
	}
	if latest != nil {
		f.Provider, f.Credential = latest.Provider, latest.Name
	}
	// The addons the provider cannot do without (a CNI, a CCM) start checked.
	for _, p := range cat.Providers {
		if p.Name != f.Provider {
			continue
		}
		for _, name := range cat.Addons {
			if role := cat.AddonRoles[name]; role != "" && slices.Contains(p.RequiredAddons, role) {
				f.Addons = append(f.Addons, name)
			}
		}
	}
	return f
}

// section is the provider's main spec section (hcloud for hetzner), which
// spec.ProviderName turns into the spec.provider.name the form writes.
func (f clusterForm) section(cat service.CatalogView) string {
	for _, p := range cat.Providers {
		if p.Name == f.Provider && len(p.Sections) > 0 {
			return p.Sections[0]
		}
	}
	return f.Provider
}

// spec writes the form as a Capi document of the lok8s CLI's current
// shape (spec.ShapeProvider, as its operator/crds/schema/capi.schema.yaml
// has it: spec.provider {name, config, credentials.secretRef},
// spec.controlPlane and spec.workers), leaving out what is empty (the
// API's defaults apply) and passing on what it cannot read as given, so
// the API's validation names the field. section is the chosen provider's
// main section (clusterForm.section): spec.ProviderName(section) names it.
//
// The shapes differ on one default: a control plane given no number of
// machines has 1 in this shape and spec.DefaultControlPlaneReplicas (3)
// in the seed's, which the form wrote until it wrote this one. The form
// keeps its meaning: a control plane with a type and no number is written
// with spec.DefaultControlPlaneReplicas.
func (f clusterForm) spec(section string) ([]byte, error) {
	config := mapping()
	add(config, "region", str(f.Region))
	add(config, "sshKeyName", str(f.SSHKey))
	// The Hetzner Cloud fields go to the config of whichever provider is
	// chosen: another's validation names them as unknown there.
	add(config, "image", str(f.Image))
	add(config, "network", pairs("enabled", boolean(f.Network)))
	add(config, "placementGroups", boolean(f.PlacementGroups))
	provider := mapping()
	if section != "" {
		add(provider, "name", str(spec.ProviderName(section)))
	}
	add(provider, "config", config)
	add(provider, "credentials", pairs("secretRef", str(f.Credential)))

	cp := mapping()
	cpReplicas := f.CPReplicas
	if cpReplicas == "" && f.CPType != "" {
		cpReplicas = strconv.Itoa(spec.DefaultControlPlaneReplicas)
	}
	add(cp, "replicas", number(cpReplicas))
	add(cp, "type", str(f.CPType))
	workers := mapping()
	if f.PoolName != "" || f.PoolReplicas != "" || f.PoolType != "" {
		pool := mapping()
		add(pool, "replicas", number(f.PoolReplicas))
		add(pool, "type", str(f.PoolType))
		// An unnamed pool is written as "", for the API to name.
		workers.Content = append(workers.Content, key(f.PoolName), orEmpty(pool))
	}

	s := f.clusterSpec()
	add(s, "provider", provider)
	add(s, "controlPlane", cp)
	add(s, "workers", workers)
	return f.document(s)
}

// clusterSpec starts the form's spec with what both shapes write alike:
// the Kubernetes version and the cluster's domain.
func (f clusterForm) clusterSpec() *yaml.Node {
	s := mapping()
	add(s, "kubernetes", pairs("version", str(f.Version)))
	add(s, "cluster", pairs("domain", str(f.Domain)))
	return s
}

// document ends the form's spec s with its addons and writes it as a Capi
// document named by the form.
func (f clusterForm) document(s *yaml.Node) ([]byte, error) {
	if len(f.Addons) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, a := range f.Addons {
			seq.Content = append(seq.Content, str(a))
		}
		add(s, "bootstrap", seq)
	}
	doc := pairs("apiVersion", str(spec.APIVersion), "kind", str(spec.Kind))
	add(doc, "metadata", pairs("name", str(f.Name)))
	doc.Content = append(doc.Content, key("spec"), orEmpty(s))
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return out.Bytes(), enc.Close()
}

// formFields maps the spec paths the API names in its errors to the form's
// inputs (by id); a path belongs to the input of its longest listed
// prefix. The paths are those of the shape spec writes, as the API names
// them (spec.Document.Field): spec.provider.config.region, not
// spec.hcloud.region; the credential the API defaults (the form left it
// out) is named spec.credentials.secretName.
func (f clusterForm) formFields() map[string]string {
	const config = "spec.provider.config"
	m := map[string]string{
		"metadata": "f-name", "metadata.name": "f-name",
		"spec": "f-provider", "spec.provider": "f-provider", "spec.provider.name": "f-provider", config: "f-provider",
		"spec.kubernetes": "f-version", "spec.kubernetes.version": "f-version",
		"spec.cluster": "f-domain", "spec.cluster.domain": "f-domain",
		"spec.provider.credentials": "f-credential", "spec.provider.credentials.secretRef": "f-credential",
		"spec.credentials": "f-credential", "spec.credentials.secretName": "f-credential",
		config + ".region": "f-region", config + ".sshKeyName": "f-ssh",
		"spec.controlPlane": "f-cp-replicas", "spec.controlPlane.replicas": "f-cp-replicas", "spec.controlPlane.type": "f-cp-type",
		"spec.workers":    "f-pool-name",
		config + ".image": "f-image", config + ".network": "f-network", config + ".network.enabled": "f-network",
		config + ".placementGroups": "f-placement-groups",
		"spec.bootstrap":            "f-addons",
	}
	if f.PoolName != "" {
		pool := "spec.workers." + f.PoolName
		m[pool], m[pool+".replicas"], m[pool+".type"] = "f-pool-name", "f-pool-replicas", "f-pool-type"
	}
	return m
}

// placeErrors sorts field errors by the input they belong to (the one of
// the longest path prefix in inputs, not counting the roots spec and
// metadata); the rest belong to no input.
func placeErrors(errs []service.FieldError, inputs map[string]string) (map[string][]string, []service.FieldError) {
	placed := map[string][]string{}
	var rest []service.FieldError
	for _, e := range errs {
		id := ""
		for p := e.Field; p != ""; p = parentPath(p) {
			if p != e.Field && !strings.ContainsAny(p, ".[") {
				break // a root (spec, metadata) takes only its own errors
			}
			if id = inputs[p]; id != "" {
				break
			}
		}
		if id == "" {
			rest = append(rest, e)
			continue
		}
		msg := e.Message
		if !isFormPath(e.Field, inputs) {
			msg = e.Field + ": " + e.Message
		}
		placed[id] = append(placed[id], msg)
	}
	return placed, rest
}

func isFormPath(p string, inputs map[string]string) bool { _, ok := inputs[p]; return ok }

// parentPath drops a path's last element: spec.bootstrap[1].name →
// spec.bootstrap[1] → spec.bootstrap → spec.
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i > 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i > 0 {
		return p[:i]
	}
	return ""
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

// pairs is a mapping of key, value, ... (values left out when nil).
func pairs(kv ...any) *yaml.Node {
	m := mapping()
	for i := 0; i+1 < len(kv); i += 2 {
		v, _ := kv[i+1].(*yaml.Node)
		add(m, kv[i].(string), v)
	}
	return m
}

// add sets k to value in mapping m, unless value is nil or an empty mapping.
func add(m *yaml.Node, k string, value *yaml.Node) {
	if value == nil || (value.Kind == yaml.MappingNode && len(value.Content) == 0) {
		return
	}
	m.Content = append(m.Content, key(k), value)
}

// key is a mapping's key: a string scalar, "" included.
func key(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// orEmpty is m, or {} when m is an empty mapping (written in flow style).
func orEmpty(m *yaml.Node) *yaml.Node {
	if len(m.Content) == 0 {
		return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	}
	return m
}

// str is a string scalar, or nil for "".
func str(s string) *yaml.Node {
	if s == "" {
		return nil
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// number is an integer scalar, or the text as a string when it is not one
// (the API then reports the field's type), or nil for "".
func number(s string) *yaml.Node {
	if s == "" {
		return nil
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return str(s)
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: s}
}

// boolean is a boolean scalar for "true" or "false", the text as a string
// otherwise (the API then reports the field's type), or nil for "".
func boolean(s string) *yaml.Node {
	if s != "true" && s != "false" {
		return str(s)
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: s}
}

// choiceField is a select of the guided form: the API's default ("") or
// one of Options, with the errors the API gave for it (template "choice").
type choiceField struct {
	ID, Name, Label, Value, Default string
	Options                         []choice
	Errors                          []string
}

type choice struct{ Value, Label string }

// onOffField chooses a boolean: the default (described as def), on or off.
func onOffField(id, name, label, value, def string, errs map[string][]string) choiceField {
	return choiceField{ID: id, Name: name, Label: label, Value: value, Default: def,
		Options: []choice{{"true", "on"}, {"false", "off"}}, Errors: errs[id]}
}

// inputField is one text input of the guided form, with the errors the API
// gave for it (template "input").
type inputField struct {
	ID, Name, Label, Value, Placeholder string
	Numeric                             bool
	Errors                              []string
}

func textField(id, name, label, value, placeholder string, errs map[string][]string) inputField {
	return inputField{ID: id, Name: name, Label: label, Value: value, Placeholder: placeholder, Errors: errs[id]}
}

func numberField(id, name, label, value, placeholder string, errs map[string][]string) inputField {
	f := textField(id, name, label, value, placeholder, errs)
	f.Numeric = true
	return f
}
