package addons_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/addons"
)

func productionCatalog(t *testing.T) *addons.Catalog {
	t.Helper()
	fsys, err := fs.Sub(provisioner.Addons, "addons")
	if err != nil {
		t.Fatal(err)
	}
	c, err := addons.LoadCatalog(fsys)
	if err != nil {
		t.Fatalf("LoadCatalog(embedded): %v", err)
	}
	return c
}

func TestProductionCatalog(t *testing.T) {
	t.Parallel()
	c := productionCatalog(t)
	if got := strings.Join(c.Names(), ","); got != "cilium,ccm,aws-ebs-csi-driver,cert-manager,flux,argo" {
		t.Errorf("Names = %s", got)
	}
	tests := []struct {
		provider string
		names    []string
		want     []string // name=repository/chart
	}{
		{"hetzner", []string{"cert-manager", "ccm", "cilium"}, []string{
			"cilium=https://helm.cilium.io/cilium",
			"ccm=https://charts.hetzner.cloud/hcloud-cloud-controller-manager",
			"cert-manager=https://charts.jetstack.io/cert-manager",
		}},
		{"aws", []string{"cert-manager", "aws-ebs-csi-driver", "ccm", "cilium"}, []string{
			"cilium=https://helm.cilium.io/cilium",
			"ccm=https://kubernetes.github.io/cloud-provider-aws/aws-cloud-controller-manager",
			"aws-ebs-csi-driver=https://kubernetes-sigs.github.io/aws-ebs-csi-driver/aws-ebs-csi-driver",
			"cert-manager=https://charts.jetstack.io/cert-manager",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.provider, func(t *testing.T) {
			plan, err := c.Plan(tc.names, tc.provider)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range plan {
				got = append(got, r.Name+"="+r.Chart.Repository+"/"+r.Chart.Name)
				if r.Chart.Version == "" {
					t.Errorf("%s: no pinned version", r.Name)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("plan\n got %v\nwant %v", got, tc.want)
			}
			// Every catalogue layer renders with the variables the pipeline
			// supplies: the workload's and the cluster's (capi.Catalog.Variables).
			vars := clusterVariables(t, seedSpec(t, tc.provider))
			for _, r := range plan {
				if _, err := addons.Values(r.Layers(nil, nil), vars); err != nil {
					t.Errorf("%s values: %v", r.Name, err)
				}
				if _, err := r.Secrets(map[string]string{"hcloudToken": "x"}, vars); err != nil {
					t.Errorf("%s secrets: %v", r.Name, err)
				}
			}
		})
	}
	// cert-manager installs its CRDs.
	plan, _ := c.Plan([]string{"cert-manager"}, "aws")
	vals, err := addons.Values(plan[0].Layers(nil, nil), nil)
	if err != nil || vals["crds"].(map[string]any)["enabled"] != true {
		t.Errorf("cert-manager values = %v, %v", vals, err)
	}
	// The hcloud Secret the ccm reads.
	plan, err = c.Plan([]string{"ccm"}, "hetzner")
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := plan[0].Secrets(map[string]string{"hcloudToken": "t"}, map[string]string{"HCLOUD_NETWORK": "n"})
	if err != nil || len(secrets) != 1 || secrets[0].Name != "hcloud" || secrets[0].Namespace != "kube-system" ||
		string(secrets[0].Data["token"]) != "t" || string(secrets[0].Data["network"]) != "n" {
		t.Errorf("ccm secrets = %v, %v", secrets, err)
	}
	plan, _ = c.Plan([]string{"ccm"}, "aws")
	if len(plan[0].SecretSpecs) != 0 {
		t.Errorf("aws ccm secrets = %v, want none", plan[0].SecretSpecs)
	}
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	c := productionCatalog(t)
	_, err := c.Plan([]string{"cilium", "metallb", "ccm"}, "gcp")
	if !errors.Is(err, addons.ErrUnknownAddon) || !errors.Is(err, addons.ErrUnsupportedProvider) ||
		!hasAll(err.Error(), `"metallb"`, `ccm on "gcp"`, "aws, hetzner") {
		t.Errorf("Plan: %v", err)
	}
	plan, err := c.Plan([]string{"cilium", "cilium"}, "gcp") // cilium has a chart for all
	if err != nil || len(plan) != 1 {
		t.Errorf("Plan twice = %v, %v", plan, err)
	}
}

func TestLoadCatalogErrors(t *testing.T) {
	t.Parallel()
	const chart = "chart: {repository: https://charts.example.com, name: c, version: 1.0.0}\n"
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"empty", map[string]string{"README.md": "x"}, []string{"no *.yaml files"}},
		{"unknown field", map[string]string{"a.yaml": "name: a\nnamespace: ns\nverison: 1\n" + chart}, []string{"a.yaml", `unknown field "verison"`}},
		{"name differs from file", map[string]string{"a.yaml": "name: b\nnamespace: ns\n" + chart}, []string{"a.yaml: name:", "a.yaml"}},
		{"missing fields", map[string]string{"a.yaml": "name: a\n"}, []string{"a.yaml: namespace: required", "a.yaml: chart: required"}},
		{"version range", map[string]string{"a.yaml": "name: a\nnamespace: ns\nchart: {repository: https://x.io, name: c, version: ^1.0}\n"}, []string{"a.yaml: chart.version", "exact"}},
		{"oci repository", map[string]string{"a.yaml": "name: a\nnamespace: ns\nchart: {repository: oci://x.io/c, name: c, version: 1.0.0}\n"}, []string{"a.yaml: chart.repository"}},
		{"provider without chart", map[string]string{"a.yaml": "name: a\nnamespace: ns\nproviders: {aws: {values: {x: 1}}}\n"}, []string{"a.yaml: providers.aws.chart: required"}},
		{"secret with two sources", map[string]string{"a.yaml": "name: a\nnamespace: ns\n" + chart + "secrets: [{name: s, data: {k: {credential: c, variable: V}}}]\n"}, []string{"a.yaml: secrets[0].data.k: set exactly one"}},
		{"bad variable name", map[string]string{"a.yaml": "name: a\nnamespace: ns\n" + chart + "providers: {aws: {secrets: [{name: s, data: {k: {variable: 1x}}}]}}\n"}, []string{"providers.aws.secrets[0].data.k.variable"}},
		{"same release twice", map[string]string{
			"a.yaml": "name: a\nnamespace: ns\nrelease: r\n" + chart,
			"b.yaml": "name: b\nnamespace: ns\nrelease: r\n" + chart,
		}, []string{"b.yaml: release: ns/r is also installed by a.yaml"}},
		{"every file reported", map[string]string{"a.yaml": "name: a\n", "b.yaml": "name: b\n"}, []string{"a.yaml: namespace", "b.yaml: namespace"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fsys := fstest.MapFS{}
			for name, data := range tc.files {
				fsys[name] = &fstest.MapFile{Data: []byte(data)}
			}
			_, err := addons.LoadCatalog(fsys)
			if err == nil || !errors.Is(err, addons.ErrCatalog) || !hasAll(err.Error(), tc.want...) {
				t.Errorf("LoadCatalog: %v\nwant ErrCatalog with %q", err, tc.want)
			}
		})
	}
}
