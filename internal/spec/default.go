package spec

import (
	"encoding/json"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Default values, applied by Default.
const (
	DefaultNamespace            = "default"
	DefaultControlPlaneReplicas = 3
	DefaultPoolReplicas         = 1
	DefaultGitOpsBranch         = "main"
	// DefaultHCloudImage is Hetzner's stock Ubuntu: it has no container
	// runtime, kubelet or kubeadm, which the nodes then install.
	DefaultHCloudImage = "ubuntu-24.04"
	// DefaultHCloudNetwork: clusters get a private network.
	DefaultHCloudNetwork = true
	// PlacementGroupsMinControlPlane is the control-plane size from which
	// placement groups are on by default: spreading one or two machines
	// buys little.
	PlacementGroupsMinControlPlane = 3
)

// CAPA's AMI lookup defaults (cluster-api-provider-aws v2.13
// pkg/cloud/services/ec2/ami.go), which apply to the lookup fields
// spec.aws.ami leaves out. They are CAPA's, not defaulted into the spec.
const (
	DefaultAWSAMILookupOrg    = "819546954734"
	DefaultAWSAMILookupBaseOS = "ubuntu-24.04"
	DefaultAWSAMILookupFormat = "capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*"
)

// Default fills in every field the document may omit. It is idempotent and
// leaves apiVersion and kind alone: those are validated, not defaulted.
//
//   - spec.credentials.secretName: <metadata.name>-credentials, when that is a
//     valid name
//   - spec.cluster.namespace: default
//   - control plane replicas (hcloud, aws with flavor ec2, and the generic
//     sections of Extra that have a controlPlane object): 3
//   - worker pool replicas: 1 (also in the generic sections of Extra)
//   - spec.hcloud.image: ubuntu-24.04; spec.hcloud.network.enabled: true;
//     spec.hcloud.placementGroups: true when the control plane has 3 or
//     more machines
//   - spec.aws.flavor: ec2
//   - spec.gitops.branch: main; spec.gitops.path: clusters/<spec.cluster.domain>
func (c *Capi) Default() {
	s := &c.Spec
	if s.Credentials.SecretName == "" && c.Metadata.Name != "" {
		// An invalid name is reported on metadata.name, not again on a
		// secret name the document never mentioned.
		if name := c.Metadata.Name + "-credentials"; len(validation.IsDNS1123Subdomain(name)) == 0 {
			s.Credentials.SecretName = name
		}
	}
	if s.Cluster.Namespace == "" {
		s.Cluster.Namespace = DefaultNamespace
	}
	if h := s.HCloud; h != nil {
		defaultControlPlane(h.ControlPlane)
		defaultPools(h.Workers)
		if h.Image == nil {
			h.Image = ptr(DefaultHCloudImage)
		}
		if h.Network == nil {
			h.Network = &HCloudNetwork{}
		}
		if h.Network.Enabled == nil {
			h.Network.Enabled = ptr(s.HCloudNetworkEnabled())
		}
		if h.PlacementGroups == nil {
			h.PlacementGroups = ptr(h.PlacementGroupsEnabled())
		}
	}
	if r := s.HRobot; r != nil {
		defaultPools(r.Workers)
	}
	if a := s.AWS; a != nil {
		if a.Flavor == "" {
			a.Flavor = FlavorEC2
		}
		if a.Flavor == FlavorEC2 {
			defaultControlPlane(a.ControlPlane)
		}
		defaultPools(a.Workers)
	}
	for _, sec := range s.Extra {
		defaultSection(sec)
	}
	if g := s.GitOps; g != nil {
		if g.Branch == "" {
			g.Branch = DefaultGitOpsBranch
		}
		if g.Path == "" && s.Cluster.Domain != "" && len(validation.IsDNS1123Subdomain(s.Cluster.Domain)) == 0 {
			g.Path = "clusters/" + s.Cluster.Domain
		}
	}
}

func defaultControlPlane(cp *ControlPlane) {
	if cp != nil && cp.Replicas == nil {
		cp.Replicas = ptr(int32(DefaultControlPlaneReplicas))
	}
}

func defaultPools(pools map[string]Pool) {
	for name, p := range pools {
		if p.Replicas == nil {
			p.Replicas = ptr(int32(DefaultPoolReplicas))
			pools[name] = p
		}
	}
}

// defaultSection defaults a generic provider section as the built-in ones:
// controlPlane.replicas and each worker pool's replicas, when the object is
// there and the field is absent.
func defaultSection(sec map[string]any) {
	if cp, ok := sec["controlPlane"].(map[string]any); ok {
		if _, set := cp["replicas"]; !set || cp["replicas"] == nil {
			cp["replicas"] = json.Number(strconv.Itoa(DefaultControlPlaneReplicas))
		}
	}
	pools, _ := sec["workers"].(map[string]any)
	for _, p := range pools {
		if pool, ok := p.(map[string]any); ok {
			if _, set := pool["replicas"]; !set || pool["replicas"] == nil {
				pool["replicas"] = json.Number(strconv.Itoa(DefaultPoolReplicas))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }
