package capi_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/testenv"
)

// The EC2 renderings the requirements below are checked on: the audited
// spec (testdata/specs/aws-ec2.yaml: 3 control-plane machines, pool
// general 2, bootstrap cilium and ccm) and one with an AMI lookup, one
// control-plane machine and two pools (aws-ec2-ami.yaml).
var ec2Flavors = []string{"aws-ec2", "aws-ec2-ami"}

// editedSpec loads testdata/specs/<name>.yaml with each {old, new}
// replacement made once (each must apply).
func editedSpec(t *testing.T, c *capi.Catalog, name string, edits ...[2]string) *spec.Capi {
	t.Helper()
	data, err := readSpecFile(name)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, e := range edits {
		if !strings.Contains(doc, e[0]) {
			t.Fatalf("%s: %q not found", name, e[0])
		}
		doc = strings.Replace(doc, e[0], e[1], 1)
	}
	return loadSpec(t, c, []byte(doc))
}

func readSpecFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", "specs", name+".yaml"))
}

func render(t *testing.T, c *capi.Catalog, s *spec.Capi) *capi.Rendered {
	t.Helper()
	r, err := c.Render(capi.RenderInput{Spec: readSpec(t, s)})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r
}

// kubeadmConfigNames lists, for each kubeadm config of a rendering (by
// object name), its init and join configurations' nodeRegistration.name.
func kubeadmConfigNames(r *capi.Rendered) map[string]map[string]any {
	out := map[string]map[string]any{}
	for obj, cfg := range kubeadmConfigs(r) {
		out[obj] = map[string]any{}
		for _, config := range []string{"initConfiguration", "joinConfiguration"} {
			c, ok := cfg[config].(map[string]any)
			if !ok {
				continue
			}
			nr, _ := c["nodeRegistration"].(map[string]any)
			out[obj][config] = nr["name"]
		}
	}
	return out
}

// 1. Every EC2 kubelet registers under the instance's private DNS name,
// '{{ ds.meta_data.local_hostname }}', in the KubeadmControlPlane's init
// and join configurations and in every pool's KubeadmConfigTemplate, as
// CAPA v2.13.0's templates/cluster-template.yaml does: the AWS CCM finds a
// node's instance by that name (kubernetes/cloud-provider-aws#72; its
// docs/prerequisites.md, "Node name conventions"), and without it no node
// is initialized, gets a provider ID or becomes Ready. The core templates,
// which Hetzner and the in-memory dev provider share, keep kubeadm's
// default (the hostname): an AWS patch sets it.
func TestAWSNodeNamesArePrivateDNSNames(t *testing.T) {
	t.Parallel()
	const want = "{{ ds.meta_data.local_hostname }}"
	c := loadCatalog(t, embedded(t))
	for _, name := range ec2Flavors {
		s := specOf(t, c, name)
		names := kubeadmConfigNames(renderFlavor(t, c, name, ""))
		if len(names) != 1+len(s.Spec.AWS.Workers) {
			t.Fatalf("%s: %d kubeadm configs, want the control plane's and one per pool (%d)", name, len(names), len(s.Spec.AWS.Workers))
		}
		for obj, byConfig := range names {
			configs := []string{"joinConfiguration"}
			if strings.HasSuffix(obj, "-control-plane") {
				configs = append(configs, "initConfiguration")
			}
			for _, config := range configs {
				if got := byConfig[config]; got != want {
					t.Errorf("%s %s %s: nodeRegistration.name %v, want %q", name, obj, config, got, want)
				}
			}
		}
	}
	for _, name := range hetznerFlavors {
		for obj, byConfig := range kubeadmConfigNames(renderFlavor(t, c, name, "")) {
			for config, got := range byConfig {
				if got != nil {
					t.Errorf("%s %s %s: nodeRegistration.name %v: the core templates changed for others", name, obj, config, got)
				}
			}
		}
	}
}

// ingressRules returns the AWSCluster's CNI ingress rules as "protocol
// from-to" strings, and whether spec.network.cni is set at all.
func ingressRules(t *testing.T, r *capi.Rendered) ([]string, bool) {
	t.Helper()
	clusters := objectsOf(r, "AWSCluster")
	if len(clusters) != 1 {
		t.Fatalf("%d AWSClusters", len(clusters))
	}
	cni, ok := field(clusters[0], "spec", "network", "cni").(map[string]any)
	if !ok {
		return nil, false
	}
	var rules []string
	rs, _ := cni["cniIngressRules"].([]any)
	for _, it := range rs {
		m := it.(map[string]any)
		if d, _ := m["description"].(string); d == "" {
			t.Errorf("rule without a description (CAPA requires one): %v", m)
		}
		rules = append(rules, fmt.Sprintf("%v %v-%v", m["protocol"], m["fromPort"], m["toPort"]))
	}
	slices.Sort(rules)
	return rules, true
}

