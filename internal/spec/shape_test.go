package spec

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The lok8s CLI's current shape: each testdata/upstream-*.yaml (written
// after the shapes of github.com/kernpilot/lok8s examples/capi*/ and
// tests/fixtures/*-cluster.lok8s.yaml) loads without errors, as
// ShapeProvider, reporting the fields it ignores.
func TestLoadProviderShape(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/upstream-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no upstream documents: %v", err)
	}
	ignored := ignoredFields(t)
	for _, file := range files {
		file = filepath.Base(file)
		want, ok := ignored[file]
		if !ok {
			t.Errorf("testdata/ignored-fields.yaml does not list %s", file)
			continue
		}
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data := readTestdata(t, file)
			doc, err := LoadDocument(data, ValidateOptions{})
			if err != nil {
				t.Fatalf("LoadDocument: %v", err)
			}
			if doc.Shape != ShapeProvider {
				t.Errorf("shape %q, want %q", doc.Shape, ShapeProvider)
			}
			var got []string
			for _, i := range doc.Ignored {
				got = append(got, i.Field)
				if i.Reason == "" {
					t.Errorf("%s ignored without a reason", i.Field)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ignored %v, want %v", got, want)
			}
		})
	}
}

// ignoredFields is testdata/ignored-fields.yaml: the fields ignored in each
// upstream document, by file name.
func ignoredFields(t *testing.T) map[string][]string {
	t.Helper()
	var ignored map[string][]string
	if err := yaml.Unmarshal(readTestdata(t, "ignored-fields.yaml"), &ignored); err != nil {
		t.Fatal(err)
	}
	return ignored
}

