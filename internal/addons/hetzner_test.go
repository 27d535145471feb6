package addons_test

import (
	"errors"
	"io/fs"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/spec"
)

func templateCatalog(t *testing.T) *capi.Catalog {
	t.Helper()
	sub, err := fs.Sub(provisioner.Templates, "templates")
	if err != nil {
		t.Fatal(err)
	}
	c, err := capi.LoadCatalog(sub)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// seedSpec is the seed's example (examples/prod.yaml) for provider
// hetzner, or an EC2 cluster for aws (at v1.34.1: the aws provider's
// requirements start at v1.32, and its CCM image table with them); edit
// changes it before it loads.
func seedSpec(t *testing.T, provider string, edit ...func(string) string) *spec.Capi {
	t.Helper()
	doc := `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: prod}
spec:
  kubernetes: {version: v1.31.10}
  cluster: {domain: prod.example.com}
  hcloud:
    region: fsn1
    sshKeyName: my-ssh-key
    controlPlane: {replicas: 3, type: cax21}
    workers:
      general: {replicas: 3, type: cax21}
      gpu: {replicas: 1, type: ccx33}
  bootstrap: [cilium, ccm, cert-manager]
`
	if provider == "aws" {
		doc = strings.Replace(doc, `  hcloud:
    region: fsn1
    sshKeyName: my-ssh-key`, `  aws:
    region: eu-central-1
    sshKeyName: ops`, 1)
		doc = strings.Replace(doc, "version: v1.31.10", "version: v1.34.1", 1)
	}
	for _, e := range edit {
		doc = e(doc)
	}
	s, err := spec.Load([]byte(doc), templateCatalog(t).ValidateOptions(spec.ValidateOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readSpec is s as the catalog reads it (capi.NewSpec).
func readSpec(t *testing.T, s *spec.Capi) *capi.Spec {
	t.Helper()
	read, err := capi.NewSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return read
}

// clusterVariables are what the bootstrap step substitutes into addon
// values: the workload's (CLUSTER_NAME, API_SERVER_HOST, API_SERVER_PORT,
// HCLOUD_NETWORK) and the cluster's (capi.Catalog.Variables).
func clusterVariables(t *testing.T, s *spec.Capi) map[string]string {
	t.Helper()
	vars, err := templateCatalog(t).Variables(readSpec(t, s), "default")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"CLUSTER_NAME": s.Metadata.Name, "API_SERVER_HOST": "203.0.113.10", "API_SERVER_PORT": "443", "HCLOUD_NETWORK": s.Metadata.Name} {
		vars[k] = v
	}
	return vars
}

// planValues are addon's plan on s's cluster of provider and the values it
// installs with: the catalogue's layers with the variables the bootstrap
// step supplies (clusterVariables).
func planValues(t *testing.T, s *spec.Capi, provider, addon string) (addons.Resolved, map[string]any) {
	t.Helper()
	plan, err := productionCatalog(t).PlanFor([]string{addon}, addons.Target{Provider: provider, KubernetesVersion: s.Spec.Kubernetes.Version})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := addons.Values(plan[0].Layers(nil, nil), clusterVariables(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return plan[0], vals
}

func at(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

// The ccm's and cilium's values follow spec.hcloud.network, consistently
// with what the cluster is rendered with. With the private network the
// hcloud CCM manages routes for the cluster CIDR, which must be the
// cluster's pod CIDR and lie inside the network's range, and the CNI must
// route natively (hcloud-cloud-controller-manager
// docs/explanation/private-networks.md, docs/guides/private-network-setup.md:
// networking.enabled and networking.clusterCIDR, Cilium routing-mode
// native); without it, the CCM's networking is off and Cilium tunnels.
func TestHetznerAddonValuesFollowTheNetwork(t *testing.T) {
	t.Parallel()
	cat := templateCatalog(t)
	for _, enabled := range []bool{true, false} {
		s := seedSpec(t, "hetzner", func(doc string) string {
			if enabled {
				return doc
			}
			return strings.Replace(doc, "    region: fsn1\n", "    region: fsn1\n    network: {enabled: false}\n", 1)
		})
		r, err := cat.Render(capi.RenderInput{Spec: readSpec(t, s)})
		if err != nil {
			t.Fatal(err)
		}
		var podCIDR, networkCIDR string
		for _, o := range r.Objects {
			switch o.GetKind() {
			case "Cluster":
				podCIDR = at(o.Object, "spec", "clusterNetwork", "pods", "cidrBlocks").([]any)[0].(string)
			case "HetznerCluster":
				networkCIDR, _ = at(o.Object, "spec", "hcloudNetwork", "cidrBlock").(string)
				if got := at(o.Object, "spec", "hcloudNetwork", "enabled"); got != enabled {
					t.Fatalf("network %v: HetznerCluster network enabled %v", enabled, got)
				}
			}
		}

		_, ccm := planValues(t, s, "hetzner", "ccm")
		if got := at(ccm, "networking", "enabled"); got != enabled {
			t.Errorf("network %v: ccm networking.enabled %v", enabled, got)
		}
		_, cilium := planValues(t, s, "hetzner", "cilium")
		if !enabled {
			if got := at(cilium, "routingMode"); got != "tunnel" || at(cilium, "tunnelProtocol") != "vxlan" {
				t.Errorf("no network: cilium routing %v, want tunnel (vxlan)", got)
			}
			if got := at(cilium, "ipv4NativeRoutingCIDR"); got != "" {
				t.Errorf("no network: native routing CIDR %v", got)
			}
			continue
		}
		if got := at(ccm, "networking", "clusterCIDR"); got != podCIDR {
			t.Errorf("ccm clusterCIDR %v, want the cluster's pod CIDR %s", got, podCIDR)
		}
		network, err := netip.ParsePrefix(networkCIDR)
		if err != nil {
			t.Fatalf("HetznerCluster network range %q: %v", networkCIDR, err)
		}
		pods, err := netip.ParsePrefix(podCIDR)
		if err != nil {
			t.Fatalf("pod CIDR %q: %v", podCIDR, err)
		}
		if !network.Contains(pods.Addr()) || pods.Bits() < network.Bits() {
			t.Errorf("ccm routes %s outside the network %s", pods, network)
		}
		if got := at(cilium, "routingMode"); got != "native" {
			t.Errorf("cilium routingMode %v, want native", got)
		}
		if got := at(cilium, "ipv4NativeRoutingCIDR"); got != networkCIDR {
			t.Errorf("cilium ipv4NativeRoutingCIDR %v, want the network's %s", got, networkCIDR)
		}
		if got := at(cilium, "MTU"); got != int64(1450) && got != float64(1450) && got != 1450 {
			t.Errorf("cilium MTU %v (%T), want the private network's 1450", got, got)
		}
		if at(cilium, "autoDirectNodeRoutes") != false || at(cilium, "ipam", "mode") != "kubernetes" {
			t.Errorf("cilium: autoDirectNodeRoutes %v, ipam %v", at(cilium, "autoDirectNodeRoutes"), at(cilium, "ipam", "mode"))
		}
	}
}

// 6. Cilium's operator schedules before any node is initialized, as CAPH's
// templates/cilium/values.yaml has it: tolerating CAPI's
// node.cluster.x-k8s.io/uninitialized and the CCM's
// node.cloudprovider.kubernetes.io/uninitialized (cilium/cilium#41098), the
// control plane's taint and not-ready nodes. The CCM tolerates CAPI's
// taint too: it sets the provider ID CAPI waits for.
func TestHetznerAddonTolerations(t *testing.T) {
	t.Parallel()
	s := seedSpec(t, "hetzner")
	_, cilium := planValues(t, s, "hetzner", "cilium")
	tolerated := map[string]bool{}
	for _, tol := range at(cilium, "operator", "tolerations").([]any) {
		m := tol.(map[string]any)
		if m["operator"] != "Exists" {
			t.Errorf("toleration %v", m)
		}
		tolerated[m["key"].(string)] = true
	}
	for _, key := range []string{"node.cluster.x-k8s.io/uninitialized", "node.cloudprovider.kubernetes.io/uninitialized",
		"node-role.kubernetes.io/control-plane", "node.kubernetes.io/not-ready", "CriticalAddonsOnly"} {
		if !tolerated[key] {
			t.Errorf("cilium's operator does not tolerate %s", key)
		}
	}
	if at(cilium, "operator", "replicas") != float64(1) && at(cilium, "operator", "replicas") != 1 {
		t.Errorf("operator replicas %v", at(cilium, "operator", "replicas"))
	}
	if at(cilium, "operator", "rollOutPods") != true || at(cilium, "rollOutCiliumPods") != true {
		t.Errorf("cilium pods do not roll out on configuration changes")
	}
	_, ccm := planValues(t, s, "hetzner", "ccm")
	tols, _ := at(ccm, "additionalTolerations").([]any)
	if len(tols) != 1 || tols[0].(map[string]any)["key"] != "node.cluster.x-k8s.io/uninitialized" {
		t.Errorf("ccm additionalTolerations %v", tols)
	}
}

// 6. The hcloud CCM's chart is the one tested with the cluster's
// Kubernetes minor (hcloud-cloud-controller-manager
// docs/reference/version-policy.md: v1.29.2 for 1.31, v1.30.1 for 1.32,
// latest, 1.35.0, for 1.33 to 1.36).
func TestHetznerCCMVersionPolicy(t *testing.T) {
	t.Parallel()
	c := productionCatalog(t)
	for version, want := range map[string]string{
		"v1.31.10": "1.29.2", "v1.32.4": "1.30.1", "v1.33.0": "1.35.0", "v1.34.2": "1.35.0",
		"v1.35.4": "1.35.0", "v1.36.1": "1.35.0", "v1.35": "1.35.0", "": "1.35.0",
	} {
		plan, err := c.PlanFor([]string{"ccm", "cilium"}, addons.Target{Provider: "hetzner", KubernetesVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		if got := plan[1].Chart.Version; plan[1].Name != "ccm" || got != want {
			t.Errorf("Kubernetes %q: ccm chart %s, want %s", version, got, want)
		}
		if plan[0].Chart.Version != "1.18.3" || plan[1].Chart.Versions != nil {
			t.Errorf("Kubernetes %q: cilium %s, resolved versions %v", version, plan[0].Chart.Version, plan[1].Chart.Versions)
		}
	}
}

// A chart's versions, by Kubernetes minor, are data: picked for the
// target's minor, the chart's version otherwise, and checked at load.
func TestChartVersionsByKubernetesMinor(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"x.yaml": {Data: []byte(`
name: x
namespace: ns
chart: {repository: https://charts.example.com, name: x, version: 2.0.0, versions: {v1.31: 1.0.0}}
providers:
  p: {chart: {repository: https://p.example.com, name: px, version: 3.0.0, versions: {v1.32: 2.9.0, v1.33: 3.0.0-rc.1}}}
`)}}
	c, err := addons.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ provider, version, want string }{
		{"q", "v1.31.2", "1.0.0"}, {"q", "v1.32.0", "2.0.0"}, {"q", "", "2.0.0"},
		{"p", "v1.32.9", "2.9.0"}, {"p", "v1.33", "3.0.0-rc.1"}, {"p", "v1.31.0", "3.0.0"}, {"p", "not a version", "3.0.0"},
	} {
		plan, err := c.PlanFor([]string{"x"}, addons.Target{Provider: tc.provider, KubernetesVersion: tc.version})
		if err != nil {
			t.Fatal(err)
		}
		if plan[0].Chart.Version != tc.want {
			t.Errorf("%s on %q: %s, want %s", tc.provider, tc.version, plan[0].Chart.Version, tc.want)
		}
	}
	if plan, _ := c.Plan([]string{"x"}, "p"); plan[0].Chart.Version != "3.0.0" || !reflect.DeepEqual(plan[0].Chart, addons.Chart{Repository: "https://p.example.com", Name: "px", Version: "3.0.0"}) {
		t.Errorf("Plan without a version: %+v", plan[0].Chart)
	}

	_, err = addons.LoadCatalog(fstest.MapFS{"x.yaml": {Data: []byte(
		"name: x\nnamespace: ns\nchart: {repository: https://c.example.com, name: x, version: 1.0.0, versions: {'1.31': 1.0.0, v1.32: '^1.0', v1.33.1: 1.0.0}}\n")}})
	if !errors.Is(err, addons.ErrCatalog) || !hasAll(err.Error(), `chart.versions.1.31: "1.31" must be a Kubernetes minor`,
		`chart.versions.v1.32: "^1.0" must be an exact semantic version`, `chart.versions.v1.33.1: "v1.33.1" must be a Kubernetes minor`) {
		t.Errorf("LoadCatalog: %v", err)
	}
}

// Bare-metal workers (spec.hrobot): the hcloud CCM runs in Robot mode
// (chart 1.35.0 values.yaml robot.enabled; docs/guides/robot/quickstart.md),
// without its routes (docs/explanation/robot-support.md: routing with Robot
// is not supported; the spec's network defaults off), and reads the Robot
// credentials from its Secret's keys robot-user and robot-password, which
// are left out for a credential without them.
func TestHetznerCCMRobotMode(t *testing.T) {
	t.Parallel()
	withRobot := func(doc string) string {
		return strings.Replace(doc, "  bootstrap:", "  hrobot:\n    workers:\n      metal: {replicas: 1, type: ax41}\n  bootstrap:", 1)
	}
	for _, tc := range []struct {
		name       string
		edit       []func(string) string
		robot, net bool
	}{
		{"hcloud", nil, false, true},
		{"hrobot", []func(string) string{withRobot}, true, false},
	} {
		s := seedSpec(t, "hetzner", tc.edit...)
		plan, ccm := planValues(t, s, "hetzner", "ccm")
		if got := at(ccm, "robot", "enabled"); got != tc.robot {
			t.Errorf("%s: robot.enabled %v, want %v", tc.name, got, tc.robot)
		}
		if got := at(ccm, "networking", "enabled"); got != tc.net {
			t.Errorf("%s: networking.enabled %v, want %v", tc.name, got, tc.net)
		}
		vars := clusterVariables(t, s)
		secrets, err := plan.Secrets(map[string]string{"hcloudToken": "t", "robotUser": "u", "robotPassword": "p"}, vars)
		if err != nil {
			t.Fatal(err)
		}
		if d := secrets[0].Data; string(d["robot-user"]) != "u" || string(d["robot-password"]) != "p" || string(d["token"]) != "t" {
			t.Errorf("%s: secret %s keys %v", tc.name, secrets[0].Name, d)
		}
		secrets, err = plan.Secrets(map[string]string{"hcloudToken": "t"}, vars)
		if err != nil {
			t.Fatalf("%s: without robot credentials: %v", tc.name, err)
		}
		if _, ok := secrets[0].Data["robot-user"]; ok {
			t.Errorf("%s: robot-user without a robot credential", tc.name)
		}
	}
}
