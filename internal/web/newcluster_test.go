package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

var testCatalog = api.CatalogView{Providers: []api.ProviderView{
	{Name: "aws", Sections: []string{"aws"}}, {Name: "hetzner", Sections: []string{"hcloud", "hrobot"}},
}}

func TestClusterFormSpec(t *testing.T) {
	t.Parallel()
	f := clusterForm{Name: "prod", Provider: "hetzner", Version: "v1.34.2", Domain: "prod.example.com", Credential: "prod-creds",
		Region: "fsn1", SSHKey: "ops", CPReplicas: "3", CPType: "cax21", PoolName: "general", PoolReplicas: "2", PoolType: "cax31",
		Addons: []string{"cilium", "ccm"}}
	section := f.section(testCatalog)
	if section != "hcloud" {
		t.Fatalf("section %q, want the provider's main one, hcloud", section)
	}
	doc, err := f.spec(section)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: prod
spec:
  kubernetes:
    version: v1.34.2
  cluster:
    domain: prod.example.com
  credentials:
    secretName: prod-creds
  hcloud:
    region: fsn1
    sshKeyName: ops
    controlPlane:
      replicas: 3
      type: cax21
    workers:
      general:
        replicas: 2
        type: cax31
  bootstrap:
    - cilium
    - ccm
`
	if string(doc) != want {
		t.Fatalf("spec:\n%s\nwant:\n%s", doc, want)
	}
	// What the form makes is a valid spec.
	if _, err := spec.Load(doc, spec.ValidateOptions{}); err != nil {
		t.Fatalf("the form's spec does not load: %v", err)
	}
}

// The Hetzner Cloud fields: the image, the private network and placement
// groups, each left out when left at the API's default.
func TestClusterFormHCloudFields(t *testing.T) {
	t.Parallel()
	base := clusterForm{Name: "prod", Provider: "hetzner", Version: "v1.35.4", Domain: "prod.example.com",
		Region: "fsn1", SSHKey: "ops", CPReplicas: "3", CPType: "cax21"}
	for _, tc := range []struct {
		name                      string
		image, network, placement string
		want                      string // the lines after controlPlane
		image2                    string
		network2, placement2      bool
	}{
		{name: "defaults", want: "", image2: "ubuntu-24.04", network2: true, placement2: true},
		{name: "all set", image: "k8s-v1.35.4", network: "false", placement: "false",
			want: "    image: k8s-v1.35.4\n    network:\n      enabled: false\n    placementGroups: false\n", image2: "k8s-v1.35.4"},
		{name: "on", network: "true", placement: "true",
			want: "    network:\n      enabled: true\n    placementGroups: true\n", image2: "ubuntu-24.04", network2: true, placement2: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := base
			f.Image, f.Network, f.PlacementGroups = tc.image, tc.network, tc.placement
			doc, err := f.spec("hcloud")
			if err != nil {
				t.Fatal(err)
			}
			if want := "      type: cax21\n" + tc.want; !strings.HasSuffix(string(doc), want) {
				t.Fatalf("spec:\n%s\nwant it to end with:\n%s", doc, want)
			}
			c, err := spec.Load(doc, spec.ValidateOptions{})
			if err != nil {
				t.Fatalf("the form's spec does not load: %v\n%s", err, doc)
			}
			h := c.Spec.HCloud
			if *h.Image != tc.image2 || *h.Network.Enabled != tc.network2 || *h.PlacementGroups != tc.placement2 {
				t.Errorf("loaded image %s, network %v, placement groups %v", *h.Image, *h.Network.Enabled, *h.PlacementGroups)
			}
		})
	}
	// What is not a boolean goes as text, for the API to name.
	f := base
	f.Network = "maybe"
	doc, _ := f.spec("hcloud")
	_, err := spec.Load(doc, spec.ValidateOptions{})
	var fe spec.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "spec.hcloud.network.enabled" || !strings.Contains(fe[0].Message, "boolean") {
		t.Errorf("network maybe: %v", err)
	}
}

// The page offers the Hetzner Cloud fields with the form's values chosen.
func TestNewClusterPageHCloudFields(t *testing.T) {
	t.Parallel()
	key, err := seal.ParseKey(seal.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := seal.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Store: &store.Store{}, API: http.NotFoundHandler(), Keyring: keyring})
	if err != nil {
		t.Fatal(err)
	}
	d := &newClusterData{Mode: modeForm, Catalog: testCatalog,
		Form:        clusterForm{Provider: "hetzner", Image: "snap", Network: "false"},
		FieldErrors: map[string][]string{"f-placement-groups": {"at most 9"}}}
	rec := httptest.NewRecorder()
	h.render(rec, httptest.NewRequest(http.MethodGet, "/clusters/new", nil), http.StatusOK, "new", pageData{Data: d})
	page := rec.Body.String()
	for _, want := range []string{
		`<input id="f-image" name="image" value="snap"`,
		`<select id="f-network" name="network">`,
		`<option value="false" selected>off</option>`,
		`<select id="f-placement-groups" name="placementGroups" aria-invalid="true" aria-describedby="f-placement-groups-err">`,
		`<option value="">on from 3 control-plane machines (the default)</option>`,
		`at most 9</p>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

// An empty form leaves fields out (so the API names what is missing) and
// passes on what is not a number as text (so the API names its type).
func TestClusterFormSpecLeavesErrorsToTheAPI(t *testing.T) {
	t.Parallel()
	f := clusterForm{Provider: "hetzner", CPReplicas: "three"}
	doc, err := f.spec(f.section(testCatalog))
	if err != nil {
		t.Fatal(err)
	}
	_, err = spec.Load(doc, spec.ValidateOptions{})
	var fe spec.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Load: %v\n%s", err, doc)
	}
	got := map[string]bool{}
	for _, e := range fe {
		got[e.Field] = true
	}
	for _, field := range []string{"metadata.name", "spec.kubernetes.version", "spec.hcloud.controlPlane.replicas"} {
		if !got[field] {
			t.Errorf("no error for %s: %v\n%s", field, fe, doc)
		}
	}
}

