package addons_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/spec"
)

// awsValues are the values an add-on installs with on an EC2 cluster of
// that Kubernetes version: the catalogue's layers with the variables the
// bootstrap step supplies (the workload's and capi.Catalog.Variables).
func awsValues(t *testing.T, version, addon string) (addons.Resolved, map[string]any) {
	t.Helper()
	s := seedSpec(t, "aws", func(doc string) string { return strings.Replace(doc, "version: v1.34.1", "version: "+version, 1) })
	return planValues(t, s, "aws", addon)
}

func tolerates(tolerations any, key string) bool {
	list, _ := tolerations.([]any)
	for _, it := range list {
		m := it.(map[string]any)
		if m["key"] == key && m["operator"] == "Exists" && (m["effect"] == nil || m["effect"] == "NoSchedule") {
			return true
		}
	}
	return false
}

// 3. The AWS CCM as CAPA v2.13.0's templates/cluster-template.yaml runs it
// (its cloud-controller-manager-addon DaemonSet), on chart
// aws-cloud-controller-manager 0.0.9, whose default image is v1.27.1:
//   - the image of the cluster's Kubernetes minor (cloud-provider-aws
//     docs/README.md, "Compatibility with Kubernetes": a release supports
//     the minor it is numbered after), for every minor the EC2 flavor
//     accepts (v1.32 to v1.36);
//   - --use-service-account-credentials=true, with the RBAC it needs: the
//     CCM reads each controller's service account before requesting its
//     token (the chart grants create only; cloud-provider-aws
//     examples/existing-cluster/base/cluster-role.yaml and CAPA's flavor
//     grant get, list, watch);
//   - on the control-plane nodes, on the host network (the chart's
//     hostNetworking), tolerating the control-plane taint, the cloud
//     provider's uninitialized taint (any value) and CAPI's
//     node.cluster.x-k8s.io/uninitialized, which joining nodes carry until
//     CAPI has their provider ID, which the CCM sets;
//   - no routes (Cilium tunnels).
func TestAWSCCMValues(t *testing.T) {
	t.Parallel()
	for minor, tag := range map[string]string{"v1.32": "v1.32.", "v1.33": "v1.33.", "v1.34": "v1.34.", "v1.35": "v1.35.", "v1.36": "v1.36."} {
		r, vals := awsValues(t, minor+".2", "ccm")
		if r.Chart.Name != "aws-cloud-controller-manager" || r.Chart.Version != "0.0.9" {
			t.Errorf("%s: chart %s", minor, r.Chart)
		}
		if got, _ := at(vals, "image", "tag").(string); !strings.HasPrefix(got, tag) || at(vals, "image", "repository") != "registry.k8s.io/provider-aws/cloud-controller-manager" {
			t.Errorf("%s: image %v:%v, want a %s release", minor, at(vals, "image", "repository"), got, minor)
		}
	}
	_, vals := awsValues(t, "v1.34.1", "ccm")
	var args []string
	for _, a := range vals["args"].([]any) {
		args = append(args, a.(string))
	}
	for _, want := range []string{"--cloud-provider=aws", "--use-service-account-credentials=true", "--configure-cloud-routes=false", "--cluster-name=prod"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	if !reflect.DeepEqual(vals["nodeSelector"], map[string]any{"node-role.kubernetes.io/control-plane": ""}) || vals["hostNetworking"] != true {
		t.Errorf("nodeSelector %v, hostNetworking %v: want the control-plane nodes' host network", vals["nodeSelector"], vals["hostNetworking"])
	}
	for _, key := range []string{"node-role.kubernetes.io/control-plane", "node.cloudprovider.kubernetes.io/uninitialized", "node.cluster.x-k8s.io/uninitialized"} {
		if !tolerates(vals["tolerations"], key) {
			t.Errorf("tolerations %v lack %s", vals["tolerations"], key)
		}
	}
	var serviceAccounts []string
	for _, rule := range vals["clusterRoleRules"].([]any) {
		m := rule.(map[string]any)
		if slices.Contains(m["resources"].([]any), any("serviceaccounts")) {
			for _, v := range m["verbs"].([]any) {
				serviceAccounts = append(serviceAccounts, v.(string))
			}
		}
	}
	for _, verb := range []string{"create", "get"} {
		if !slices.Contains(serviceAccounts, verb) {
			t.Errorf("serviceaccounts verbs %v lack %s: --use-service-account-credentials cannot get its controllers' accounts", serviceAccounts, verb)
		}
	}
}

// The EBS CSI driver (chart aws-ebs-csi-driver of kubernetes-sigs, an
// exact version) is an add-on of AWS only, for PersistentVolumes. Its
// controller calls the EC2 API with the instance profile of the node it
// runs on, the control plane's, which clusterawsadm gives the driver's
// policy (enableCSIPolicy; CAPA v2.13.0
// cmd/clusterawsadm/cloudformation/bootstrap/csi.go), so it runs there, as
// in CAPA's flavor (CAPA book,
// topics/external-cloud-provider-with-ebs-csi-driver.md); the region
// comes from the spec; a default StorageClass serves claims that name none.
func TestAWSEBSCSIDriver(t *testing.T) {
	t.Parallel()
	r, vals := awsValues(t, "v1.34.1", "aws-ebs-csi-driver")
	if r.Chart.Repository != "https://kubernetes-sigs.github.io/aws-ebs-csi-driver" || r.Chart.Name != "aws-ebs-csi-driver" || r.Chart.Version != "2.64.0" {
		t.Errorf("chart %s", r.Chart)
	}
	if r.Namespace != "kube-system" || r.Role != "" {
		t.Errorf("namespace %s, role %q: want kube-system, installed once the nodes are Ready", r.Namespace, r.Role)
	}
	controller := vals["controller"].(map[string]any)
	if !reflect.DeepEqual(controller["nodeSelector"], map[string]any{"node-role.kubernetes.io/control-plane": ""}) ||
		!tolerates(controller["tolerations"], "node-role.kubernetes.io/control-plane") || !tolerates(controller["tolerations"], "CriticalAddonsOnly") {
		t.Errorf("controller nodeSelector %v, tolerations %v: want the control-plane nodes", controller["nodeSelector"], controller["tolerations"])
	}
	if controller["region"] != "eu-central-1" || controller["k8sTagClusterId"] != "prod" {
		t.Errorf("controller region %v, cluster tag %v", controller["region"], controller["k8sTagClusterId"])
	}
	if at(vals, "defaultStorageClass", "enabled") != true {
		t.Errorf("defaultStorageClass %v", vals["defaultStorageClass"])
	}
	_, err := productionCatalog(t).PlanFor([]string{"aws-ebs-csi-driver"}, addons.Target{Provider: "hetzner"})
	if !errors.Is(err, addons.ErrUnsupportedProvider) {
		t.Errorf("on hetzner: err = %v, want ErrUnsupportedProvider", err)
	}
	// spec.bootstrap may name it (the service passes the catalogue's names).
	s := seedSpec(t, "aws")
	s.Spec.Bootstrap = append(s.Spec.Bootstrap, spec.Addon{Name: "aws-ebs-csi-driver"})
	if errs := s.Validate(templateCatalog(t).ValidateOptions(spec.ValidateOptions{KnownAddons: productionCatalog(t).Names()})); len(errs) != 0 {
		t.Errorf("spec.bootstrap with aws-ebs-csi-driver: %v", errs)
	}
}
