package capi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cluster-api/cmd/clusterctl/client/yamlprocessor"
	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/gomod"
	"lok8s.dev/provisioner/internal/spec"
	"lok8s.dev/provisioner/internal/testenv"
)

// capaFlavor renders CAPA's own default EC2 flavor, templates/cluster-template.yaml
// of the module at testenv.CAPAVersion (v2.13.0) in the module cache, with
// clusterctl's yamlprocessor (as Render does) and the variables of the
// spec s, as `clusterctl generate cluster` would for it.
func capaFlavor(t *testing.T, s *spec.Capi) []*unstructured.Unstructured {
	t.Helper()
	pool := s.Spec.AWS.Workers["general"]
	return capaTemplate(t, "cluster-template.yaml", map[string]string{
		"CLUSTER_NAME":                   s.Metadata.Name,
		"AWS_REGION":                     s.Spec.AWS.Region,
		"AWS_SSH_KEY_NAME":               s.Spec.AWS.SSHKeyName,
		"KUBERNETES_VERSION":             s.Spec.Kubernetes.Version,
		"CONTROL_PLANE_MACHINE_COUNT":    fmt.Sprint(*s.Spec.AWS.ControlPlane.Replicas),
		"AWS_CONTROL_PLANE_MACHINE_TYPE": s.Spec.AWS.ControlPlane.Type,
		"WORKER_MACHINE_COUNT":           fmt.Sprint(*pool.Replicas),
		"AWS_NODE_MACHINE_TYPE":          pool.Type,
		// KUBERNETES_AWS_CCM_VERSION is left to its default, as the
		// spec has no such field.
	})
}

// capaTemplate renders one of CAPA's flavors, templates/<file> of the
// module at testenv.CAPAVersion in the module cache, with clusterctl's
// yamlprocessor and vars (a variable it needs and vars lack fails).
func capaTemplate(t *testing.T, file string, vars map[string]string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	query := testenv.CAPAModule + "@" + testenv.CAPAVersion
	dirs, err := gomod.Dirs(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dirs[query], "templates", file))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yamlprocessor.NewSimpleProcessor().Process(data, func(name string) (string, error) {
		if v, ok := vars[name]; ok {
			return v, nil
		}
		return "", fmt.Errorf("%s not set", name)
	})
	if err != nil {
		t.Fatalf("rendering CAPA's %s: %v", file, err)
	}
	return decodeDocuments(t, out)
}

// compareKinds checks that ours and theirs render the same kinds, but for
// those listed as one side's only (kind -> reason), which must be so.
func compareKinds(t *testing.T, ours, theirs []*unstructured.Unstructured, onlyOurs, onlyTheirs map[string]string) {
	t.Helper()
	ourKinds, theirKinds := objectsByKind(ours), objectsByKind(theirs)
	for kind := range ourKinds {
		if _, listed := onlyOurs[kind]; theirKinds[kind] == 0 && !listed {
			t.Errorf("we render %s and CAPA's flavor does not: list it with its reason", kind)
		}
	}
	for kind := range theirKinds {
		if _, listed := onlyTheirs[kind]; ourKinds[kind] == 0 && !listed {
			t.Errorf("CAPA's flavor renders %s and we do not: list it with its reason", kind)
		}
	}
	for kind := range onlyOurs {
		if ourKinds[kind] == 0 || theirKinds[kind] > 0 {
			t.Errorf("%s: listed as ours only, but ours %d, CAPA's %d", kind, ourKinds[kind], theirKinds[kind])
		}
	}
	for kind := range onlyTheirs {
		if theirKinds[kind] == 0 || ourKinds[kind] > 0 {
			t.Errorf("%s: listed as CAPA's only, but ours %d, CAPA's %d", kind, ourKinds[kind], theirKinds[kind])
		}
	}
}

// docsSection returns the section of docs/providers.md whose "## "
// heading begins with title, up to the next "## " heading.
func docsSection(t *testing.T, title string) string {
	t.Helper()
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "providers.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(docs)
	if i := strings.Index(section, "\n## "+title); i >= 0 {
		section = section[i:]
	} else {
		t.Fatalf("docs/providers.md has no %s section", title)
	}
	if i := strings.Index(section[1:], "\n## "); i >= 0 {
		section = section[:i+1]
	}
	return section
}

