package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/service"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/store"
)

var testCatalog = service.CatalogView{Providers: []service.ProviderView{
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
	// The lok8s CLI's current shape, in the order of its examples
	// (kernpilot/lok8s examples/capi*/, operator/crds/schema/capi.schema.yaml).
	want := `apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata:
  name: prod
spec:
  kubernetes:
    version: v1.34.2
  cluster:
    domain: prod.example.com
  provider:
    name: hetzner
    config:
      region: fsn1
      sshKeyName: ops
    credentials:
      secretRef: prod-creds
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
	// The parser reads it as the current shape, ignoring nothing.
	d, err := spec.ParseDocument(doc, nil)
	if err != nil || d.Shape != spec.ShapeProvider || len(d.Ignored) != 0 {
		t.Fatalf("ParseDocument: shape %q, ignored %v, error %v", d.Shape, d.Ignored, err)
	}
	// What the form makes is a valid spec.
	if _, err := spec.Load(doc, spec.ValidateOptions{}); err != nil {
		t.Fatalf("the form's spec does not load: %v", err)
	}
}

// seedShapeSpec is the spec the form wrote before it wrote the CLI's
// current shape: the provider's settings, control plane and pool in
// spec.<section>, the credential in spec.credentials.secretName. The
// current shape must give the same cluster from the same inputs, save one
// the form does not lead to: a provider with none of its fields filled
// in, which the seed shape left out (the API then named no provider) and
// the current shape names (the API then names its required fields).
func seedShapeSpec(t *testing.T, f clusterForm, section string) []byte {
	t.Helper()
	provider := mapping()
	add(provider, "region", str(f.Region))
	add(provider, "sshKeyName", str(f.SSHKey))
	cp := mapping()
	add(cp, "replicas", number(f.CPReplicas))
	add(cp, "type", str(f.CPType))
	add(provider, "controlPlane", cp)
	add(provider, "image", str(f.Image))
	add(provider, "network", pairs("enabled", boolean(f.Network)))
	add(provider, "placementGroups", boolean(f.PlacementGroups))
	if f.PoolName != "" || f.PoolReplicas != "" || f.PoolType != "" {
		pool := mapping()
		add(pool, "replicas", number(f.PoolReplicas))
		add(pool, "type", str(f.PoolType))
		workers := mapping()
		workers.Content = append(workers.Content, key(f.PoolName), orEmpty(pool))
		add(provider, "workers", workers)
	}
	s := f.clusterSpec()
	add(s, "credentials", pairs("secretName", str(f.Credential)))
	add(s, section, provider)
	out, err := f.document(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClusterFormSpecSameClusterAsTheSeedShape: for every provider the
// form offers (hetzner, aws, and a provider section of the template
// catalog such as the development inmemory one) and a range of inputs,
// valid and not, the form's current-shape spec parses as the current
// shape with nothing ignored, and gives the same cluster as the seed-shape
// spec the form wrote before (loaded: parsed, defaulted, validated), with
// the same errors, each named as the document wrote it and placed beside
// an input.
func TestClusterFormSpecSameClusterAsTheSeedShape(t *testing.T) {
	t.Parallel()
	catalog := service.CatalogView{Providers: append(slices.Clone(testCatalog.Providers), service.ProviderView{Name: "inmemory", Sections: []string{"inmemory"}})}
	opts := spec.ValidateOptions{ProviderSections: []string{"aws", "hcloud", "hrobot", "inmemory"}}
	full := func(provider, region, cpType, poolType string) clusterForm {
		return clusterForm{Name: "prod", Provider: provider, Version: "v1.34.2", Domain: "prod.example.com", Credential: "prod-creds",
			Region: region, SSHKey: "ops", CPReplicas: "3", CPType: cpType, PoolName: "general", PoolReplicas: "2", PoolType: poolType,
			Addons: []string{"cilium", "ccm"}}
	}
	with := func(f clusterForm, change func(*clusterForm)) clusterForm { change(&f); return f }
	hetzner, aws := full("hetzner", "fsn1", "cax21", "cax31"), full("aws", "eu-central-1", "m6i.large", "m6i.xlarge")
	inmemory := clusterForm{Name: "dev", Provider: "inmemory", Version: "v1.34.2", Domain: "dev.example.com",
		CPReplicas: "1", PoolName: "workers", PoolReplicas: "1"}
	for _, tc := range []struct {
		name  string
		form  clusterForm
		valid bool
	}{
		{"hetzner", hetzner, true},
		{"hetzner, hcloud fields set", with(hetzner, func(f *clusterForm) { f.Image, f.Network, f.PlacementGroups = "k8s-v1.34.2", "false", "false" }), true},
		{"hetzner, hcloud fields on", with(hetzner, func(f *clusterForm) { f.Network, f.PlacementGroups = "true", "true" }), true},
		{"hetzner, default credential", with(hetzner, func(f *clusterForm) { f.Credential = "" }), true},
		{"hetzner, control plane type only", with(hetzner, func(f *clusterForm) { f.CPReplicas = "" }), true},
		{"hetzner, pool type only", with(hetzner, func(f *clusterForm) { f.PoolReplicas = "" }), true},
		{"hetzner, no pool", with(hetzner, func(f *clusterForm) { f.PoolName, f.PoolReplicas, f.PoolType = "", "", "" }), true},
		{"hetzner, no addons", with(hetzner, func(f *clusterForm) { f.Addons = nil }), true},
		{"aws", aws, true},
		{"aws, no control plane", with(aws, func(f *clusterForm) { f.CPReplicas, f.CPType = "", "" }), false},
		{"aws, an hcloud field", with(aws, func(f *clusterForm) { f.Image = "ubuntu" }), false},
		{"inmemory", inmemory, true},
		{"inmemory, control plane unsized", with(inmemory, func(f *clusterForm) { f.CPReplicas = "" }), true},
		{"not numbers or booleans", with(hetzner, func(f *clusterForm) { f.CPReplicas, f.PoolReplicas, f.Network = "three", "2x", "maybe" }), false},
		{"bad values", with(hetzner, func(f *clusterForm) { f.Name, f.Region, f.CPReplicas = "Prod_1", "mars", "2" }), false},
		{"unnamed pool", with(hetzner, func(f *clusterForm) { f.PoolName = "" }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			section := tc.form.section(catalog)
			current, err := tc.form.spec(section)
			if err != nil {
				t.Fatal(err)
			}
			seed := seedShapeSpec(t, tc.form, section)

			doc, perr := spec.ParseDocument(current, opts.ProviderSections)
			if doc == nil || doc.Shape != spec.ShapeProvider || len(doc.Ignored) != 0 {
				t.Fatalf("ParseDocument: %+v, %v\n%s", doc, perr, current)
			}
			if seedDoc, err := spec.ParseDocument(seed, opts.ProviderSections); seedDoc == nil || seedDoc.Shape != spec.ShapeSections {
				t.Fatalf("the seed shape: %+v, %v\n%s", seedDoc, err, seed)
			}

			// Compared defaulted: the form writes the control plane's
			// size where the seed shape left it to the default.
			loaded, err := spec.LoadDocument(current, opts)
			seedLoaded, seedErr := spec.LoadDocument(seed, opts)
			if (err == nil) != tc.valid {
				t.Fatalf("valid %v, want %v: %v\n%s", err == nil, tc.valid, err, current)
			}
			if !reflect.DeepEqual(loaded.Capi, seedLoaded.Capi) {
				t.Fatalf("the cluster differs:\n%s\n%+v\nseed shape:\n%s\n%+v", current, loaded.Capi.Spec, seed, seedLoaded.Capi.Spec)
			}
			// The same errors, each on the field the document wrote.
			var fe, seedFE spec.FieldErrors
			errors.As(err, &fe)
			errors.As(seedErr, &seedFE)
			var got, want []string
			for _, e := range fe {
				got = append(got, e.Field+": "+e.Message)
			}
			for _, e := range seedFE {
				want = append(want, doc.Field(e.Field)+": "+e.Message)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("errors:\n%s\nwant those of the seed shape:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// Each error the form can have is placed beside an input.
			if _, rest := placeErrors(apiFieldErrors(fe), tc.form.formFields()); len(rest) != 0 {
				t.Errorf("errors beside no input: %v", rest)
			}
		})
	}
}

func apiFieldErrors(fe spec.FieldErrors) []service.FieldError {
	out := make([]service.FieldError, len(fe))
	for i, e := range fe {
		out[i] = service.FieldError{Field: e.Field, Message: e.Message}
	}
	return out
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
		want                      string // the lines of spec.provider.config after sshKeyName
		image2                    string
		network2, placement2      bool
	}{
		{name: "defaults", want: "", image2: "ubuntu-24.04", network2: true, placement2: true},
		{name: "all set", image: "k8s-v1.35.4", network: "false", placement: "false",
			want: "      image: k8s-v1.35.4\n      network:\n        enabled: false\n      placementGroups: false\n", image2: "k8s-v1.35.4"},
		{name: "on", network: "true", placement: "true",
			want: "      network:\n        enabled: true\n      placementGroups: true\n", image2: "ubuntu-24.04", network2: true, placement2: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := base
			f.Image, f.Network, f.PlacementGroups = tc.image, tc.network, tc.placement
			doc, err := f.spec("hcloud")
			if err != nil {
				t.Fatal(err)
			}
			if want := "    config:\n      region: fsn1\n      sshKeyName: ops\n" + tc.want + "  controlPlane:\n"; !strings.Contains(string(doc), want) {
				t.Fatalf("spec:\n%s\nwant it to hold:\n%s", doc, want)
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
	_, err := spec.LoadDocument(doc, spec.ValidateOptions{})
	var fe spec.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "spec.provider.config.network.enabled" || !strings.Contains(fe[0].Message, "boolean") {
		t.Errorf("network maybe: %v", err)
	}
}

// newTestHandler is a dashboard with no database or API behind it, for
// rendering pages.
func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New(Config{Store: &store.Store{}, API: http.NotFoundHandler(), Service: &service.Service{}, Keyring: newTestKeyring(t)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newTestKeyring is a keyring of a new key.
func newTestKeyring(t *testing.T) *seal.Keyring {
	t.Helper()
	key, err := seal.ParseKey(seal.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := seal.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return keyring
}

// The page offers the Hetzner Cloud fields with the form's values chosen.
func TestNewClusterPageHCloudFields(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t)
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
	_, err = spec.LoadDocument(doc, spec.ValidateOptions{})
	var fe spec.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Load: %v\n%s", err, doc)
	}
	got := map[string]bool{}
	for _, e := range fe {
		got[e.Field] = true
	}
	for _, field := range []string{"metadata.name", "spec.kubernetes.version", "spec.controlPlane.replicas"} {
		if !got[field] {
			t.Errorf("no error for %s: %v\n%s", field, fe, doc)
		}
	}
}

func TestPlaceErrors(t *testing.T) {
	t.Parallel()
	f := clusterForm{Provider: "hetzner", PoolName: "general"}
	inputs := f.formFields()
	errs := []service.FieldError{
		{Field: "metadata.name", Message: "is required"},
		{Field: "spec.controlPlane.replicas", Message: "must be odd"},
		{Field: "spec.workers.general.replicas", Message: "must be at least 0"},
		{Field: "spec.provider.name", Message: `unknown provider "nope"`},
		{Field: "spec.bootstrap[1].name", Message: `unknown addon "nope"`},
		{Field: "spec.provider.config.region", Message: "must be one of fsn1, nbg1"},
		{Field: "spec.gitops.repo", Message: "is required"},
		{Field: "spec.provider.config.image", Message: "must not be empty"},
		{Field: "spec.provider.config.network.enabled", Message: "must be a boolean"},
		{Field: "spec.workers.general.replicas", Message: "at most 9 with placement groups on"},
		{Field: "spec.provider.credentials.secretRef", Message: `no credential "x"`},
		{Field: "spec.credentials.secretName", Message: `no credential "prod-credentials"`},
		{Field: "spec.provider.config.flavor", Message: "unknown field"},
	}
	placed, rest := placeErrors(errs, inputs)
	want := map[string][]string{
		"f-name":          {"is required"},
		"f-cp-replicas":   {"must be odd"},
		"f-pool-replicas": {"must be at least 0", "at most 9 with placement groups on"},
		"f-image":         {"must not be empty"},
		"f-network":       {"must be a boolean"},
		"f-provider":      {`unknown provider "nope"`, "spec.provider.config.flavor: unknown field"},
		"f-addons":        {`spec.bootstrap[1].name: unknown addon "nope"`},
		"f-region":        {"must be one of fsn1, nbg1"},
		"f-credential":    {`no credential "x"`, `no credential "prod-credentials"`},
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
	lines, rest := annotateSpec(doc, &service.Problem{Errors: []service.FieldError{
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
	lines, rest = annotateSpec("a: 1\nb: [\n", &service.Problem{Detail: "did not find expected node content", Line: 2})
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
		problem   service.Problem
		wantLines bool
		wantRest  int
		detail    string
	}{
		{"yaml, field errors", modeYAML, service.Problem{Detail: "2 field(s) are invalid", Errors: []service.FieldError{
			{Field: "spec.hcloud.region", Message: "is required"}, {Field: "status", Message: "unknown field"}}},
			true, 1, "1 error is marked beside the spec's lines; these are not:"},
		{"yaml, syntax error", modeYAML, service.Problem{Detail: "mapping values are not allowed here", Line: 2},
			true, 0, "mapping values are not allowed here"},
		{"yaml, no field named", modeYAML, service.Problem{Detail: `a cluster named "prod" exists`},
			false, 0, `a cluster named "prod" exists`},
		{"form", modeForm, service.Problem{Detail: "1 field(s) are invalid", Errors: []service.FieldError{{Field: "metadata.name", Message: "is required"}}},
			false, 0, "Fix what is marked beside the fields (1 error), then check again."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &newClusterData{Mode: tc.mode, Spec: doc}
			shown := placeProblem(d, &tc.problem, clusterForm{}.formFields())
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
		creds                []service.CredentialView
		provider, credential string
	}{
		{"no credentials: the first provider", nil, "aws", ""},
		{"the newest infrastructure credential", []service.CredentialView{
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
	cat := service.CatalogView{
		Providers: []service.ProviderView{
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
		f := defaultClusterForm(cat, []service.CredentialView{{Name: "c", Provider: tc.provider}})
		if !reflect.DeepEqual(f.Addons, tc.want) {
			t.Errorf("%s: addons %v, want %v", tc.provider, f.Addons, tc.want)
		}
	}
}