// 2. With Cilium (spec.bootstrap names it, as a name or an object), the
// security groups of the control plane and the nodes let in, from both,
// what Cilium's system requirements list for AWS security groups
// (docs.cilium.io, operations/system_requirements, "Firewall Rules"): the
// VXLAN overlay, 8472/udp (addons/cilium.yaml tunnels with vxlan on AWS),
// cilium-health's 4240/tcp and ICMP echo (type 8, code 0). CAPA's default
// rules, used when the AWSCluster names none, are Calico's, BGP 179/tcp and
// IP-in-IP (CAPA v2.13.0 api/v1beta2/defaults.go, SetDefaults_NetworkSpec),
// and CAPA opens nothing else between nodes but the kubelet's 10250
// (pkg/cloud/services/securitygroup/securitygroups.go): without these
// rules pods on different nodes cannot reach each other. Without Cilium
// the AWSCluster names no rules, and CAPA's defaults apply.
func TestAWSCiliumIngressRules(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	want := []string{"icmp 8-0", "tcp 4240-4240", "udp 8472-8472"}
	for _, name := range ec2Flavors {
		if got, _ := ingressRules(t, renderFlavor(t, c, name, "")); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: CNI ingress rules %v, want Cilium's %v", name, got, want)
		}
	}
	withoutCilium := editedSpec(t, c, "aws-ec2", [2]string{"bootstrap: [cilium, ccm]", "bootstrap: [ccm]"})
	if got, set := ingressRules(t, render(t, c, withoutCilium)); set {
		t.Errorf("without cilium: spec.network.cni set (%v): CAPA's defaults would not apply", got)
	}
}

// 4. MachineHealthChecks (cluster.x-k8s.io/v1beta2) for the control plane
// and for each pool, after CAPI's examples (docs/book/src/tasks/
// automated-machine-management/healthchecking.md): named after the
// cluster (and the pool), selecting machines of this cluster only and
// selectors that do not overlap (the control plane's by
// cluster.x-k8s.io/control-plane, a pool's by its MachineDeployment's
// cluster.x-k8s.io/deployment-name, which its machines carry), a node not
// Ready (Unknown or False) for 300 s unhealthy, nodes given 600 s to join
// (CAPI's default; 900 s for the control plane, whose first node gets its
// provider ID only once the CNI and the CCM run), remediation not
// short-circuited (100%, CAPI's default: the worker example's 40% rounds
// down to none in a pool of one or two), and no remediation template (CAPA
// has none: the KubeadmControlPlane or the MachineSet replaces the
// machine).
func TestAWSHealthChecks(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for _, name := range ec2Flavors {
		r := renderFlavor(t, c, name, "")
		cluster := r.Objects[0].GetName()
		want := map[string]int64{cluster + "-control-plane": 900}
		for _, md := range objectsOf(r, "MachineDeployment") {
			want[md.GetName()] = 600
			checkPoolHealthCheckSelects(t, name, r, md)
		}
		for mhc, startup := range machineHealthChecks(t, name, r, want) {
			if mhc.GetAPIVersion() != "cluster.x-k8s.io/v1beta2" || field(mhc, "spec", "clusterName") != cluster {
				t.Errorf("%s: %s is %s for cluster %v", name, mhc.GetName(), mhc.GetAPIVersion(), field(mhc, "spec", "clusterName"))
			}
			if sel := field(mhc, "spec", "selector", "matchLabels").(map[string]any); sel[mgmt.ClusterNameLabel] != cluster {
				t.Errorf("%s: %s selects %v, not only this cluster's machines", name, mhc.GetName(), sel)
			}
			if got := field(mhc, "spec", "checks", "nodeStartupTimeoutSeconds"); got != startup {
				t.Errorf("%s: %s startup timeout %v, want %d", name, mhc.GetName(), got, startup)
			}
			var conds []string
			for _, cond := range field(mhc, "spec", "checks", "unhealthyNodeConditions").([]any) {
				m := cond.(map[string]any)
				conds = append(conds, fmt.Sprintf("%v=%v %vs", m["type"], m["status"], m["timeoutSeconds"]))
			}
			slices.Sort(conds)
			if want := []string{"Ready=False 300s", "Ready=Unknown 300s"}; !reflect.DeepEqual(conds, want) {
				t.Errorf("%s: %s conditions %v, want %v", name, mhc.GetName(), conds, want)
			}
			if got := field(mhc, "spec", "remediation"); !reflect.DeepEqual(got, map[string]any{"triggerIf": map[string]any{"unhealthyLessThanOrEqualTo": "100%"}}) {
				t.Errorf("%s: %s remediation %v", name, mhc.GetName(), got)
			}
		}
		cp := objectOf(t, r, "MachineHealthCheck", cluster+"-control-plane")
		if sel := field(cp, "spec", "selector", "matchLabels").(map[string]any); sel["cluster.x-k8s.io/control-plane"] != "" {
			t.Errorf("%s: the control plane's check selects %v", name, sel)
		}
	}
}

