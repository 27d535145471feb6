package spec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// A provider section named by the template catalog, not a Go type.
const fakeDoc = `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: fake}
spec:
  kubernetes: {version: v1.32.0}
  cluster: {domain: fake.example.com}
  fakecloud:
    zone: nbg1
    controlPlane: {type: cx22}
    workers:
      small: {type: cx22, replicas: 2}
      big: {type: cx52}
`

var fakeOpts = ValidateOptions{ProviderSections: []string{"aws", "fakecloud", "hcloud", "hrobot"}}

func TestLoadGenericSection(t *testing.T) {
	t.Parallel()
	c, err := Load([]byte(fakeDoc), fakeOpts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	sec := c.Spec.Extra["fakecloud"]
	if sec == nil || sec["zone"] != "nbg1" {
		t.Fatalf("spec.fakecloud = %v", sec)
	}
	// Defaults as for built-in sections.
	if got := sec["controlPlane"].(map[string]any)["replicas"]; got != json.Number("3") {
		t.Errorf("controlPlane.replicas = %v, want default 3", got)
	}
	if got := sec["workers"].(map[string]any)["big"].(map[string]any)["replicas"]; got != json.Number("1") {
		t.Errorf("workers.big.replicas = %v, want default 1", got)
	}
	if got := c.Provider(); got != "" {
		t.Errorf("Provider() = %q, want \"\" (the catalog decides)", got)
	}
	if got := c.Spec.ProviderFields(); !reflect.DeepEqual(got, []string{"spec.fakecloud"}) {
		t.Errorf("ProviderFields() = %v", got)
	}

	// Round trip: inline in JSON, after the known fields, and back.
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"fakecloud":{`) || strings.Contains(string(data), "Extra") {
		t.Errorf("marshalled spec: %s", data)
	}
	if i, j := strings.Index(string(data), `"cluster"`), strings.Index(string(data), `"fakecloud"`); i < 0 || j < i {
		t.Errorf("fakecloud not after the known fields: %s", data)
	}
	again, err := Load(data, fakeOpts)
	if err != nil {
		t.Fatalf("Load of marshalled spec: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(c, again) {
		t.Errorf("round trip changed the spec:\n%#v\n%#v", c.Spec.Extra, again.Spec.Extra)
	}
	var viaJSON Capi
	if err := json.Unmarshal(data, &viaJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, &viaJSON) {
		t.Errorf("json.Unmarshal differs from Load:\n%#v\n%#v", c.Spec.Extra, viaJSON.Spec.Extra)
	}
	// ParseSections reads a stored spec with the sections.
	if _, err := ParseSections(data, fakeOpts.ProviderSections); err != nil {
		t.Errorf("ParseSections: %v", err)
	}
}

func TestGenericSectionNeedsTheCatalog(t *testing.T) {
	t.Parallel()
	_, err := Load([]byte(fakeDoc), ValidateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.fakecloud: unknown field") {
		t.Fatalf("err = %v, want spec.fakecloud: unknown field", err)
	}
	if _, err := Parse([]byte(fakeDoc)); err == nil {
		t.Fatal("Parse accepted a section no one named")
	}
}

func TestValidateGenericSection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, replace, with, field, msg string
	}{
		{"even control plane", "controlPlane: {type: cx22}", "controlPlane: {type: cx22, replicas: 2}", "spec.fakecloud.controlPlane.replicas", "must be odd"},
		{"zero control plane", "controlPlane: {type: cx22}", "controlPlane: {replicas: 0}", "spec.fakecloud.controlPlane.replicas", "must be at least 1"},
		{"string replicas", "replicas: 2}", "replicas: two}", "spec.fakecloud.workers.small.replicas", "must be an integer"},
		{"negative pool", "replicas: 2}", "replicas: -1}", "spec.fakecloud.workers.small.replicas", "must not be negative"},
		{"bad pool name", "small:", "Small_Pool:", `spec.fakecloud.workers.Small_Pool`, "DNS-1123"},
		{"workers not an object", "    workers:\n      small: {type: cx22, replicas: 2}\n      big: {type: cx52}\n", "    workers: [a]\n", "spec.fakecloud.workers", "must be an object"},
		{"section not an object", "  fakecloud:\n    zone: nbg1\n", "  fakecloud: nbg1\n  x:\n    zone: nbg1\n", "spec.fakecloud", "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := strings.Replace(fakeDoc, tc.replace, tc.with, 1)
			if doc == fakeDoc {
				t.Fatal("replacement not found")
			}
			_, err := Load([]byte(doc), fakeOpts)
			var fes FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("err = %v, want FieldErrors", err)
			}
			for _, fe := range fes {
				if fe.Field == tc.field && strings.Contains(fe.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no %s: %s in %v", tc.field, tc.msg, err)
		})
	}
}

func TestProviderSectionsRule(t *testing.T) {
	t.Parallel()
	withAWS := strings.Replace(fakeDoc, "  fakecloud:\n", "  aws: {region: eu-central-1, flavor: eks}\n  fakecloud:\n", 1)
	twoOfOne := strings.Replace(fakeDoc, "  fakecloud:\n", "  fakeedge: {sites: 2}\n  fakecloud:\n", 1)
	opts2 := ValidateOptions{ProviderSections: []string{"aws", "fakecloud", "fakeedge"}}
	for _, tc := range []struct {
		name string
		doc  string
		opts ValidateOptions
		want string // "" = valid
	}{
		{"generic alone", fakeDoc, fakeOpts, ""},
		{"generic and aws", withAWS, fakeOpts, "spec: spec.aws and spec.fakecloud: only one provider may be set"},
		{"two sections, two providers", twoOfOne, opts2, "spec: spec.fakecloud and spec.fakeedge: only one provider may be set"},
		{"two sections, one provider", twoOfOne, ValidateOptions{ProviderSections: opts2.ProviderSections,
			SectionProviders: map[string]string{"fakecloud": "fake", "fakeedge": "fake"}}, ""},
		{"none", "apiVersion: cluster.lok8s.dev/v1beta1\nkind: Capi\nmetadata: {name: x}\nspec: {kubernetes: {version: v1.32.0}, cluster: {domain: x.example.com}}\n",
			fakeOpts, "spec: one provider section is required: spec.aws, spec.fakecloud, spec.hcloud or spec.hrobot"},
		{"built-in not installed", strings.Replace(withAWS, "  fakecloud:\n    zone", "  other:\n    zone", 1),
			ValidateOptions{ProviderSections: []string{"other"}}, "spec.aws: no provider for this section is installed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load([]byte(tc.doc), tc.opts)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