// checkComparisons holds each row: the same values where no reason is
// given, different ones where one is, and the field named in the docs'
// section (its table).
func checkComparisons(t *testing.T, rows []capaComparison, section, table string) {
	t.Helper()
	for _, r := range rows {
		same := reflect.DeepEqual(r.capa, r.ours)
		switch {
		case r.why == "" && !same:
			t.Errorf("%s %s drifted from CAPA's flavor: CAPA %v, ours %v", r.object, r.field, r.capa, r.ours)
		case r.why != "" && same:
			t.Errorf("%s %s is listed as differing (%s), but both are %v: remove the reason here and in docs/providers.md", r.object, r.field, r.why, r.ours)
		}
		if !strings.Contains(section, r.field) {
			t.Errorf("docs/providers.md's %s table does not list %s %s", table, r.object, r.field)
		}
	}
}

func decodeDocuments(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || string(trimmed) == "null" {
			continue
		}
		o := &unstructured.Unstructured{} // numbers as int64, as ours
		if err := o.UnmarshalJSON(data); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// args reads kubeadm extraArgs in either API: CAPI v1beta1's map (CAPA's
// flavor) or v1beta2's list of {name, value} (ours).
func args(v any) map[string]any {
	out := map[string]any{}
	switch a := v.(type) {
	case map[string]any:
		for k, v := range a {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, it := range a {
			m := it.(map[string]any)
			out[m["name"].(string)] = fmt.Sprint(m["value"])
		}
	}
	return out
}

// ref reads an object reference in either API (v1beta1 apiVersion, v1beta2
// apiGroup) as kind/name.
func ref(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	return fmt.Sprintf("%v/%v", m["kind"], m["name"])
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func at(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// embeddedDocument is the object of kind and name in a ConfigMap's data
// key (CAPA's ClusterResourceSet payloads).
func embeddedDocument(t *testing.T, cm *unstructured.Unstructured, key, kind, name string) map[string]any {
	t.Helper()
	data, _, _ := unstructured.NestedString(cm.Object, "data", key)
	return find(t, decodeDocuments(t, []byte(data)), kind, name).Object
}

// verbsOf returns the verbs a ClusterRole's rules grant on resource.
func verbsOf(rules any, resource string) []string {
	var verbs []string
	list, _ := rules.([]any)
	for _, r := range list {
		m := r.(map[string]any)
		res, _ := m["resources"].([]any)
		if slices.Contains(res, any(resource)) {
			for _, v := range m["verbs"].([]any) {
				verbs = append(verbs, v.(string))
			}
		}
	}
	slices.Sort(verbs)
	return verbs
}

// pinnedToControlPlane reports whether a pod spec runs only on
// control-plane nodes (a nodeSelector or a required node affinity on
// node-role.kubernetes.io/control-plane) and tolerates their taint.
func pinnedToControlPlane(podSpec map[string]any) (pinned, tolerates bool) {
	const label = "node-role.kubernetes.io/control-plane"
	if sel, ok := podSpec["nodeSelector"].(map[string]any); ok {
		_, pinned = sel[label]
	}
	terms, _ := at(podSpec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
	for _, term := range terms {
		for _, e := range at(term, "matchExpressions").([]any) {
			if at(e, "key") == label && at(e, "operator") == "Exists" {
				pinned = true
			}
		}
	}
	tols, _ := podSpec["tolerations"].([]any)
	for _, tol := range tols {
		if at(tol, "key") == label && at(tol, "effect") == "NoSchedule" {
			tolerates = true
		}
	}
	return pinned, tolerates
}

// awsAddonValues are the values our ccm and aws-ebs-csi-driver add-ons
// install on s's cluster (the catalogue layers, with the variables the
// bootstrap step supplies), and the ebs chart's version.
func awsAddonValues(t *testing.T, c *capi.Catalog, s *spec.Capi) (ccm, ebs map[string]any, ebsChart string) {
	t.Helper()
	plan, vars := addonPlan(t, c, s, "aws", "ccm", "aws-ebs-csi-driver")
	vars["API_SERVER_HOST"], vars["API_SERVER_PORT"] = "203.0.113.10", "6443"
	out := map[string]map[string]any{}
	var err error
	for _, r := range plan {
		if out[r.Name], err = addons.Values(r.Layers(nil, nil), vars); err != nil {
			t.Fatal(err)
		}
		if r.Name == "aws-ebs-csi-driver" {
			ebsChart = r.Chart.Name + " " + r.Chart.Version
		}
	}
	return out["ccm"], out["aws-ebs-csi-driver"], ebsChart
}

// capaComparison is one row of docs/providers.md's AWS EC2 table: an
// object's field in CAPA's flavor and ours. why is empty when they must be
// the same, else the reason ours differs on purpose (and then they must
// differ: a difference that went away is stale here and in the docs).
type capaComparison struct {
	object, field string
	capa, ours    any
	why           string
}

// 6. What we render for the EC2 spec (testdata/specs/aws-ec2.yaml) is
// held against CAPA's own default flavor (v2.13.0
// templates/cluster-template.yaml, rendered with the same variables): the
// kinds, and every field docs/providers.md's AWS EC2 table lists, the CCM
// and the EBS CSI driver (CAPA's ClusterResourceSet payloads; ours, the
// ccm and aws-ebs-csi-driver add-ons) included. A change on either side,
// a CAPA upgrade or a template of ours, fails here unless it is listed as
// a difference we keep, with its reason; each field named must also be in
// the docs' table.
func TestAWSAgainstCAPAFlavor(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	s := specOf(t, c, "aws-ec2")
	theirs := capaFlavor(t, s)
	ours := renderFlavor(t, c, "aws-ec2", "").Objects
	name := s.Metadata.Name

	// Kinds.
	onlyOurs := map[string]string{
		"AWSClusterStaticIdentity": "the tenant's credentials, not the controller's own identity",
		"MachineHealthCheck":       "remediation of the control plane and of each pool",
	}
	onlyTheirs := map[string]string{
		"ClusterResourceSet": "CAPA installs the CCM and the EBS CSI driver by ClusterResourceSets; we install them with Helm (add-ons ccm and aws-ebs-csi-driver)",
		"ConfigMap":          "the ClusterResourceSets' payloads",
	}
	compareKinds(t, ours, theirs, onlyOurs, onlyTheirs)

	// Fields.
	tc, oc := find(t, theirs, "Cluster", name).Object, find(t, ours, "Cluster", name).Object
	ta, oa := find(t, theirs, "AWSCluster", name).Object, find(t, ours, "AWSCluster", name).Object
	tk, okcp := find(t, theirs, "KubeadmControlPlane", name+"-control-plane").Object, find(t, ours, "KubeadmControlPlane", name+"-control-plane").Object
	tcp, ocp := find(t, theirs, "AWSMachineTemplate", name+"-control-plane").Object, find(t, ours, "AWSMachineTemplate", name+"-control-plane").Object
	tmd, omd := find(t, theirs, "MachineDeployment", name+"-md-0").Object, find(t, ours, "MachineDeployment", name+"-md-general").Object
	tkt, okt := find(t, theirs, "KubeadmConfigTemplate", name+"-md-0").Object, find(t, ours, "KubeadmConfigTemplate", name+"-md-general").Object
	tmt, omt := find(t, theirs, "AWSMachineTemplate", name+"-md-0").Object, find(t, ours, "AWSMachineTemplate", name+"-md-general").Object
	tks, oks := at(tk, "spec", "kubeadmConfigSpec"), at(okcp, "spec", "kubeadmConfigSpec")
	tkts, okts := at(tkt, "spec", "template", "spec"), at(okt, "spec", "template", "spec")
	tcps, ocps := at(tcp, "spec", "template", "spec"), at(ocp, "spec", "template", "spec")
	tmts, omts := at(tmt, "spec", "template", "spec"), at(omt, "spec", "template", "spec")
	imageFields := func(v any) map[string]any {
		m, _ := v.(map[string]any)
		return pick(m, "ami", "imageLookupOrg", "imageLookupBaseOS", "imageLookupFormat")
	}

	ccm, ebs, ebsChart := awsAddonValues(t, c, s)
	ccmCM := find(t, theirs, "ConfigMap", "cloud-controller-manager-addon")
	ccmDS := embeddedDocument(t, ccmCM, "aws-ccm-external.yaml", "DaemonSet", "aws-cloud-controller-manager")
	ccmRole := embeddedDocument(t, ccmCM, "aws-ccm-external.yaml", "ClusterRole", "system:cloud-controller-manager")
	ccmPod := at(ccmDS, "spec", "template", "spec").(map[string]any)
	ccmContainer := at(ccmPod, "containers").([]any)[0]
	ebsCM := find(t, theirs, "ConfigMap", "aws-ebs-csi-driver-addon")
	ebsController := embeddedDocument(t, ebsCM, "aws-ebs-csi-external.yaml", "Deployment", "ebs-csi-controller")
	ebsPod := at(ebsController, "spec", "template", "spec").(map[string]any)
	theirPinned, theirTolerates := pinnedToControlPlane(ebsPod)
	ourPinned, ourTolerates := pinnedToControlPlane(at(ebs, "controller").(map[string]any))
	var theirStorageClass bool
	ebsData, _, _ := unstructured.NestedString(ebsCM.Object, "data", "aws-ebs-csi-external.yaml")
	for _, o := range decodeDocuments(t, []byte(ebsData)) {
		theirStorageClass = theirStorageClass || o.GetKind() == "StorageClass"
	}
	ccmLabels := func(o map[string]any) map[string]any {
		m, _ := at(o, "metadata", "labels").(map[string]any)
		return pick(m, "ccm", "csi")
	}

	rows := []capaComparison{
		{"Cluster", "metadata.labels", ccmLabels(tc), ccmLabels(oc),
			"CAPA's labels select its ClusterResourceSets; the pipeline installs the CCM and the EBS CSI driver"},
		{"Cluster", "clusterNetwork.pods.cidrBlocks", at(tc, "spec", "clusterNetwork", "pods", "cidrBlocks"), at(oc, "spec", "clusterNetwork", "pods", "cidrBlocks"), ""},
		{"Cluster", "clusterNetwork.services.cidrBlocks", at(tc, "spec", "clusterNetwork", "services", "cidrBlocks"), at(oc, "spec", "clusterNetwork", "services", "cidrBlocks"),
			"explicit: kubeadm's default"},
		{"Cluster", "controlPlaneRef", ref(at(tc, "spec", "controlPlaneRef")), ref(at(oc, "spec", "controlPlaneRef")), ""},
		{"Cluster", "infrastructureRef", ref(at(tc, "spec", "infrastructureRef")), ref(at(oc, "spec", "infrastructureRef")), ""},
		{"AWSCluster", "region", at(ta, "spec", "region"), at(oa, "spec", "region"), ""},
		{"AWSCluster", "sshKeyName", at(ta, "spec", "sshKeyName"), at(oa, "spec", "sshKeyName"), ""},
		{"AWSCluster", "controlPlaneLoadBalancer", at(ta, "spec", "controlPlaneLoadBalancer"), at(oa, "spec", "controlPlaneLoadBalancer"), ""},
		{"AWSCluster", "identityRef", at(ta, "spec", "identityRef"), at(oa, "spec", "identityRef"),
			"the tenant's credentials (AWSClusterStaticIdentity), not the controller's"},
		{"AWSCluster", "network.cni.cniIngressRules", at(ta, "spec", "network", "cni", "cniIngressRules"), at(oa, "spec", "network", "cni", "cniIngressRules"),
			"CAPA's default rules are Calico's; ours are Cilium's"},
		{"KubeadmControlPlane", "replicas", at(tk, "spec", "replicas"), at(okcp, "spec", "replicas"), ""},
		{"KubeadmControlPlane", "version", at(tk, "spec", "version"), at(okcp, "spec", "version"), ""},
		{"KubeadmControlPlane", "machineTemplate.spec.infrastructureRef", ref(at(tk, "spec", "machineTemplate", "infrastructureRef")),
			ref(at(okcp, "spec", "machineTemplate", "spec", "infrastructureRef")), ""},
		{"KubeadmControlPlane", "clusterConfiguration.apiServer.certSANs", at(tks, "clusterConfiguration", "apiServer", "certSANs"),
			at(oks, "clusterConfiguration", "apiServer", "certSANs"), "the cluster's API name, spec.cluster.domain"},
		{"KubeadmControlPlane", "clusterConfiguration.controllerManager.extraArgs", args(at(tks, "clusterConfiguration", "controllerManager", "extraArgs")),
			args(at(oks, "clusterConfiguration", "controllerManager", "extraArgs")), ""},
		{"KubeadmControlPlane", "initConfiguration.nodeRegistration.kubeletExtraArgs", args(at(tks, "initConfiguration", "nodeRegistration", "kubeletExtraArgs")),
			args(at(oks, "initConfiguration", "nodeRegistration", "kubeletExtraArgs")), ""},
		{"KubeadmControlPlane", "joinConfiguration.nodeRegistration.kubeletExtraArgs", args(at(tks, "joinConfiguration", "nodeRegistration", "kubeletExtraArgs")),
			args(at(oks, "joinConfiguration", "nodeRegistration", "kubeletExtraArgs")), ""},
		{"KubeadmControlPlane", "initConfiguration.nodeRegistration.name", at(tks, "initConfiguration", "nodeRegistration", "name"),
			at(oks, "initConfiguration", "nodeRegistration", "name"), ""},
		{"KubeadmControlPlane", "joinConfiguration.nodeRegistration.name", at(tks, "joinConfiguration", "nodeRegistration", "name"),
			at(oks, "joinConfiguration", "nodeRegistration", "name"), ""},
		{"AWSMachineTemplate control plane", "instanceType", at(tcps, "instanceType"), at(ocps, "instanceType"), ""},
		{"AWSMachineTemplate control plane", "iamInstanceProfile", at(tcps, "iamInstanceProfile"), at(ocps, "iamInstanceProfile"), ""},
		{"AWSMachineTemplate control plane", "sshKeyName", at(tcps, "sshKeyName"), at(ocps, "sshKeyName"), ""},
		{"AWSMachineTemplate control plane", "ami", imageFields(tcps), imageFields(ocps), ""},
		{"MachineDeployment", "metadata.name", at(tmd, "metadata", "name"), at(omd, "metadata", "name"), "one per pool of spec.aws.workers"},
		{"MachineDeployment", "replicas", at(tmd, "spec", "replicas"), at(omd, "spec", "replicas"), ""},
		{"MachineDeployment", "clusterName", at(tmd, "spec", "clusterName"), at(omd, "spec", "clusterName"), ""},
		{"MachineDeployment", "selector.matchLabels", at(tmd, "spec", "selector", "matchLabels"), at(omd, "spec", "selector", "matchLabels"),
			"CAPI's own labels, which the pool's health check selects on"},
		{"MachineDeployment", "template.spec.version", at(tmd, "spec", "template", "spec", "version"), at(omd, "spec", "template", "spec", "version"), ""},
		{"MachineDeployment", "template.spec.bootstrap.configRef", ref(at(tmd, "spec", "template", "spec", "bootstrap", "configRef")),
			ref(at(omd, "spec", "template", "spec", "bootstrap", "configRef")), "named after the pool"},
		{"MachineDeployment", "template.spec.infrastructureRef", ref(at(tmd, "spec", "template", "spec", "infrastructureRef")),
			ref(at(omd, "spec", "template", "spec", "infrastructureRef")), "named after the pool"},
		{"KubeadmConfigTemplate", "joinConfiguration.nodeRegistration.kubeletExtraArgs", args(at(tkts, "joinConfiguration", "nodeRegistration", "kubeletExtraArgs")),
			args(at(okts, "joinConfiguration", "nodeRegistration", "kubeletExtraArgs")), ""},
		{"KubeadmConfigTemplate", "joinConfiguration.nodeRegistration.name", at(tkts, "joinConfiguration", "nodeRegistration", "name"),
			at(okts, "joinConfiguration", "nodeRegistration", "name"), ""},
		{"AWSMachineTemplate pool", "instanceType", at(tmts, "instanceType"), at(omts, "instanceType"), ""},
		{"AWSMachineTemplate pool", "iamInstanceProfile", at(tmts, "iamInstanceProfile"), at(omts, "iamInstanceProfile"), ""},
		{"AWSMachineTemplate pool", "sshKeyName", at(tmts, "sshKeyName"), at(omts, "sshKeyName"), ""},
		{"AWSMachineTemplate pool", "ami", imageFields(tmts), imageFields(omts), ""},
		{"CCM", "image", at(ccmContainer, "image"), fmt.Sprintf("%v:%v", at(ccm, "image", "repository"), at(ccm, "image", "tag")),
			"CAPA's default is one release for every cluster; cloud-provider-aws supports only its own minor"},
		{"CCM", "args", at(ccmContainer, "args"), at(ccm, "args"), "--cluster-name: the cluster's name rather than the flag's default"},
		{"CCM", "nodeSelector", at(ccmPod, "nodeSelector"), at(ccm, "nodeSelector"), ""},
		{"CCM", "hostNetwork", at(ccmPod, "hostNetwork"), at(ccm, "hostNetworking"), ""},
		{"CCM", "tolerations", at(ccmPod, "tolerations"), at(ccm, "tolerations"), "CAPI's uninitialized taint and not-ready too; any value of the cloud provider's"},
		{"CCM", "serviceaccounts", verbsOf(at(ccmRole, "rules"), "serviceaccounts"), verbsOf(at(ccm, "clusterRoleRules"), "serviceaccounts"), ""},
		{"EBS CSI driver", "image", at(ebsPod, "containers").([]any)[0].(map[string]any)["image"], ebsChart, "a current release, by its chart"},
		{"EBS CSI driver", "controller on control-plane nodes", theirPinned, ourPinned, ""},
		{"EBS CSI driver", "controller tolerates the control-plane taint", theirTolerates, ourTolerates, ""},
		{"EBS CSI driver", "defaultStorageClass", theirStorageClass, at(ebs, "defaultStorageClass", "enabled"), "claims without a storageClassName get a volume"},
	}
	checkComparisons(t, rows, docsSection(t, "AWS EC2"), "AWS EC2")
}