// A document of the current shape normalises to the same spec as the
// seed's form of the same cluster, defaults included: the control plane
// the document leaves unsized gets the CLI's default of 1 machine, not the
// seed form's 3.
func TestProviderShapeNormalises(t *testing.T) {
	t.Parallel()
	data := readTestdata(t, "upstream-hetzner.yaml")
	current, err := Load(data, ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := Load([]byte(`
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: shop}
spec:
  kubernetes: {version: v1.33.4}
  cluster: {domain: shop.example.com}
  managementCluster: {domain: mgmt.example.com}
  credentials: {secretName: shop-hcloud}
  hcloud:
    region: nbg1
    sshKeyName: shop-key
    image: ubuntu-24.04
    controlPlane: {replicas: 1, type: cpx31}
    workers: {web: {replicas: 2, type: cpx31}}
  bootstrap: [cilium, ccm]
`), ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(current, seed) {
		t.Fatalf("current shape:\n%+v\nseed shape:\n%+v", current.Spec, seed.Spec)
	}

	// The same control plane unsized in the seed's form: 3 machines.
	seedUnsized, err := Load([]byte(strings.Replace(string(mustRender(t, seed, ShapeSections)), `"replicas":1,`, "", 1)), ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := *seedUnsized.Spec.HCloud.ControlPlane.Replicas; r != DefaultControlPlaneReplicas {
		t.Errorf("seed shape's default control plane: %d machines, want %d", r, DefaultControlPlaneReplicas)
	}
	if r := *current.Spec.HCloud.ControlPlane.Replicas; r != DefaultProviderControlPlaneReplicas {
		t.Errorf("current shape's default control plane: %d machines, want %d", r, DefaultProviderControlPlaneReplicas)
	}
}

func TestAddonMapForm(t *testing.T) {
	t.Parallel()
	data := readTestdata(t, "upstream-hetzner-ha.yaml")
	c, err := Load(data, ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Addon{
		{Name: "cilium"},
		{Name: "ccm", Values: map[string]any{"networking": map[string]any{"enabled": true}}},
		{Name: "cert-manager", Version: "v1.16.2"},
	}
	if !reflect.DeepEqual(c.Spec.Bootstrap, want) {
		t.Errorf("bootstrap %#v, want %#v", c.Spec.Bootstrap, want)
	}
}

// Render writes a spec back in the shape it was submitted in, and what it
// writes loads to the same spec, in both shapes.
func TestRenderRoundTrip(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"prod.yaml", "upstream-hetzner.yaml", "upstream-hetzner-ha.yaml", "upstream-aws.yaml", "upstream-hetzner-gitops.yaml"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data := readTestdata(t, file)
			doc, err := LoadDocument(data, ValidateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, shape := range Shapes {
				out := mustRender(t, doc.Capi, shape)
				again, err := LoadDocument(out, ValidateOptions{})
				if err != nil {
					t.Fatalf("%s: Load of the rendering: %v\n%s", shape, err, out)
				}
				if again.Shape != shape {
					t.Errorf("%s: rendering reads as shape %s:\n%s", shape, again.Shape, out)
				}
				if len(again.Ignored) > 0 {
					t.Errorf("%s: rendering has ignored fields %v", shape, again.Ignored)
				}
				if !reflect.DeepEqual(again.Capi, doc.Capi) {
					t.Errorf("%s: round trip changed the spec:\n%s", shape, out)
				}
			}
		})
	}
	data := readTestdata(t, "upstream-hetzner-gitops.yaml")
	c, err := Load(data, ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := string(mustRender(t, c, ShapeProvider))
	for _, want := range []string{`"provider":{"name":"hetzner","config":{`, `"credentials":{"secretRef":"wiki-hcloud"}`,
		`"controlPlane":{"replicas":1,"type":"cax21"}`, `"secretRef":"wiki-git"`} {
		if !strings.Contains(got, want) {
			t.Errorf("rendering lacks %s:\n%s", want, got)
		}
	}
	for _, absent := range []string{`"hcloud"`, `"secretName"`, `"kubehz"`, `"status"`} {
		if strings.Contains(got, absent) {
			t.Errorf("rendering has %s:\n%s", absent, got)
		}
	}
}

func mustRender(t *testing.T, c *Capi, shape Shape) []byte {
	t.Helper()
	out, err := Render(c, shape)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Strict parsing holds in the current shape: every problem is reported
// with its path as the document wrote it.
func TestProviderShapeErrors(t *testing.T) {
	t.Parallel()
	base := readTestdata(t, "upstream-hetzner.yaml")
	edit := func(old, new string) string {
		if !strings.Contains(string(base), old) {
			t.Fatalf("%q not in the base document", old)
		}
		return strings.Replace(string(base), old, new, 1)
	}
	for _, tc := range []struct {
		name string
		doc  string
		want FieldErrors
	}{
		{"unknown provider", edit("name: hetzner", "name: hetzer"), FieldErrors{
			{"spec.provider.name", `unknown provider "hetzer": this service provides hetzner, aws`}}},
		{"no provider name", edit("    name: hetzner\n", ""), FieldErrors{
			{"spec.provider.name", "required: the infrastructure provider, one of hetzner, aws"}}},
		{"misspelt config field", edit("sshKeyName: shop-key", "sshKeyNmae: shop-key"), FieldErrors{
			{"spec.provider.config.sshKeyName", "required"}, {"spec.provider.config.sshKeyNmae", "unknown field"}}},
		{"misspelt provider field", edit("    credentials:\n", "    credential:\n"), FieldErrors{
			{"spec.provider.credential", "unknown field"}}},
		{"misspelt credentials field", edit("secretRef: shop-hcloud", "secretRefs: shop-hcloud"), FieldErrors{
			{"spec.provider.credentials.secretRefs", "unknown field"}}},
		{"invalid region", edit("region: nbg1", "region: mars1"), FieldErrors{
			{"spec.provider.config.region", "must be one of " + strings.Join(HCloudRegions, ", ")}}},
		{"misspelt control plane field", edit("    type: cpx31\n  workers:", "    tpye: cpx31\n  workers:"), FieldErrors{
			{"spec.controlPlane.tpye", "unknown field"}, {"spec.controlPlane.type", "required"}}},
		{"even control plane", edit("  controlPlane:\n", "  controlPlane:\n    replicas: 2\n"), FieldErrors{
			{"spec.controlPlane.replicas", "must be odd (1, 3, 5) for etcd quorum"}}},
		{"wrong pool type", edit("replicas: 2", "replicas: two"), FieldErrors{
			{"spec.workers.web.replicas", "must be an integer, got a string"}}},
		{"configRef", edit("    config:\n", "    configRef: hetzner.yaml\n    config:\n"), FieldErrors{
			{"spec.provider.configRef", "names a file beside the CLI's cluster.lok8s.yaml, which this service cannot read: write its settings inline as spec.provider.config"}}},
		{"provider and a legacy section", edit("  controlPlane:\n", "  hcloud: {region: fsn1}\n  controlPlane:\n"), FieldErrors{
			{"spec.hcloud", "set the provider's settings once, in spec.provider.config: spec.hcloud is the deprecated form"}}},
		{"control plane in config", edit("      image: ubuntu-24.04\n", "      image: ubuntu-24.04\n      controlPlane: {type: x}\n"), FieldErrors{
			{"spec.provider.config.controlPlane", "unknown field: the control plane is spec.controlPlane"}}},
		{"workers without a provider", edit("  provider:\n    name: hetzner\n    config:\n      region: nbg1\n      sshKeyName: shop-key\n      image: ubuntu-24.04\n", "  provider_:\n"), FieldErrors{
			{"spec.provider", "required with spec.controlPlane and spec.workers: name the provider and its settings, such as {name: hetzner, config: {region: fsn1, sshKeyName: my-key}}"},
			{"spec.provider_", "unknown field"}}},
		{"bad map-form addon", edit("    - ccm\n", "    - ccm: [networking]\n"), FieldErrors{
			{"spec.bootstrap[1].ccm", "must be the addon's values, an object, got a list"}}},
		{"misspelt metadata", edit("  name: shop\n", "  name: shop\n  lables: {a: b}\n"), FieldErrors{
			{"metadata.lables", "unknown field"}}},
		{"kubehz not an object", edit("spec:\n", "spec:\n  kubehz: hosted\n"), FieldErrors{
			{"spec.kubehz", "must be an object, got a string"}}},
		{"local not a boolean", edit("local: true", "local: yes please"), FieldErrors{
			{"spec.managementCluster.local", "must be a boolean (true or false), got a string"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load([]byte(tc.doc), ValidateOptions{})
			var errs FieldErrors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v, want field errors", err)
			}
			if !reflect.DeepEqual(errs, tc.want) {
				t.Errorf("errors:\n%v\nwant:\n%v", errs, tc.want)
			}
		})
	}
}

// The deprecated provider section with top-level sizes (the CLI's drivers
// still read spec.hcloud) is the current shape too.
func TestProviderShapeWithLegacySection(t *testing.T) {
	t.Parallel()
	doc, err := LoadDocument([]byte(`
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: mixed}
spec:
  kubernetes: {version: v1.33.4}
  cluster: {domain: mixed.example.com}
  hcloud: {region: fsn1, sshKeyName: k, imagee: x}
  controlPlane: {type: cpx31}
  workers: {a: {type: cpx31}}
  bootstrap: [cilium, ccm]
`), ValidateOptions{})
	var errs FieldErrors
	if !errors.As(err, &errs) || !reflect.DeepEqual(errs, FieldErrors{{"spec.hcloud.imagee", "unknown field"}}) {
		t.Fatalf("errors %v", err)
	}
	if doc.Shape != ShapeProvider || *doc.Capi.Spec.HCloud.ControlPlane.Replicas != 1 || doc.Capi.Spec.HCloud.Workers["a"].Type != "cpx31" {
		t.Errorf("normalised to %+v (shape %s)", doc.Capi.Spec.HCloud, doc.Shape)
	}
}
