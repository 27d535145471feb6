package capi_test

import (
	"io/fs"
	"iter"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/testenv"
)

// The Hetzner renderings the requirements below are checked on: the seed's
// hcloud example (testdata/specs/hcloud.yaml, as examples/prod.yaml: 3
// control-plane machines, pools general 3 and gpu 1), the bare-metal
// flavor, and a cluster without private network from a node image.
var hetznerFlavors = []string{"hcloud", "hcloud-hrobot", "hcloud-public"}

func objectsOf(r *capi.Rendered, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func objectOf(t *testing.T, r *capi.Rendered, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objectsOf(r, kind) {
		if o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// machineHealthChecks yields flavor's MachineHealthChecks, each with what
// want (by name) expects of it; a count other than want's (the control
// plane's and one per pool) and a check want does not name are errors.
func machineHealthChecks[W any](t *testing.T, flavor string, r *capi.Rendered, want map[string]W) iter.Seq2[*unstructured.Unstructured, W] {
	t.Helper()
	mhcs := objectsOf(r, "MachineHealthCheck")
	if len(mhcs) != len(want) {
		t.Errorf("%s: %d MachineHealthChecks, want %d (the control plane's and one per pool)", flavor, len(mhcs), len(want))
	}
	return func(yield func(*unstructured.Unstructured, W) bool) {
		for _, mhc := range mhcs {
			w, ok := want[mhc.GetName()]
			if !ok {
				t.Errorf("%s: unexpected MachineHealthCheck %s", flavor, mhc.GetName())
				continue
			}
			if !yield(mhc, w) {
				return
			}
		}
	}
}

// checkPoolHealthCheckSelects checks that a pool's MachineHealthCheck (named
// as its MachineDeployment) selects that pool's machines and no others:
// what the MachineDeployment labels its machines with, never the control
// plane's.
func checkPoolHealthCheckSelects(t *testing.T, flavor string, r *capi.Rendered, md *unstructured.Unstructured) {
	t.Helper()
	mhc := objectOf(t, r, "MachineHealthCheck", md.GetName())
	sel := field(mhc, "spec", "selector", "matchLabels").(map[string]any)
	machineLabels := field(md, "spec", "template", "metadata", "labels").(map[string]any)
	if sel["cluster.x-k8s.io/deployment-name"] != md.GetName() || sel["cluster.x-k8s.io/control-plane"] != nil {
		t.Errorf("%s: %s's check selects %v", flavor, md.GetName(), sel)
	}
	for k, v := range sel {
		if machineLabels[k] != v {
			t.Errorf("%s: %s's check selects %s=%v, which its machines lack", flavor, md.GetName(), k, v)
		}
	}
}

func field(o *unstructured.Unstructured, path ...string) any {
	v, _, _ := unstructured.NestedFieldNoCopy(o.Object, path...)
	return v
}

func specOf(t *testing.T, c *capi.Catalog, name string) *spec.Capi {
	t.Helper()
	data, err := os.ReadFile("testdata/specs/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return loadSpec(t, c, data)
}

// 1. HetznerCluster.spec.controlPlaneEndpoint is set: CAPH creates the
// control-plane load balancer only then, and otherwise requeues "waiting
// for control-plane endpoint to be set" for ever (CAPH v1.1.8
// pkg/services/hcloud/loadbalancer/loadbalancer.go createOptsFromSpec and
// Reconcile; PR #1684, issue #1600; its hcloud flavor,
// bases/hcloud-hetznerCluster.yaml, sets host "" and port 443). We set the
// port only, so that CAPH's host survives our re-applies
// (TestApplyKeepsCAPHsEndpointHost).
func TestHetznerControlPlaneEndpoint(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for _, name := range hetznerFlavors {
		r := renderFlavor(t, c, name, "")
		hc := objectsOf(r, "HetznerCluster")
		if len(hc) != 1 {
			t.Fatalf("%s: %d HetznerClusters", name, len(hc))
		}
		ep, ok := field(hc[0], "spec", "controlPlaneEndpoint").(map[string]any)
		if !ok || !reflect.DeepEqual(ep, map[string]any{"port": int64(443)}) {
			t.Errorf("%s: controlPlaneEndpoint = %v, want {port: 443}", name, field(hc[0], "spec", "controlPlaneEndpoint"))
		}
		if lb := field(hc[0], "spec", "controlPlaneLoadBalancer", "region"); lb != field(hc[0], "spec", "controlPlaneRegions").([]any)[0] {
			t.Errorf("%s: load balancer region %v", name, lb)
		}
	}
}

// CAPH fills in controlPlaneEndpoint.host with the load balancer's address
// (controllers/hetznercluster_controller.go processControlPlaneEndpoint);
// applying our objects again, as every update does, leaves it.
func TestApplyKeepsCAPHsEndpointHost(t *testing.T) {
	env := testenv.Shared(t)
	c := loadCatalog(t, embedded(t))
	ns := env.Namespace(t)
	r := renderFlavor(t, c, "hcloud", ns)
	applyAll(t, env, r.Objects)
	hc := objectsOf(r, "HetznerCluster")[0]
	key := client.ObjectKeyFromObject(hc)
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(hc.GroupVersionKind())
	// CAPH's controller updates the object as its own field manager.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"controlPlaneEndpoint":{"host":"203.0.113.10","port":443}}}`))
	got.SetNamespace(key.Namespace)
	got.SetName(key.Name)
	if err := env.Client.Patch(ctx(t), got, patch, client.FieldOwner("cluster-api-provider-hetzner")); err != nil {
		t.Fatal(err)
	}
	applyAll(t, env, r.Objects)
	if err := env.Client.Get(ctx(t), key, got); err != nil {
		t.Fatal(err)
	}
	if host := field(got, "spec", "controlPlaneEndpoint", "host"); host != "203.0.113.10" {
		t.Errorf("after our re-apply the endpoint host is %v, want CAPH's 203.0.113.10", host)
	}
}

// nodeSetupScript is templates/providers/hetzner/node-setup.sh.
func nodeSetupScript(t *testing.T) string {
	t.Helper()
	data, err := fs.ReadFile(embedded(t), "providers/hetzner/node-setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// kubeadmConfigs returns each kubeadm config spec of a rendering: the
// KubeadmControlPlane's and each KubeadmConfigTemplate's, by object name.
func kubeadmConfigs(r *capi.Rendered) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, o := range r.Objects {
		switch o.GetKind() {
		case "KubeadmControlPlane":
			out[o.GetName()], _ = field(o, "spec", "kubeadmConfigSpec").(map[string]any)
		case "KubeadmConfigTemplate":
			out[o.GetName()], _ = field(o, "spec", "template", "spec").(map[string]any)
		}
	}
	return out
}

func fileAt(cfg map[string]any, path string) map[string]any {
	files, _ := cfg["files"].([]any)
	for _, f := range files {
		if m := f.(map[string]any); m["path"] == path {
			return m
		}
	}
	return nil
}

func kubeletArgs(cfg map[string]any, config string) map[string]any {
	args := map[string]any{}
	c, _ := cfg[config].(map[string]any)
	nr, _ := c["nodeRegistration"].(map[string]any)
	list, _ := nr["kubeletExtraArgs"].([]any)
	for _, a := range list {
		m := a.(map[string]any)
		args[m["name"].(string)] = m["value"]
	}
	return args
}

// 2. Hetzner's stock ubuntu-24.04 has no container runtime, kubelet or
// kubeadm (CAPH README; docs/caph/02-topics/03-node-image.md): every
// Hetzner node, control plane and every pool (bare metal too), writes
// lok8s-node-setup with its kubeadm config's files and runs it, with the
// cluster's version, before kubeadm (as CAPH's hcloud-kcp-ubuntu and
// kct-md-0-ubuntu bases install the software in preKubeadmCommands). The
// kubelet keeps cloud-provider external (the hcloud CCM). The servers boot
// spec.hcloud.image. AWS renders none of it: its AMIs have the software.
func TestHetznerNodeSoftware(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	script := nodeSetupScript(t)
	for _, name := range hetznerFlavors {
		s := specOf(t, c, name)
		r := renderFlavor(t, c, name, "")
		cfgs := kubeadmConfigs(r)
		pools := len(s.Spec.HCloud.Workers)
		if s.Spec.HRobot != nil {
			pools += len(s.Spec.HRobot.Workers)
		}
		if len(cfgs) != 1+pools {
			t.Fatalf("%s: %d kubeadm configs, want the control plane's and one per pool (%d)", name, len(cfgs), pools)
		}
		for obj, cfg := range cfgs {
			f := fileAt(cfg, "/usr/local/sbin/lok8s-node-setup")
			if f == nil || f["content"] != script || f["permissions"] != "0755" || f["owner"] != "root:root" {
				t.Errorf("%s %s: lok8s-node-setup is not written as node-setup.sh, 0755: %v", name, obj, f)
			}
			want := []any{"/usr/local/sbin/lok8s-node-setup " + s.Spec.Kubernetes.Version}
			if got := cfg["preKubeadmCommands"]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: preKubeadmCommands %v, want %v", name, obj, got, want)
			}
			configs := []string{"joinConfiguration"}
			if strings.HasSuffix(obj, "-control-plane") {
				configs = append(configs, "initConfiguration")
				cc, _ := cfg["clusterConfiguration"].(map[string]any)
				cm, _ := cc["controllerManager"].(map[string]any)
				if !reflect.DeepEqual(cm["extraArgs"], []any{map[string]any{"name": "cloud-provider", "value": "external"}}) {
					t.Errorf("%s: controller manager args %v", name, cm["extraArgs"])
				}
			}
			for _, config := range configs {
				if got := kubeletArgs(cfg, config)["cloud-provider"]; got != "external" {
					t.Errorf("%s %s %s: kubelet cloud-provider %v, want external", name, obj, config, got)
				}
			}
		}
		for _, mt := range objectsOf(r, "HCloudMachineTemplate") {
			if img := field(mt, "spec", "template", "spec", "imageName"); img != *s.Spec.HCloud.Image {
				t.Errorf("%s %s: imageName %v, want spec.hcloud.image %s", name, mt.GetName(), img, *s.Spec.HCloud.Image)
			}
		}
	}
	// The default image, and the one the spec names.
	if img := *specOf(t, c, "hcloud").Spec.HCloud.Image; img != "ubuntu-24.04" {
		t.Errorf("default image %s", img)
	}
	if img := *specOf(t, c, "hcloud-public").Spec.HCloud.Image; img != "k8s-v1.35.4-ubuntu-24.04" {
		t.Errorf("spec.hcloud.image %s", img)
	}
	for _, name := range []string{"aws-ec2", "aws-eks"} {
		for obj, cfg := range kubeadmConfigs(renderFlavor(t, c, name, "")) {
			if cfg["files"] != nil || cfg["preKubeadmCommands"] != nil {
				t.Errorf("%s %s: node setup rendered on AWS", name, obj)
			}
		}
	}
}

// 3. Placement groups, as CAPH's placement-group patches
// (bases/hcloud-hetznerCluster-placementGroup_patch.yaml,
// hcloud-mt-control-plane-placementGroup_patch.yaml,
// hcloud-mt-md-0-placementGroup_patch.yaml): one spread group for the
// control plane and one per HCloud pool, each HCloudMachineTemplate naming
// its own; on by default from 3 control-plane machines; none for bare metal.
func TestHetznerPlacementGroups(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	groupsOf := func(r *capi.Rendered) []string {
		var names []string
		groups, _ := field(objectsOf(r, "HetznerCluster")[0], "spec", "hcloudPlacementGroups").([]any)
		for _, g := range groups {
			m := g.(map[string]any)
			if m["type"] != "spread" {
				t.Errorf("placement group %v is not spread", m)
			}
			names = append(names, m["name"].(string))
		}
		return names
	}
	templateGroups := func(r *capi.Rendered) map[string]any {
		out := map[string]any{}
		for _, mt := range objectsOf(r, "HCloudMachineTemplate") {
			out[mt.GetName()] = field(mt, "spec", "template", "spec", "placementGroupName")
		}
		return out
	}

	r := renderFlavor(t, c, "hcloud", "") // 3 control-plane machines
	if got := groupsOf(r); !slices.Equal(got, []string{"control-plane", "md-general", "md-gpu"}) {
		t.Errorf("placement groups %v", got)
	}
	want := map[string]any{"prod-control-plane": "control-plane", "prod-md-general": "md-general", "prod-md-gpu": "md-gpu"}
	if got := templateGroups(r); !reflect.DeepEqual(got, want) {
		t.Errorf("templates' placement groups %v, want %v", got, want)
	}

	r = renderFlavor(t, c, "hcloud-hrobot", "") // 1 control-plane machine: off by default
	if got := groupsOf(r); got != nil {
		t.Errorf("hrobot: placement groups %v, want none", got)
	}
	s := specOf(t, c, "hcloud-hrobot")
	s.Spec.HCloud.PlacementGroups = ptr(true)
	r, err := c.Render(capi.RenderInput{Spec: readSpec(t, s)})
	if err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(r); !slices.Equal(got, []string{"control-plane", "md-general"}) {
		t.Errorf("hrobot with placementGroups: %v, want the control plane's and the HCloud pool's only", got)
	}
	for _, bm := range objectsOf(r, "HetznerBareMetalMachineTemplate") {
		if pg := field(bm, "spec", "template", "spec", "placementGroupName"); pg != nil {
			t.Errorf("bare metal %s in placement group %v", bm.GetName(), pg)
		}
	}

	s = specOf(t, c, "hcloud")
	s.Spec.HCloud.PlacementGroups = ptr(false)
	if r, err = c.Render(capi.RenderInput{Spec: readSpec(t, s)}); err != nil {
		t.Fatal(err)
	}
	if got := groupsOf(r); got != nil {
		t.Errorf("placementGroups false: %v", got)
	}
	for name, pg := range templateGroups(r) {
		if pg != nil {
			t.Errorf("placementGroups false: %s in %v", name, pg)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func cidr(t *testing.T, s any) netip.Prefix {
	t.Helper()
	str, _ := s.(string)
	p, err := netip.ParsePrefix(str)
	if err != nil {
		t.Fatalf("CIDR %v: %v", s, err)
	}
	return p
}

// 4. The network's pieces agree. With the private network the hcloud CCM
// manages routes for the pods, so the cluster (pod) CIDR must lie inside
// the network's range (and out of the servers' subnet) and the CNI routes
// natively (hcloud-cloud-controller-manager docs/explanation/private-networks.md,
// docs/guides/private-network-setup.md); without it the CNI tunnels and
// the CCM manages no routes. The addons read these variables
// (addons.TestHetznerAddonValuesFollowTheNetwork).
func TestHetznerNetwork(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for _, tc := range []struct {
		flavor  string
		enabled bool
	}{{"hcloud", true}, {"hcloud-hrobot", false}, {"hcloud-public", false}} {
		r := renderFlavor(t, c, tc.flavor, "")
		hc := objectsOf(r, "HetznerCluster")[0]
		pods := field(objectsOf(r, "Cluster")[0], "spec", "clusterNetwork", "pods", "cidrBlocks").([]any)
		vars, err := c.Variables(readSpec(t, specOf(t, c, tc.flavor)), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) != 1 || pods[0] != vars["POD_CIDR"] {
			t.Errorf("%s: pod CIDRs %v, POD_CIDR %s", tc.flavor, pods, vars["POD_CIDR"])
		}
		if got := field(hc, "spec", "hcloudNetwork", "enabled"); got != tc.enabled || vars["HCLOUD_NETWORK_ENABLED"] != map[bool]string{true: "true", false: "false"}[tc.enabled] {
			t.Errorf("%s: hcloudNetwork.enabled %v, HCLOUD_NETWORK_ENABLED %s", tc.flavor, got, vars["HCLOUD_NETWORK_ENABLED"])
		}
		if !tc.enabled {
			if b := field(hc, "spec", "hcloudNetwork", "cidrBlock"); b != nil {
				t.Errorf("%s: a network range without a network: %v", tc.flavor, b)
			}
			if vars["POD_ROUTING_MODE"] != "tunnel" || vars["POD_NATIVE_ROUTING_CIDR"] != "" {
				t.Errorf("%s: routing %s %q, want tunnel without a native range", tc.flavor, vars["POD_ROUTING_MODE"], vars["POD_NATIVE_ROUTING_CIDR"])
			}
			continue
		}
		network := cidr(t, field(hc, "spec", "hcloudNetwork", "cidrBlock"))
		subnet := cidr(t, field(hc, "spec", "hcloudNetwork", "subnetCidrBlock"))
		podCIDR := cidr(t, pods[0])
		if !network.Contains(podCIDR.Addr()) || podCIDR.Bits() < network.Bits() {
			t.Errorf("%s: pod CIDR %s is not inside the network %s: the CCM's routes would be refused", tc.flavor, podCIDR, network)
		}
		if !network.Contains(subnet.Addr()) || subnet.Overlaps(podCIDR) {
			t.Errorf("%s: servers' subnet %s not in %s or overlapping the pods %s", tc.flavor, subnet, network, podCIDR)
		}
		if services := cidr(t, field(objectsOf(r, "Cluster")[0], "spec", "clusterNetwork", "services", "cidrBlocks").([]any)[0]); services.Overlaps(podCIDR) || services.Overlaps(subnet) {
			t.Errorf("%s: services %s overlap pods or servers", tc.flavor, services)
		}
		if vars["POD_ROUTING_MODE"] != "native" || vars["POD_NATIVE_ROUTING_CIDR"] != network.String() || vars["HCLOUD_NETWORK_CIDR"] != network.String() {
			t.Errorf("%s: routing %s over %s, want native over the network %s", tc.flavor, vars["POD_ROUTING_MODE"], vars["POD_NATIVE_ROUTING_CIDR"], network)
		}
	}
}

// Variables: the cluster-level variables, as Render uses them, for the
// addon values.
func TestVariables(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	vars, err := c.Variables(readSpec(t, specOf(t, c, "hcloud")), "tenant-x")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"CLUSTER_NAME": "prod", "CLUSTER_NAMESPACE": "tenant-x", "K8S_VERSION": "v1.34.2", "K8S_VERSION_MINOR": "v1.34",
		"PROVIDER_NAME": "hetzner", "HCLOUD_REGION": "fsn1", "HCLOUD_NETWORK_ENABLED": "true", "POD_CIDR": "10.244.0.0/16",
		"SERVICE_CIDR": "10.96.0.0/12", // a template's default
		"POD_MTU":      "1450",
	} {
		if vars[k] != want {
			t.Errorf("%s = %q, want %q", k, vars[k], want)
		}
	}
	if _, ok := vars["NODE_SETUP_SCRIPT"]; ok {
		t.Error("value files are not variables of the addons")
	}
	if _, ok := vars["POOL_NAME"]; ok {
		t.Error("a pool variable at cluster level")
	}
	// AWS keeps its pod CIDR, a template default.
	aws, err := c.Variables(readSpec(t, specOf(t, c, "aws-ec2")), "")
	if err != nil {
		t.Fatal(err)
	}
	if aws["POD_CIDR"] != "192.168.0.0/16" || aws["CLUSTER_NAMESPACE"] != "tenant-b" {
		t.Errorf("aws: POD_CIDR %q, namespace %q", aws["POD_CIDR"], aws["CLUSTER_NAMESPACE"])
	}
	if _, err := c.Variables(readSpec(t, &spec.Capi{}), ""); err == nil {
		t.Error("no provider: no error")
	}
}

// 5. MachineHealthChecks with HCloud remediation, as CAPH's
// bases/hcloud-mhc-control-plane.yaml and hcloud-mhc-md-0.yaml (their
// timeouts; a pool's check selects that pool's machines only), and for
// bare-metal pools as hetznerbaremetal-mhc-rt-md-1.yaml. Kubelets ask for
// serving certificates (serverTLSBootstrap, as bases/kct-md-0-ubuntu.yaml),
// which CAPH's CSR controller approves
// (docs/caph/02-topics/06-advanced/01-csr-controller.md): through a kubeadm
// patch of the kubelet configuration, on every node.
func TestHetznerHealthChecksAndServingCertificates(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	type check struct {
		startup, unhealthy int64
		remediation        string
		retries            int64
		timeout            string
	}
	hcloudCP := check{900, 180, "HCloudRemediationTemplate", 1, "180s"}
	hcloudPool := check{600, 180, "HCloudRemediationTemplate", 1, "180s"}
	bareMetal := check{3600, 300, "HetznerBareMetalRemediationTemplate", 2, "300s"}
	for _, name := range hetznerFlavors {
		r := renderFlavor(t, c, name, "")
		want := map[string]check{r.Objects[0].GetName() + "-control-plane": hcloudCP}
		for _, md := range objectsOf(r, "MachineDeployment") {
			kind := field(md, "spec", "template", "spec", "infrastructureRef", "kind")
			want[md.GetName()] = map[any]check{"HCloudMachineTemplate": hcloudPool, "HetznerBareMetalMachineTemplate": bareMetal}[kind]
			checkPoolHealthCheckSelects(t, name, r, md)
		}
		for mhc, w := range machineHealthChecks(t, name, r, want) {
			if field(mhc, "spec", "clusterName") != r.Objects[0].GetName() {
				t.Errorf("%s: %s checks cluster %v", name, mhc.GetName(), field(mhc, "spec", "clusterName"))
			}
			if got := field(mhc, "spec", "checks", "nodeStartupTimeoutSeconds"); got != w.startup {
				t.Errorf("%s: %s startup timeout %v, want %d", name, mhc.GetName(), got, w.startup)
			}
			conds := field(mhc, "spec", "checks", "unhealthyNodeConditions").([]any)
			if len(conds) != 2 {
				t.Errorf("%s: %s conditions %v", name, mhc.GetName(), conds)
			}
			for _, cond := range conds {
				m := cond.(map[string]any)
				if m["type"] != "Ready" || (m["status"] != "Unknown" && m["status"] != "False") || m["timeoutSeconds"] != w.unhealthy {
					t.Errorf("%s: %s condition %v", name, mhc.GetName(), m)
				}
			}
			ref := field(mhc, "spec", "remediation", "templateRef").(map[string]any)
			if ref["kind"] != w.remediation || ref["apiVersion"] != "infrastructure.cluster.x-k8s.io/v1beta1" {
				t.Errorf("%s: %s remediation %v", name, mhc.GetName(), ref)
			}
			rt := objectOf(t, r, w.remediation, ref["name"].(string))
			strategy := field(rt, "spec", "template", "spec", "strategy").(map[string]any)
			if strategy["type"] != "Reboot" || strategy["retryLimit"] != w.retries || strategy["timeout"] != w.timeout {
				t.Errorf("%s: %s strategy %v", name, rt.GetName(), strategy)
			}
		}
		cp := objectOf(t, r, "MachineHealthCheck", r.Objects[0].GetName()+"-control-plane")
		if sel := field(cp, "spec", "selector", "matchLabels").(map[string]any); sel["cluster.x-k8s.io/control-plane"] != "" {
			t.Errorf("%s: the control plane's check selects %v", name, sel)
		}

		for obj, cfg := range kubeadmConfigs(r) {
			f := fileAt(cfg, "/etc/kubernetes/patches/kubeletconfiguration0+strategic.yaml")
			if f == nil || !strings.Contains(f["content"].(string), "serverTLSBootstrap: true") {
				t.Errorf("%s %s: no kubelet configuration patch with serverTLSBootstrap: %v", name, obj, f)
			}
			configs := []string{"joinConfiguration"}
			if strings.HasSuffix(obj, "-control-plane") {
				configs = append(configs, "initConfiguration")
			}
			for _, config := range configs {
				if dir := cfg[config].(map[string]any)["patches"]; !reflect.DeepEqual(dir, map[string]any{"directory": "/etc/kubernetes/patches"}) {
					t.Errorf("%s %s %s: patches %v", name, obj, config, dir)
				}
				if _, set := kubeletArgs(cfg, config)["rotate-server-certificates"]; set {
					t.Errorf("%s %s %s: rotate-server-certificates set as a flag too", name, obj, config)
				}
			}
		}
	}
}
