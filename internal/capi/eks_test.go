package capi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/addons"
	"lok8s.dev/provisioner/internal/capi"
	"lok8s.dev/provisioner/internal/spec"
)

// addonPlan plans the embedded catalogue's add-ons names for provider at
// s's Kubernetes version, and returns the plan with the variables the
// bootstrap step supplies for s (Catalog.Variables).
func addonPlan(t *testing.T, c *capi.Catalog, s *spec.Capi, provider string, names ...string) ([]addons.Resolved, map[string]string) {
	t.Helper()
	fsys, err := fs.Sub(provisioner.Addons, "addons")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := addons.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanFor(names, addons.Target{Provider: provider, KubernetesVersion: s.Spec.Kubernetes.Version})
	if err != nil {
		t.Fatal(err)
	}
	vars, err := c.Variables(readSpec(t, s), "")
	if err != nil {
		t.Fatal(err)
	}
	return plan, vars
}

// ciliumValues are the values the cilium add-on installs with on s's
// cluster: the catalogue's layers with the variables the bootstrap step
// supplies (the workload's and Catalog.Variables).
func ciliumValues(t *testing.T, c *capi.Catalog, s *spec.Capi, provider string) map[string]any {
	t.Helper()
	plan, vars := addonPlan(t, c, s, provider, "cilium")
	vars["API_SERVER_HOST"], vars["API_SERVER_PORT"], vars["HCLOUD_NETWORK"] = "203.0.113.10", "443", s.Metadata.Name
	vals, err := addons.Values(plan[0].Layers(nil, nil), vars)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// 1. Cilium on EKS, as CAPA's book has an alternative CNI replace the VPC
// CNI and kube-proxy (topics/eks/pod-networking.md, "Using an alternative
// CNI": vpcCni.disable, kubeProxy.disable) and as Cilium's docs install it
// on EKS (Documentation/installation/k8s-install-helm.rst, tab EKS:
// eni.enabled, ipam.mode eni, routingMode native; requirements-eks.rst:
// managed node groups tainted node.cilium.io/agent-not-ready=true:NoExecute).
// Without Cilium in spec.bootstrap EKS keeps its VPC CNI and kube-proxy.
// On EC2 Cilium's values stay what they were (VXLAN, the Node objects'
// pod CIDRs), with ENI mode off, the chart's default.
func TestEKSCilium(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for _, tc := range []struct {
		name   string
		cilium bool
	}{{"aws-eks", false}, {"aws-eks-cilium", true}} {
		r := renderFlavor(t, c, tc.name, "")
		cp := objectsOf(r, "AWSManagedControlPlane")[0]
		vpcCNI, kubeProxy := field(cp, "spec", "vpcCni", "disable"), field(cp, "spec", "kubeProxy", "disable")
		if tc.cilium && (vpcCNI != true || kubeProxy != true) {
			t.Errorf("%s: vpcCni.disable %v, kubeProxy.disable %v: Cilium replaces both", tc.name, vpcCNI, kubeProxy)
		}
		if !tc.cilium && (vpcCNI != nil || kubeProxy != nil) {
			t.Errorf("%s: vpcCni.disable %v, kubeProxy.disable %v without Cilium: EKS's own must stay", tc.name, vpcCNI, kubeProxy)
		}
		pools := objectsOf(r, "AWSManagedMachinePool")
		if len(pools) != 2 {
			t.Fatalf("%s: %d AWSManagedMachinePools", tc.name, len(pools))
		}
		for _, p := range pools {
			taints := field(p, "spec", "taints")
			want := []any{map[string]any{"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "no-execute"}}
			if tc.cilium && !reflect.DeepEqual(taints, want) {
				t.Errorf("%s %s: taints %v, want %v", tc.name, p.GetName(), taints, want)
			}
			if !tc.cilium && taints != nil {
				t.Errorf("%s %s: taints %v without Cilium", tc.name, p.GetName(), taints)
			}
		}
	}

	eks := ciliumValues(t, c, specOf(t, c, "aws-eks-cilium"), "aws")
	for path, want := range map[string]any{"ipam.mode": "eni", "eni.enabled": true, "routingMode": "native", "kubeProxyReplacement": true} {
		if got := at(eks, strings.Split(path, ".")...); got != want {
			t.Errorf("EKS cilium %s = %v, want %v", path, got, want)
		}
	}

	ec2 := ciliumValues(t, c, specOf(t, c, "aws-ec2"), "aws")
	wantEC2 := map[string]any{
		"ipam":                 map[string]any{"mode": "kubernetes"},
		"eni":                  map[string]any{"enabled": false},
		"kubeProxyReplacement": true,
		"k8sServiceHost":       "203.0.113.10",
		"k8sServicePort":       int64(443),
		"operator":             map[string]any{"replicas": int64(1)},
		"routingMode":          "tunnel",
		"tunnelProtocol":       "vxlan",
		"cluster":              map[string]any{"name": "ec2"},
	}
	if !sameJSON(t, ec2, wantEC2) {
		t.Errorf("EC2 cilium values changed:\n got %v\nwant %v", ec2, wantEC2)
	}
}

// sameJSON reports whether a and b encode to the same JSON: numbers compare
// equal whatever their Go type.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// 3. Each managed node group's size range: scaling.minSize and maxSize
// from the pool's scaling, else its replicas (maxSize at least 1, EKS's
// least, so a pool of 0 is possible); the MachinePool's replicas are the
// desired size. EKS repairs the group's nodes (nodeRepairConfig, CAPA
// v2.13.0 exp/api/v1beta2/awsmanagedmachinepool_types.go).
func TestEKSPoolScalingAndRepair(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	for name, want := range map[string]map[string][3]int64{ // pool -> replicas, min, max
		"aws-eks":        {"mp-general": {3, 3, 3}, "mp-batch": {0, 0, 1}},
		"aws-eks-cilium": {"mp-general": {3, 2, 6}, "mp-batch": {0, 0, 4}},
	} {
		r := renderFlavor(t, c, name, "")
		cluster := specOf(t, c, name).Metadata.Name
		for pool, w := range want {
			mp := objectOf(t, r, "MachinePool", cluster+"-"+pool)
			amp := objectOf(t, r, "AWSManagedMachinePool", cluster+"-"+pool)
			got := [3]int64{toInt(field(mp, "spec", "replicas")), toInt(field(amp, "spec", "scaling", "minSize")), toInt(field(amp, "spec", "scaling", "maxSize"))}
			if got != w {
				t.Errorf("%s %s: replicas, minSize, maxSize %v, want %v", name, pool, got, w)
			}
			if field(amp, "spec", "nodeRepairConfig", "enabled") != true {
				t.Errorf("%s %s: nodeRepairConfig %v, want enabled", name, pool, field(amp, "spec", "nodeRepairConfig"))
			}
		}
	}
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case int:
		return int64(x)
	}
	return -1
}

// 4. What we render for the EKS spec with Cilium
// (testdata/specs/aws-eks-cilium.yaml) is held against CAPA's own EKS
// flavor with managed node groups (v2.13.0
// templates/cluster-template-eks-managedmachinepool.yaml, rendered with
// the same variables, the pool general as its pool-0): the kinds, and
// every field docs/providers.md's AWS EKS table lists. A change on either
// side fails here unless it is listed as a difference we keep, with its
// reason; each field named must also be in the docs' table.
func TestEKSAgainstCAPAFlavor(t *testing.T) {
	t.Parallel()
	c := loadCatalog(t, embedded(t))
	s := specOf(t, c, "aws-eks-cilium")
	pool := s.Spec.AWS.Workers["general"]
	theirs := capaTemplate(t, "cluster-template-eks-managedmachinepool.yaml", map[string]string{
		"CLUSTER_NAME":         s.Metadata.Name,
		"AWS_REGION":           s.Spec.AWS.Region,
		"AWS_SSH_KEY_NAME":     s.Spec.AWS.SSHKeyName,
		"KUBERNETES_VERSION":   s.Spec.Kubernetes.Version,
		"WORKER_MACHINE_COUNT": fmt.Sprint(*pool.Replicas),
	})
	ours := renderFlavor(t, c, "aws-eks-cilium", "").Objects
	name := s.Metadata.Name

	compareKinds(t, ours, theirs, map[string]string{
		"AWSClusterStaticIdentity": "the tenant's credentials, not the controller's own identity",
	}, nil)

	tc, oc := find(t, theirs, "Cluster", name).Object, find(t, ours, "Cluster", name).Object
	tmc, omc := find(t, theirs, "AWSManagedCluster", name).Object, find(t, ours, "AWSManagedCluster", name).Object
	tcp, ocp := find(t, theirs, "AWSManagedControlPlane", name+"-control-plane").Object, find(t, ours, "AWSManagedControlPlane", name+"-control-plane").Object
	tmp, omp := find(t, theirs, "MachinePool", name+"-pool-0").Object, find(t, ours, "MachinePool", name+"-mp-general").Object
	tamp, oamp := find(t, theirs, "AWSManagedMachinePool", name+"-pool-0").Object, find(t, ours, "AWSManagedMachinePool", name+"-mp-general").Object
	tnc, onc := find(t, theirs, "NodeadmConfig", name+"-pool-0").Object, find(t, ours, "NodeadmConfig", name+"-mp-general").Object
	kindOf := func(v any) any { return at(v, "kind") }

	rows := []capaComparison{
		{"Cluster", "clusterNetwork.pods.cidrBlocks", at(tc, "spec", "clusterNetwork", "pods", "cidrBlocks"), at(oc, "spec", "clusterNetwork", "pods", "cidrBlocks"), ""},
		{"Cluster", "clusterNetwork.services.cidrBlocks", at(tc, "spec", "clusterNetwork", "services", "cidrBlocks"), at(oc, "spec", "clusterNetwork", "services", "cidrBlocks"),
			"explicit: CAPA passes it to EKS as the service range (serviceIpv4Cidr), the same on every provider"},
		{"Cluster", "controlPlaneRef", ref(at(tc, "spec", "controlPlaneRef")), ref(at(oc, "spec", "controlPlaneRef")), ""},
		{"Cluster", "infrastructureRef", ref(at(tc, "spec", "infrastructureRef")), ref(at(oc, "spec", "infrastructureRef")), ""},
		{"AWSManagedCluster", "spec", at(tmc, "spec"), at(omc, "spec"), ""},
		{"AWSManagedControlPlane", "region", at(tcp, "spec", "region"), at(ocp, "spec", "region"), ""},
		{"AWSManagedControlPlane", "sshKeyName", at(tcp, "spec", "sshKeyName"), at(ocp, "spec", "sshKeyName"), ""},
		{"AWSManagedControlPlane", "version", at(tcp, "spec", "version"), at(ocp, "spec", "version"),
			"EKS takes MAJOR.MINOR (CAPA's book, topics/eks/creating-a-cluster.md); ours says so"},
		{"AWSManagedControlPlane", "identityRef", at(tcp, "spec", "identityRef"), at(ocp, "spec", "identityRef"),
			"the tenant's credentials (AWSClusterStaticIdentity), not the controller's"},
		{"AWSManagedControlPlane", "vpcCni.disable", at(tcp, "spec", "vpcCni", "disable"), at(ocp, "spec", "vpcCni", "disable"),
			"Cilium replaces the VPC CNI (CAPA's book, topics/eks/pod-networking.md)"},
		{"AWSManagedControlPlane", "kubeProxy.disable", at(tcp, "spec", "kubeProxy", "disable"), at(ocp, "spec", "kubeProxy", "disable"),
			"Cilium replaces kube-proxy (kubeProxyReplacement)"},
		{"MachinePool", "metadata.name", at(tmp, "metadata", "name"), at(omp, "metadata", "name"), "one per pool of spec.aws.workers"},
		{"MachinePool", "replicas", at(tmp, "spec", "replicas"), at(omp, "spec", "replicas"), ""},
		{"MachinePool", "clusterName", at(tmp, "spec", "clusterName"), at(omp, "spec", "clusterName"), ""},
		{"MachinePool", "template.spec.version", at(tmp, "spec", "template", "spec", "version"), at(omp, "spec", "template", "spec", "version"), ""},
		{"MachinePool", "template.spec.bootstrap.configRef.kind", kindOf(at(tmp, "spec", "template", "spec", "bootstrap", "configRef")),
			kindOf(at(omp, "spec", "template", "spec", "bootstrap", "configRef")), ""},
		{"MachinePool", "template.spec.infrastructureRef.kind", kindOf(at(tmp, "spec", "template", "spec", "infrastructureRef")),
			kindOf(at(omp, "spec", "template", "spec", "infrastructureRef")), ""},
		{"AWSManagedMachinePool", "amiType", at(tamp, "spec", "amiType"), at(oamp, "spec", "amiType"), ""},
		{"AWSManagedMachinePool", "instanceType", at(tamp, "spec", "instanceType"), at(oamp, "spec", "instanceType"),
			"the pool's type (CAPA's flavor leaves EKS's default, t3.medium)"},
		{"AWSManagedMachinePool", "scaling", at(tamp, "spec", "scaling"), at(oamp, "spec", "scaling"),
			"the pool's scaling, else its replicas: always both bounds"},
		{"AWSManagedMachinePool", "nodeRepairConfig", at(tamp, "spec", "nodeRepairConfig"), at(oamp, "spec", "nodeRepairConfig"),
			"EKS repairs the nodes (no MachineHealthCheck can)"},
		{"AWSManagedMachinePool", "taints", at(tamp, "spec", "taints"), at(oamp, "spec", "taints"),
			"Cilium's agent-not-ready taint (Cilium's EKS requirements)"},
		{"AWSManagedMachinePool", "remoteAccess", at(tamp, "spec", "remoteAccess"), at(oamp, "spec", "remoteAccess"), ""},
		{"NodeadmConfig", "spec", at(tnc, "spec"), at(onc, "spec"), ""},
	}
	checkComparisons(t, rows, docsSection(t, "AWS EKS"), "AWS EKS")
}