func TestPlaceErrors(t *testing.T) {
	t.Parallel()
	f := clusterForm{Provider: "hetzner", PoolName: "general"}
	inputs := f.formFields("hcloud")
	errs := []api.FieldError{
		{Field: "metadata.name", Message: "is required"},
		{Field: "spec.hcloud.controlPlane.replicas", Message: "must be odd"},
		{Field: "spec.hcloud.workers.general.replicas", Message: "must be at least 0"},
		{Field: "spec.hcloud", Message: "is required"},
		{Field: "spec.bootstrap[1].name", Message: `unknown addon "nope"`},
		{Field: "spec.hcloud.region", Message: "must be one of fsn1, nbg1"},
		{Field: "spec.gitops.repo", Message: "is required"},
		{Field: "spec.hcloud.image", Message: "must not be empty"},
		{Field: "spec.hcloud.network.enabled", Message: "must be a boolean"},
		{Field: "spec.hcloud.workers.general.replicas", Message: "at most 9 with spec.hcloud.placementGroups on"},
	}
	placed, rest := placeErrors(errs, inputs)
	want := map[string][]string{
		"f-name":          {"is required"},
		"f-cp-replicas":   {"must be odd"},
		"f-pool-replicas": {"must be at least 0", "at most 9 with spec.hcloud.placementGroups on"},
		"f-image":         {"must not be empty"},
		"f-network":       {"must be a boolean"},
		"f-provider":      {"is required"},
		"f-addons":        {`spec.bootstrap[1].name: unknown addon "nope"`},
		"f-region":        {"must be one of fsn1, nbg1"},
	}
	if !reflect.DeepEqual(placed, want) {
		t.Errorf("placed:\n%v\nwant:\n%v", placed, want)
	}
	// spec.gitops is not on the form: it is shown above it.
	if len(rest) != 1 || rest[0].Field != "spec.gitops.repo" {
		t.Errorf("unplaced: %v", rest)
	}
}

func TestAnnotateSpec(t *testing.T) {
	t.Parallel()
	doc := `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: prod
spec:
  hcloud:
    controlPlane:
      replicas: 2
    workers:
      gpu:
        replicas: -1
  bootstrap:
    - cilium
    - nope
`
	lines, rest := annotateSpec(doc, &api.Problem{Errors: []api.FieldError{
		{Field: "spec.hcloud.controlPlane.replicas", Message: "must be odd"},
		{Field: "spec.hcloud.workers.gpu.replicas", Message: "must be at least 0"},
		{Field: "spec.hcloud.region", Message: "is required"},
		{Field: "spec.bootstrap[1]", Message: "unknown addon"},
		{Field: "status", Message: "unknown field"},
	}})
	got := map[int]string{}
	for _, l := range lines {
		for _, e := range l.Errors {
			got[l.Number] += e.Field + ";"
		}
	}
	want := map[int]string{
		8:  "spec.hcloud.controlPlane.replicas;",
		11: "spec.hcloud.workers.gpu.replicas;",
		6:  "spec.hcloud.region;", // missing: on its parent's line
		14: "spec.bootstrap[1];",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines: %v, want %v", got, want)
	}
	if len(rest) != 1 || rest[0].Field != "status" {
		t.Errorf("unplaced: %v", rest)
	}
	if len(lines) != 14 || lines[3].Text != "  name: prod" {
		t.Errorf("lines kept: %d, %q", len(lines), lines[3].Text)
	}

	// A syntax error goes on its line.
	lines, rest = annotateSpec("a: 1\nb: [\n", &api.Problem{Detail: "did not find expected node content", Line: 2})
	if len(rest) != 0 || len(lines[1].Errors) != 1 || !strings.Contains(lines[1].Errors[0].Message, "expected node") {
		t.Errorf("syntax error: %+v %v", lines, rest)
	}
}