// machineImages returns each AWSMachineTemplate's image fields: ami.id
// and the lookup's, by object name.
func machineImages(r *capi.Rendered) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, mt := range objectsOf(r, "AWSMachineTemplate") {
		s, _ := field(mt, "spec", "template", "spec").(map[string]any)
		img := map[string]any{}
		for _, k := range []string{"ami", "imageLookupOrg", "imageLookupBaseOS", "imageLookupFormat"} {
			if v, ok := s[k]; ok {
				img[k] = v
			}
		}
		out[mt.GetName()] = img
	}
	return out
}

// 5. The AMI: CAPA's default lookup (capa-ami-ubuntu-24.04-?<version>-* of
// its community account, CAPA v2.13.0 pkg/cloud/services/ec2/ami.go) is
// best effort (CAPA book, topics/images/built-amis.md: not for
// production). spec.aws.ami names an AMI ID, or a lookup of the
// operator's own images, for the control plane and every pool alike
// (AWSMachineTemplate ami.id, imageLookupOrg, imageLookupBaseOS,
// imageLookupFormat; topics/images/custom-amis.md); a lookup field left
// out is not rendered (CAPA's default applies); without spec.aws.ami none
// is (as CAPA's flavor).
func TestAWSMachineImages(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	id := editedSpec(t, c, "aws-ec2", [2]string{"    sshKeyName: ops\n", "    sshKeyName: ops\n    ami: {id: ami-0123456789abcdef0}\n"})
	someLookup := editedSpec(t, c, "aws-ec2-ami", [2]string{`      lookupBaseOS: ubuntu-24.04` + "\n", ""})
	for _, tc := range []struct {
		name string
		spec *spec.Capi
		want map[string]any
	}{
		{"aws-ec2 (CAPA's default lookup)", specOf(t, c, "aws-ec2"), map[string]any{}},
		{"an AMI ID", id, map[string]any{"ami": map[string]any{"id": "ami-0123456789abcdef0"}}},
		{"aws-ec2-ami (a lookup)", specOf(t, c, "aws-ec2-ami"), map[string]any{
			"imageLookupOrg": "123456789012", "imageLookupBaseOS": "ubuntu-24.04", "imageLookupFormat": "acme-k8s-{{.BaseOS}}-{{.K8sVersion}}-*"}},
		{"a lookup without base OS", someLookup, map[string]any{
			"imageLookupOrg": "123456789012", "imageLookupFormat": "acme-k8s-{{.BaseOS}}-{{.K8sVersion}}-*"}},
	} {
		images := machineImages(render(t, c, tc.spec))
		if len(images) != 1+len(tc.spec.Spec.AWS.Workers) {
			t.Fatalf("%s: %d AWSMachineTemplates", tc.name, len(images))
		}
		for obj, got := range images {
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: %s image %v, want %v", tc.name, obj, got, tc.want)
			}
		}
	}
}

var tagOfMinor = regexp.MustCompile(`^(v1\.[0-9]+)\.[0-9]+$`)

// 3. The AWS CCM's image follows the cluster's Kubernetes minor:
// cloud-provider-aws guarantees compatibility only between a release and
// the Kubernetes minor it is numbered after (its docs/README.md,
// "Compatibility with Kubernetes"), and the pinned chart, 0.0.9, defaults
// to v1.27.1. The manifest maps each minor to a cloud-provider-aws release
// of that minor (AWS_CCM_IMAGE_TAG, which addons/ccm.yaml uses: see
// internal/addons TestAWSCCMValues), for every minor the EC2 flavor
// accepts, and the EC2 flavor accepts only minors the table has.
func TestAWSCCMImageFollowsTheMinor(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	base := specOf(t, c, "aws-ec2")
	req, flavor := c.Provider("aws").RequirementsFor(readSpec(t, base))
	if flavor != "" {
		t.Fatalf("RequirementsFor: flavor %q", flavor)
	}
	lo, hi := req.Kubernetes.Min, req.Kubernetes.Max
	if lo == "" || hi == "" {
		t.Fatalf("the EC2 flavor's Kubernetes range %s is open: the CCM table cannot cover it", req.Kubernetes)
	}
	minLow, errLow := strconv.Atoi(strings.TrimPrefix(lo, "v1."))
	maxHigh, errHigh := strconv.Atoi(strings.TrimPrefix(hi, "v1."))
	if errLow != nil || errHigh != nil {
		t.Fatalf("range %s: %v %v", req.Kubernetes, errLow, errHigh)
	}
	roles := map[string]string{"cilium": "cni", "ccm": "ccm"}
	for m := minLow - 1; m <= maxHigh+1; m++ {
		version := fmt.Sprintf("v1.%d.0", m)
		if m < spec.MinKubernetesMinor || m > spec.MaxKubernetesMinor {
			continue
		}
		s := editedSpec(t, c, "aws-ec2", [2]string{`version: "v1.34.1"`, `version: "` + version + `"`})
		vars, err := c.Variables(readSpec(t, s), "")
		if err != nil {
			t.Fatal(err)
		}
		tag, inRange := vars["AWS_CCM_IMAGE_TAG"], m >= minLow && m <= maxHigh
		accepted := len(c.Provider("aws").CheckRequirements(readSpec(t, s), roles)) == 0
		switch {
		case accepted != inRange:
			t.Errorf("%s: accepted %v, in %s %v", version, accepted, req.Kubernetes, inRange)
		case inRange && (tagOfMinor.FindStringSubmatch(tag) == nil || tagOfMinor.FindStringSubmatch(tag)[1] != capi.MinorOf(version)):
			t.Errorf("%s: AWS_CCM_IMAGE_TAG %q, want a release of %s", version, tag, capi.MinorOf(version))
		case !inRange && tag != "":
			t.Errorf("%s: AWS_CCM_IMAGE_TAG %q outside the accepted range", version, tag)
		}
	}
}