func TestPlaceProblem(t *testing.T) {
	t.Parallel()
	doc := "metadata:\n  name: prod\nspec:\n  hcloud: {}\n"
	for _, tc := range []struct {
		name      string
		mode      string
		problem   api.Problem
		wantLines bool
		wantRest  int
		detail    string
	}{
		{"yaml, field errors", modeYAML, api.Problem{Detail: "2 field(s) are invalid", Errors: []api.FieldError{
			{Field: "spec.hcloud.region", Message: "is required"}, {Field: "status", Message: "unknown field"}}},
			true, 1, "1 error is marked beside the spec's lines; these are not:"},
		{"yaml, syntax error", modeYAML, api.Problem{Detail: "mapping values are not allowed here", Line: 2},
			true, 0, "mapping values are not allowed here"},
		{"yaml, no field named", modeYAML, api.Problem{Detail: `a cluster named "prod" exists`},
			false, 0, `a cluster named "prod" exists`},
		{"form", modeForm, api.Problem{Detail: "1 field(s) are invalid", Errors: []api.FieldError{{Field: "metadata.name", Message: "is required"}}},
			false, 0, "Fix what is marked beside the fields (1 error), then check again."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &newClusterData{Mode: tc.mode, Spec: doc}
			shown := placeProblem(d, &tc.problem, clusterForm{}.formFields("hcloud"))
			if (d.Lines != nil) != tc.wantLines || len(shown.Errors) != tc.wantRest || shown.Detail != tc.detail {
				t.Fatalf("lines %v, rest %v, detail %q", d.Lines != nil, shown.Errors, shown.Detail)
			}
			if tc.wantLines && shown.Line != 0 {
				t.Fatal("the line is still shown above the form")
			}
			if tc.mode == modeForm && len(d.FieldErrors["f-name"]) != 1 {
				t.Fatalf("field errors: %v", d.FieldErrors)
			}
		})
	}
}

func TestDefaultClusterForm(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name                 string
		creds                []api.CredentialView
		provider, credential string
	}{
		{"no credentials: the first provider", nil, "aws", ""},
		{"the newest infrastructure credential", []api.CredentialView{
			{Name: "old", Provider: "aws", UpdatedAt: now.Add(-time.Hour)},
			{Name: "hz", Provider: "hetzner", UpdatedAt: now.Add(-time.Minute)},
			{Name: "repo", Provider: "git", UpdatedAt: now}, // not an infrastructure provider
		}, "hetzner", "hz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := defaultClusterForm(testCatalog, tc.creds)
			if f.Provider != tc.provider || f.Credential != tc.credential || f.Version == "" || f.CPReplicas != "3" {
				t.Fatalf("form %+v, want provider %q and credential %q", f, tc.provider, tc.credential)
			}
		})
	}
}

// TestDefaultClusterFormChecksRequiredAddons: the addons the provider
// cannot do without (its requiredAddons roles) start checked, so the form
// does not lead to a spec the API refuses for want of a CNI or CCM.
func TestDefaultClusterFormChecksRequiredAddons(t *testing.T) {
	t.Parallel()
	cat := api.CatalogView{
		Providers: []api.ProviderView{
			{Name: "hetzner", Sections: []string{"hcloud"}, RequiredAddons: []string{"cni", "ccm"}},
			{Name: "inmemory", Sections: []string{"inmemory"}},
		},
		Addons:     []string{"cilium", "ccm", "cert-manager"},
		AddonRoles: map[string]string{"cilium": "cni", "ccm": "ccm"},
	}
	for _, tc := range []struct {
		provider string
		want     []string
	}{
		{"hetzner", []string{"cilium", "ccm"}},
		{"inmemory", nil},
	} {
		f := defaultClusterForm(cat, []api.CredentialView{{Name: "c", Provider: tc.provider}})
		if !reflect.DeepEqual(f.Addons, tc.want) {
			t.Errorf("%s: addons %v, want %v", tc.provider, f.Addons, tc.want)
		}
	}
}