// A patch version keeps its minor's CCM.
func TestAWSCCMImageOfAPatchRelease(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	vars, err := c.Variables(readSpec(t, specOf(t, c, "aws-ec2")), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := vars["AWS_CCM_IMAGE_TAG"]; !strings.HasPrefix(got, "v1.34.") {
		t.Errorf("v1.34.1: AWS_CCM_IMAGE_TAG %q", got)
	}
	if got := vars["AWS_REGION"]; got != "eu-central-1" {
		t.Errorf("AWS_REGION %q (the EBS CSI driver's controller.region)", got)
	}
}

// objectsByKind counts a rendering's kinds.
func objectsByKind(objs []*unstructured.Unstructured) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetKind()]++
	}
	return n
}

// The EC2 variants the goldens do not cover (an AMI ID; no Cilium) pass
// server-side apply against CAPA's and CAPI's CRDs too, and the apiserver
// keeps the fields the requirements above are about: the private-DNS
// node names, Cilium's rules (or none), the image, the health checks.
func TestApplyAWSVariants(t *testing.T) {
	env := testenv.Shared(t)
	c := loadCatalog(t, embedded(t))
	for name, s := range map[string]*spec.Capi{
		"ami id":    editedSpec(t, c, "aws-ec2", [2]string{"    sshKeyName: ops\n", "    sshKeyName: ops\n    ami: {id: ami-0123456789abcdef0}\n"}),
		"no cilium": editedSpec(t, c, "aws-ec2", [2]string{"bootstrap: [cilium, ccm]", "bootstrap: [ccm]"}),
	} {
		t.Run(name, func(t *testing.T) {
			ns := env.Namespace(t)
			r, err := c.Render(capi.RenderInput{Spec: readSpec(t, s), Namespace: ns, Labels: map[string]string{mgmt.LabelTenant: "acme"}})
			if err != nil {
				t.Fatal(err)
			}
			first := applyAll(t, env, r.Objects)
			second := applyAll(t, env, r.Objects)
			for k, rv := range first {
				if second[k] != rv {
					t.Errorf("second apply changed %s", k)
				}
			}
			stored := &capi.Rendered{Provider: r.Provider}
			for _, o := range r.Objects {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(o.GroupVersionKind())
				if err := env.Client.Get(ctx(t), client.ObjectKeyFromObject(o), got); err != nil {
					t.Fatalf("get %s %s: %v", o.GetKind(), o.GetName(), err)
				}
				stored.Objects = append(stored.Objects, got)
			}
			for obj, byConfig := range kubeadmConfigNames(stored) {
				if got := byConfig["joinConfiguration"]; got != "{{ ds.meta_data.local_hostname }}" {
					t.Errorf("stored %s: join nodeRegistration.name %v", obj, got)
				}
			}
			rules, set := ingressRules(t, stored)
			if wantSet := name != "no cilium"; set != wantSet || (wantSet && len(rules) != 3) {
				t.Errorf("stored AWSCluster: CNI rules %v (set %v)", rules, set)
			}
			for obj, img := range machineImages(stored) {
				want := map[string]any{}
				if name == "ami id" {
					want = map[string]any{"ami": map[string]any{"id": "ami-0123456789abcdef0"}}
				}
				if !reflect.DeepEqual(img, want) {
					t.Errorf("stored %s: image %v, want %v", obj, img, want)
				}
			}
			if n := len(objectsOf(stored, "MachineHealthCheck")); n != 2 {
				t.Errorf("%d MachineHealthChecks stored", n)
			}
		})
	}
}
