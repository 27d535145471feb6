package spec

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// validAWS returns a valid AWS spec of the given flavor.
func validAWS(t *testing.T, flavor string) *Capi {
	t.Helper()
	c := loadTestdata(t, "prod.yaml")
	c.Spec.HCloud = nil
	c.Spec.AWS = &AWS{
		Region:     "eu-central-1",
		SSHKeyName: "key",
		Flavor:     flavor,
		Workers:    map[string]Pool{"general": {Replicas: ptr[int32](2), Type: "m6i.large"}},
	}
	if flavor == FlavorEC2 {
		c.Spec.AWS.ControlPlane = &ControlPlane{Replicas: ptr[int32](3), Type: "m6i.large"}
	}
	return c
}

func TestValidateAcceptsValidSpecs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		base func(t *testing.T) *Capi
		edit func(c *Capi)
		opts ValidateOptions
	}{
		{name: "prod example", edit: func(c *Capi) {}},
		{name: "saas mode", edit: func(c *Capi) { c.Spec.ManagementCluster = nil }},
		{name: "no gitops, no bootstrap", edit: func(c *Capi) { c.Spec.GitOps = nil; c.Spec.Bootstrap = nil }},
		{name: "lowest version", edit: func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31.0" }},
		{name: "highest version", edit: func(c *Capi) { c.Spec.Kubernetes.Version = "v1.37.99" }},
		{name: "name of 40 characters", edit: func(c *Capi) { c.Metadata.Name = strings.Repeat("a", 40) }},
		{name: "one control plane node", edit: func(c *Capi) { c.Spec.HCloud.ControlPlane.Replicas = ptr[int32](1) }},
		{name: "pool of zero", edit: func(c *Capi) { c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](0), Type: "ccx33"} }},
		{name: "hcloud snapshot image", edit: func(c *Capi) { c.Spec.HCloud.Image = ptr("k8s-v1.35.4_ubuntu-24.04") }},
		{name: "hcloud without network", edit: func(c *Capi) { c.Spec.HCloud.Network = &HCloudNetwork{Enabled: ptr(false)} }},
		// Nine fit a spread group of ten with the rolling update's extra machine.
		{name: "pool of nine in a placement group", edit: func(c *Capi) { c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](9), Type: "ccx33"} }},
		{name: "large pool without placement groups", edit: func(c *Capi) {
			c.Spec.HCloud.PlacementGroups = ptr(false)
			c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](40), Type: "ccx33"}
		}},
		{name: "large pool, one control-plane machine", edit: func(c *Capi) {
			// placementGroups not set: off by default below 3 control-plane machines.
			c.Spec.HCloud.PlacementGroups = nil
			c.Spec.HCloud.ControlPlane.Replicas = ptr[int32](1)
			c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](12), Type: "ccx33"}
		}},
		{name: "hrobot workers", edit: func(c *Capi) {
			c.Spec.HCloud.Network = nil // defaulted off with hrobot
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"storage": {Replicas: ptr[int32](2), Type: "ax41"}}}
		}},
		{name: "hrobot hosts", edit: func(c *Capi) {
			c.Spec.HCloud.Network = &HCloudNetwork{Enabled: ptr(false)}
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"storage": {Replicas: ptr[int32](2), Type: "ax41"}}, Hosts: []HRobotHost{
				{ServerID: 2317525, Name: "ax41-a", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.0025388801b4f8a1"}},
				{ServerID: 2105469, Name: "ax41-b", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "0x5000c500a1b2c3d4"}, MaintenanceMode: ptr(true)},
				// A type no pool selects (yet) is a spare.
				{ServerID: 2400001, Name: "spare", Type: "sx65", RootDeviceHints: &RootDeviceHints{WWN: "naa.5000c500a1b2c3d5"}},
			}}
		}},
		{name: "addon objects", edit: func(c *Capi) {
			c.Spec.Bootstrap = []Addon{{Name: "cilium", Version: "1.16.3"}, {Name: "ccm", Version: "v1.20.0-beta.1"}, {Name: "cert-manager", Values: map[string]any{"crds": true}}}
		}},
		{name: "custom known addons", opts: ValidateOptions{KnownAddons: []string{"cilium", "ccm", "cert-manager", "metallb"}}, edit: func(c *Capi) {
			c.Spec.Bootstrap = append(c.Spec.Bootstrap, Addon{Name: "metallb"})
		}},
		{name: "ssh repo", edit: func(c *Capi) { c.Spec.GitOps.Repo = "ssh://git@github.com/myorg/infra.git" }},
		{name: "scp-like repo", edit: func(c *Capi) { c.Spec.GitOps.Repo = "git@github.com:myorg/infra.git" }},
		{name: "scp-like repo without .git", edit: func(c *Capi) { c.Spec.GitOps.Repo = "git@gitlab.com:group/sub/infra" }},
		{name: "https repo with port", edit: func(c *Capi) { c.Spec.GitOps.Repo = "https://git.example.com:8443/org/repo" }},
		{name: "nested branch", edit: func(c *Capi) { c.Spec.GitOps.Branch = "release/v1.2" }},
		{name: "argo", edit: func(c *Capi) { c.Spec.GitOps.Provider = "argo" }},
		{name: "aws ec2", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) {}},
		{name: "aws eks without ssh key", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEKS) }, edit: func(c *Capi) { c.Spec.AWS.SSHKeyName = "" }},
		{name: "aws gov region", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) { c.Spec.AWS.Region = "us-gov-east-1" }},
		// AMI IDs: ami- and 8 (older) or 17 hexadecimal digits.
		{name: "aws ami id", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456789abcdef0")} }},
		{name: "aws short ami id", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0a1b2c3d")} }},
		{name: "aws ami lookup", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) {
			c.Spec.AWS.AMI = &AWSAMI{LookupOrg: ptr("123456789012"), LookupBaseOS: ptr("flatcar-stable"), LookupFormat: ptr("acme (k8s) {{.BaseOS}}/v{{.K8sVersion}}-*")}
		}},
		{name: "aws ami lookup, CAPA's format", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) {
			c.Spec.AWS.AMI = &AWSAMI{LookupFormat: ptr(DefaultAWSAMILookupFormat)}
		}},
		{name: "aws eks pool of zero", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEKS) }, edit: func(c *Capi) {
			c.Spec.AWS.Workers["batch"] = Pool{Replicas: ptr[int32](0), Type: "c6i.2xlarge"}
		}},
		{name: "aws eks pool scaling", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEKS) }, edit: func(c *Capi) {
			c.Spec.AWS.Workers["batch"] = Pool{Replicas: ptr[int32](0), Type: "c6i.2xlarge", Scaling: &PoolScaling{Min: ptr[int32](0), Max: ptr[int32](10)}}
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2), Type: "m6i.large", Scaling: &PoolScaling{Max: ptr[int32](4)}}
		}},
		{name: "aws ami lookup of an account", base: func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }, edit: func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupOrg: ptr("000000000001")} }},
		{name: "undefaulted fields", edit: func(c *Capi) {
			c.Spec.Cluster.Namespace = ""
			c.Spec.Credentials.SecretName = ""
			c.Spec.HCloud.ControlPlane.Replicas = nil
			c.Spec.HCloud.Workers["gpu"] = Pool{Type: "ccx33"}
			c.Spec.GitOps.Branch = ""
			c.Spec.GitOps.Path = ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *Capi
			if tc.base != nil {
				c = tc.base(t)
			} else {
				c = loadTestdata(t, "prod.yaml")
			}
			tc.edit(c)
			if errs := c.Validate(tc.opts); len(errs) > 0 {
				t.Errorf("Validate: %v", errs)
			}
		})
	}

	for _, region := range HCloudRegions {
		c := loadTestdata(t, "prod.yaml")
		c.Spec.HCloud.Region = region
		if errs := c.Validate(ValidateOptions{}); len(errs) > 0 {
			t.Errorf("region %s: %v", region, errs)
		}
	}
}

// TestValidateRules has one case per rule: each breaks one thing in a valid
// spec and expects exactly one error, on field, containing msg.
func TestValidateRules(t *testing.T) {
	t.Parallel()
	hcloud := func(t *testing.T) *Capi { return loadTestdata(t, "prod.yaml") }
	ec2 := func(t *testing.T) *Capi { return validAWS(t, FlavorEC2) }
	eks := func(t *testing.T) *Capi { return validAWS(t, FlavorEKS) }
	for _, tc := range []struct {
		name       string
		base       func(t *testing.T) *Capi
		edit       func(c *Capi)
		field, msg string
	}{
		// Document type.
		{"wrong apiVersion", hcloud, func(c *Capi) { c.APIVersion = "cluster.lok8s.dev/v1alpha1" }, "apiVersion", `must be "cluster.lok8s.dev/v1beta1"`},
		{"missing apiVersion", hcloud, func(c *Capi) { c.APIVersion = "" }, "apiVersion", `must be "cluster.lok8s.dev/v1beta1"`},
		{"wrong kind", hcloud, func(c *Capi) { c.Kind = "Lo" }, "kind", `must be "Capi"`},

		// metadata.name
		{"name missing", hcloud, func(c *Capi) { c.Metadata.Name = "" }, "metadata.name", "required"},
		{"name not a label", hcloud, func(c *Capi) { c.Metadata.Name = "Prod_1" }, "metadata.name", "RFC 1123 label"},
		{"name too long", hcloud, func(c *Capi) { c.Metadata.Name = strings.Repeat("a", 41) }, "metadata.name", "at most 40 characters"},

		// spec.kubernetes.version
		{"version missing", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "" }, "spec.kubernetes.version", "required"},
		{"version without v", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "1.31.10" }, "spec.kubernetes.version", "vMAJOR.MINOR.PATCH"},
		{"version without patch", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31" }, "spec.kubernetes.version", "vMAJOR.MINOR.PATCH"},
		{"version with suffix", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31.10-rc.1" }, "spec.kubernetes.version", "vMAJOR.MINOR.PATCH"},
		{"version leading zero", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.031.0" }, "spec.kubernetes.version", "vMAJOR.MINOR.PATCH"},
		{"version too old", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.30.14" }, "spec.kubernetes.version", "must be between v1.31.0 and v1.37.x"},
		{"version too new", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.38.0" }, "spec.kubernetes.version", "must be between v1.31.0 and v1.37.x"},
		{"version major 2", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v2.31.0" }, "spec.kubernetes.version", "must be between v1.31.0 and v1.37.x"},
		{"version huge", hcloud, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.99999999999999999999.0" }, "spec.kubernetes.version", "must be between"},

		// spec.cluster, spec.managementCluster, spec.credentials
		{"domain missing", hcloud, func(c *Capi) { c.Spec.Cluster.Domain = "" }, "spec.cluster.domain", "required"},
		{"domain invalid", hcloud, func(c *Capi) { c.Spec.Cluster.Domain = "Prod.Example.com" }, "spec.cluster.domain", "RFC 1123 subdomain"},
		{"domain without dot", hcloud, func(c *Capi) { c.Spec.Cluster.Domain = "localhost" }, "spec.cluster.domain", "at least one dot"},
		{"namespace invalid", hcloud, func(c *Capi) { c.Spec.Cluster.Namespace = "Default" }, "spec.cluster.namespace", "RFC 1123 label"},
		{"namespace with dot", hcloud, func(c *Capi) { c.Spec.Cluster.Namespace = "my.namespace" }, "spec.cluster.namespace", "must not contain dots"},
		{"management domain missing", hcloud, func(c *Capi) { c.Spec.ManagementCluster.Domain = "" }, "spec.managementCluster.domain", "required"},
		{"management domain without dot", hcloud, func(c *Capi) { c.Spec.ManagementCluster.Domain = "mgmt" }, "spec.managementCluster.domain", "at least one dot"},
		{"management domain invalid", hcloud, func(c *Capi) { c.Spec.ManagementCluster.Domain = "mgmt_example.com" }, "spec.managementCluster.domain", "RFC 1123 subdomain"},
		{"secret name invalid", hcloud, func(c *Capi) { c.Spec.Credentials.SecretName = "Prod Credentials" }, "spec.credentials.secretName", "RFC 1123 subdomain"},

		// Providers.
		{"no provider", hcloud, func(c *Capi) { c.Spec.HCloud = nil }, "spec", "one provider section is required: spec.hcloud, spec.hrobot or spec.aws"},
		{"two providers", ec2, func(c *Capi) { c.Spec.HCloud = loadTestdata(t, "prod.yaml").Spec.HCloud }, "spec", "spec.hcloud and spec.aws: only one provider may be set"},
		{"three providers", ec2, func(c *Capi) {
			c.Spec.HCloud = loadTestdata(t, "prod.yaml").Spec.HCloud
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{}
		}, "spec", "spec.hcloud, spec.hrobot and spec.aws: only one provider may be set"},

		// spec.hcloud
		{"hcloud region missing", hcloud, func(c *Capi) { c.Spec.HCloud.Region = "" }, "spec.hcloud.region", "required"},
		{"hcloud region unknown", hcloud, func(c *Capi) { c.Spec.HCloud.Region = "eu-central" }, "spec.hcloud.region", "must be one of fsn1, nbg1, hel1, ash, hil, sin"},
		{"hcloud ssh key missing", hcloud, func(c *Capi) { c.Spec.HCloud.SSHKeyName = "" }, "spec.hcloud.sshKeyName", "required"},
		{"hcloud control plane missing", hcloud, func(c *Capi) { c.Spec.HCloud.ControlPlane = nil }, "spec.hcloud.controlPlane", "required"},
		{"hcloud control plane type missing", hcloud, func(c *Capi) { c.Spec.HCloud.ControlPlane.Type = "" }, "spec.hcloud.controlPlane.type", "required"},
		{"hcloud control plane even", hcloud, func(c *Capi) { c.Spec.HCloud.ControlPlane.Replicas = ptr[int32](2) }, "spec.hcloud.controlPlane.replicas", "must be odd (1, 3, 5) for etcd quorum"},
		{"hcloud control plane zero", hcloud, func(c *Capi) { c.Spec.HCloud.ControlPlane.Replicas = ptr[int32](0) }, "spec.hcloud.controlPlane.replicas", "must be at least 1"},
		{"hcloud control plane negative", hcloud, func(c *Capi) { c.Spec.HCloud.ControlPlane.Replicas = ptr[int32](-1) }, "spec.hcloud.controlPlane.replicas", "must be at least 1"},
		{"hcloud pool name", hcloud, func(c *Capi) { c.Spec.HCloud.Workers["GPU"] = Pool{Type: "ccx33"} }, "spec.hcloud.workers.GPU", "pool name must be a DNS-1123 label"},
		{"hcloud pool name with dot", hcloud, func(c *Capi) { c.Spec.HCloud.Workers["a.b"] = Pool{Type: "ccx33"} }, `spec.hcloud.workers["a.b"]`, "pool name must be a DNS-1123 label"},
		{"hcloud pool negative", hcloud, func(c *Capi) { c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](-1), Type: "ccx33"} }, "spec.hcloud.workers.gpu.replicas", "must not be negative"},
		{"hcloud pool type missing", hcloud, func(c *Capi) { c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](1)} }, "spec.hcloud.workers.gpu.type", "required"},
		{"hcloud image empty", hcloud, func(c *Capi) { c.Spec.HCloud.Image = ptr("") }, "spec.hcloud.image", "must not be empty"},
		{"hcloud image with space", hcloud, func(c *Capi) { c.Spec.HCloud.Image = ptr("ubuntu 24.04") }, "spec.hcloud.image", "must be a Hetzner image name"},
		{"hcloud image too long", hcloud, func(c *Capi) { c.Spec.HCloud.Image = ptr(strings.Repeat("a", 64)) }, "spec.hcloud.image", "at most 63"},
		// Hetzner allows 10 servers in a spread placement group
		// (docs.hetzner.cloud, placement groups); a rolling update surges one
		// machine (CAPI's MachineDeployment maxSurge 1, KCP's rollout), so a
		// pool of 10 would not fit during an update.
		{"placement group pool too large", hcloud, func(c *Capi) { c.Spec.HCloud.Workers["general"] = Pool{Replicas: ptr[int32](10), Type: "cax21"} },
			"spec.hcloud.workers.general.replicas", "split the pool into pools of at most 9, or set spec.hcloud.placementGroups: false"},
		{"placement group pool too large by default", hcloud, func(c *Capi) {
			c.Spec.HCloud.PlacementGroups = nil // defaulted on: 3 control-plane machines
			c.Spec.HCloud.Workers["general"] = Pool{Replicas: ptr[int32](15), Type: "cax21"}
		}, "spec.hcloud.workers.general.replicas", "Hetzner limits to 10 servers"},
		{"placement group control plane too large", hcloud, func(c *Capi) { c.Spec.HCloud.ControlPlane.Replicas = ptr[int32](11) },
			"spec.hcloud.controlPlane.replicas", "set spec.hcloud.placementGroups: false"},

		// spec.hrobot
		{"hrobot without hcloud", hcloud, func(c *Capi) {
			c.Spec.HCloud = nil
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"metal": {Type: "ax41"}}}
		}, "spec.hcloud", "bare-metal workers need an hcloud control plane"},
		{"hrobot pool negative", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"metal": {Replicas: ptr[int32](-2), Type: "ax41"}}}
		}, "spec.hrobot.workers.metal.replicas", "must not be negative"},
		{"hrobot pool type missing", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"metal": {}}}
		}, "spec.hrobot.workers.metal.type", "required"},
		{"hrobot pool name", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"-metal": {Type: "ax41"}}}
		}, "spec.hrobot.workers.-metal", "pool name must be a DNS-1123 label"},
		// hcloud-cloud-controller-manager v1.35.0 docs/explanation/robot-support.md
		// ("Routes"): no pod routes through the network in Robot mode.
		{"hrobot with the private network", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = &HCloudNetwork{Enabled: ptr(true)}
			c.Spec.HRobot = &HRobot{Workers: map[string]Pool{"metal": {Type: "ax41"}}}
		}, "spec.hcloud.network.enabled", "must be false with spec.hrobot"},
		{"hrobot host duplicate server", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{
				{ServerID: 7, Name: "a", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.1"}},
				{ServerID: 7, Name: "b", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.2"}},
			}}
		}, "spec.hrobot.hosts[1].serverID", "duplicate: spec.hrobot.hosts[0] is the same server"},
		{"hrobot host duplicate name", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{
				{ServerID: 7, Name: "a", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.1"}},
				{ServerID: 8, Name: "a", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.2"}},
			}}
		}, "spec.hrobot.hosts[1].name", "duplicate"},
		{"hrobot host without server", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{{Name: "a", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.1"}}}}
		}, "spec.hrobot.hosts[0].serverID", "required"},
		{"hrobot host name", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{{ServerID: 7, Name: "Rack_1", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui.1"}}}}
		}, "spec.hrobot.hosts[0].name", "RFC 1123 label"},
		{"hrobot host type", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{{ServerID: 7, Name: "a", RootDeviceHints: &RootDeviceHints{WWN: "eui.1"}}}}
		}, "spec.hrobot.hosts[0].type", "required"},
		// CAPH v1.1.8 RootDeviceHints.IsValidWithMessage: a host without a
		// root disk waits for one.
		{"hrobot host without root disk", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{{ServerID: 7, Name: "a", Type: "ax41"}}}
		}, "spec.hrobot.hosts[0].rootDeviceHints.wwn", "required"},
		{"hrobot host wwn", hcloud, func(c *Capi) {
			c.Spec.HCloud.Network = nil
			c.Spec.HRobot = &HRobot{Hosts: []HRobotHost{{ServerID: 7, Name: "a", Type: "ax41", RootDeviceHints: &RootDeviceHints{WWN: "eui 1"}}}}
		}, "spec.hrobot.hosts[0].rootDeviceHints.wwn", "must be a WWN"},

		// spec.aws
		{"aws region missing", ec2, func(c *Capi) { c.Spec.AWS.Region = "" }, "spec.aws.region", "required"},
		{"aws region invalid", ec2, func(c *Capi) { c.Spec.AWS.Region = "eu-central" }, "spec.aws.region", "must be an AWS region such as eu-central-1"},
		{"aws region hetzner", ec2, func(c *Capi) { c.Spec.AWS.Region = "fsn1" }, "spec.aws.region", "must be an AWS region"},
		{"aws flavor unknown", ec2, func(c *Capi) { c.Spec.AWS.Flavor = "fargate" }, "spec.aws.flavor", "must be one of ec2, eks"},
		{"aws ec2 ssh key missing", ec2, func(c *Capi) { c.Spec.AWS.SSHKeyName = "" }, "spec.aws.sshKeyName", "required"},
		{"aws ec2 control plane missing", ec2, func(c *Capi) { c.Spec.AWS.ControlPlane = nil }, "spec.aws.controlPlane", "required for flavor ec2"},
		{"aws ec2 control plane type missing", ec2, func(c *Capi) { c.Spec.AWS.ControlPlane.Type = "" }, "spec.aws.controlPlane.type", "required"},
		{"aws ec2 control plane even", ec2, func(c *Capi) { c.Spec.AWS.ControlPlane.Replicas = ptr[int32](4) }, "spec.aws.controlPlane.replicas", "must be odd (1, 3, 5) for etcd quorum"},
		{"aws eks control plane", eks, func(c *Capi) { c.Spec.AWS.ControlPlane = &ControlPlane{Type: "m6i.large"} }, "spec.aws.controlPlane", "must be omitted for flavor eks: EKS manages the control plane"},
		{"aws pool negative", eks, func(c *Capi) { c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](-1), Type: "m6i.large"} }, "spec.aws.workers.general.replicas", "must not be negative"},
		// A dry run of 2^31-1 replicas per pool passed before.
		{"aws pool too large", eks, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2147483647), Type: "m6i.large"}
		}, "spec.aws.workers.general.replicas", "must be at most 1000"},
		{"too many pools", eks, func(c *Capi) {
			for i := 0; i < MaxPoolsPerSection; i++ {
				c.Spec.AWS.Workers[fmt.Sprintf("p%d", i)] = Pool{Type: "m6i.large"}
			}
		}, "spec.aws.workers", "must have at most 50 pools"},
		// scaling: an EKS managed node group's minSize and maxSize, around
		// the desired size; nowhere else.
		{"aws ec2 pool scaling", ec2, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2), Type: "m6i.large", Scaling: &PoolScaling{Min: ptr[int32](1), Max: ptr[int32](3)}}
		}, "spec.aws.workers.general.scaling", "applies to spec.aws.workers of flavor eks only"},
		{"hcloud pool scaling", hcloud, func(c *Capi) {
			c.Spec.HCloud.Workers["gpu"] = Pool{Replicas: ptr[int32](1), Type: "ccx33", Scaling: &PoolScaling{Max: ptr[int32](3)}}
		}, "spec.hcloud.workers.gpu.scaling", "flavor eks only"},
		{"aws eks scaling min above replicas", eks, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2), Type: "m6i.large", Scaling: &PoolScaling{Min: ptr[int32](3), Max: ptr[int32](5)}}
		}, "spec.aws.workers.general.scaling.min", "must be at most the pool's replicas (2)"},
		{"aws eks scaling min negative", eks, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2), Type: "m6i.large", Scaling: &PoolScaling{Min: ptr[int32](-1)}}
		}, "spec.aws.workers.general.scaling.min", "must not be negative"},
		{"aws eks scaling max below replicas", eks, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2), Type: "m6i.large", Scaling: &PoolScaling{Max: ptr[int32](1)}}
		}, "spec.aws.workers.general.scaling.max", "must be at least the pool's replicas (2)"},
		{"aws eks scaling max zero", eks, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](0), Type: "m6i.large", Scaling: &PoolScaling{Max: ptr[int32](0)}}
		}, "spec.aws.workers.general.scaling.max", "must be at least 1"},
		{"aws eks scaling max too large", eks, func(c *Capi) {
			c.Spec.AWS.Workers["general"] = Pool{Replicas: ptr[int32](2), Type: "m6i.large", Scaling: &PoolScaling{Max: ptr[int32](1001)}}
		}, "spec.aws.workers.general.scaling.max", "must be at most 1000"},
		{"aws pool type missing", eks, func(c *Capi) { c.Spec.AWS.Workers["general"] = Pool{} }, "spec.aws.workers.general.type", "required"},
		{"aws pool name", eks, func(c *Capi) { c.Spec.AWS.Workers["general_2"] = Pool{Type: "m6i.large"} }, "spec.aws.workers.general_2", "pool name must be a DNS-1123 label"},

		// spec.aws.ami: CAPA's AWSMachineTemplate ami.id, imageLookupOrg
		// (the EC2 owner-id filter: an account ID), imageLookupBaseOS,
		// imageLookupFormat (text/template with BaseOS and K8sVersion; CAPA
		// v2.13.0 pkg/cloud/services/ec2/ami.go); EC2 AMI names (RegisterImage).
		{"ami id and lookup", ec2, func(c *Capi) {
			c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456789abcdef0"), LookupOrg: ptr("123456789012")}
		}, "spec.aws.ami", "set id or the lookup fields (lookupOrg, lookupBaseOS, lookupFormat), not both"},
		{"ami empty", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{} }, "spec.aws.ami", "omit spec.aws.ami for CAPA's default lookup"},
		{"ami on eks", eks, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456789abcdef0")} }, "spec.aws.ami", "applies to flavor ec2 only"},
		{"ami id empty", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("")} }, "spec.aws.ami.id", "must be an AMI ID"},
		{"ami id uppercase", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456789ABCDEF0")} }, "spec.aws.ami.id", "lowercase hexadecimal"},
		{"ami id too short", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456")} }, "spec.aws.ami.id", "8 to 17"},
		{"ami id too long", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456789abcdef01")} }, "spec.aws.ami.id", "8 to 17"},
		{"ami id a snapshot", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("snap-0123456789abcdef0")} }, "spec.aws.ami.id", "must be an AMI ID"},
		{"ami id with spaces", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr(" ami-0123456789abcdef0")} }, "spec.aws.ami.id", "must be an AMI ID"},
		{"ami org an alias", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupOrg: ptr("amazon")} }, "spec.aws.ami.lookupOrg", "12-digit ID"},
		{"ami org too short", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupOrg: ptr("12345678901")} }, "spec.aws.ami.lookupOrg", "12-digit ID"},
		{"ami base os empty", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupBaseOS: ptr("")} }, "spec.aws.ami.lookupBaseOS", "must be a base OS name"},
		{"ami base os with a wildcard", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupBaseOS: ptr("ubuntu-*")} }, "spec.aws.ami.lookupBaseOS", "must be a base OS name"},
		{"ami format without the version", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupFormat: ptr("acme-{{.BaseOS}}-*")} }, "spec.aws.ami.lookupFormat", "must contain {{.K8sVersion}}"},
		{"ami format with another placeholder", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupFormat: ptr("acme-{{.Arch}}-{{.K8sVersion}}")} }, "spec.aws.ami.lookupFormat", "must be an AMI name pattern"},
		{"ami format with a template action", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupFormat: ptr("{{ .K8sVersion }}{{.K8sVersion}}")} }, "spec.aws.ami.lookupFormat", "without spaces"},
		{"ami format with a newline", ec2, func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupFormat: ptr("acme-{{.K8sVersion}}\n*")} }, "spec.aws.ami.lookupFormat", "must be an AMI name pattern"},
		{"ami format too long", ec2, func(c *Capi) {
			c.Spec.AWS.AMI = &AWSAMI{LookupFormat: ptr("{{.K8sVersion}}" + strings.Repeat("a", 114))}
		}, "spec.aws.ami.lookupFormat", "at most 128"},

		// spec.bootstrap
		{"addon name missing", hcloud, func(c *Capi) { c.Spec.Bootstrap[1].Name = "" }, "spec.bootstrap[1].name", "required"},
		{"addon unknown", hcloud, func(c *Capi) { c.Spec.Bootstrap[1].Name = "calico" }, "spec.bootstrap[1].name", `unknown addon "calico": must be one of cilium, ccm, cert-manager`},
		{"addon duplicate", hcloud, func(c *Capi) { c.Spec.Bootstrap[2].Name = "cilium" }, "spec.bootstrap[2].name", `duplicate addon "cilium"`},
		{"addon version", hcloud, func(c *Capi) { c.Spec.Bootstrap[0].Version = "latest" }, "spec.bootstrap[0].version", "must be a semantic version"},
		{"addon version partial", hcloud, func(c *Capi) { c.Spec.Bootstrap[0].Version = "v1.16" }, "spec.bootstrap[0].version", "must be a semantic version"},

		// spec.gitops
		{"gitops provider missing", hcloud, func(c *Capi) { c.Spec.GitOps.Provider = "" }, "spec.gitops.provider", "required: one of flux, argo"},
		{"gitops provider unknown", hcloud, func(c *Capi) { c.Spec.GitOps.Provider = "argocd" }, "spec.gitops.provider", "must be one of flux, argo"},
		{"gitops repo missing", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "" }, "spec.gitops.repo", "required"},
		{"gitops repo http", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "http://github.com/myorg/infra.git" }, "spec.gitops.repo", "must be a git URL"},
		{"gitops repo without path", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "https://github.com/" }, "spec.gitops.repo", "must be a git URL"},
		{"gitops repo with credentials", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "https://user:token@github.com/myorg/infra.git" }, "spec.gitops.repo", "must be a git URL"},
		{"gitops repo with space", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "https://github.com/my org/infra.git" }, "spec.gitops.repo", "must be a git URL"},
		{"gitops repo scp without org", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "git@github.com:infra.git" }, "spec.gitops.repo", "must be a git URL"},
		{"gitops repo bare path", hcloud, func(c *Capi) { c.Spec.GitOps.Repo = "myorg/infra" }, "spec.gitops.repo", "must be a git URL"},
		{"gitops branch space", hcloud, func(c *Capi) { c.Spec.GitOps.Branch = "my branch" }, "spec.gitops.branch", "valid git branch name"},
		{"gitops branch dots", hcloud, func(c *Capi) { c.Spec.GitOps.Branch = "a..b" }, "spec.gitops.branch", "valid git branch name"},
		{"gitops branch dash", hcloud, func(c *Capi) { c.Spec.GitOps.Branch = "-main" }, "spec.gitops.branch", "valid git branch name"},
		{"gitops branch lock", hcloud, func(c *Capi) { c.Spec.GitOps.Branch = "main.lock" }, "spec.gitops.branch", "valid git branch name"},
		{"gitops branch colon", hcloud, func(c *Capi) { c.Spec.GitOps.Branch = "a:b" }, "spec.gitops.branch", "valid git branch name"},
		{"gitops path absolute", hcloud, func(c *Capi) { c.Spec.GitOps.Path = "/clusters/prod" }, "spec.gitops.path", "relative path"},
		{"gitops path escapes", hcloud, func(c *Capi) { c.Spec.GitOps.Path = "clusters/../../etc" }, "spec.gitops.path", `no ".." segment`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.base(t)
			tc.edit(c)
			errs := c.Validate(ValidateOptions{})
			if len(errs) != 1 {
				t.Errorf("want exactly one error, got %d: %v", len(errs), errs)
			}
			requireFieldError(t, errs, tc.field, tc.msg)
		})
	}
}

func TestValidateReportsEverythingSorted(t *testing.T) {
	t.Parallel()
	c := &Capi{
		APIVersion: "v1",
		Metadata:   Metadata{Name: "Prod"},
		Spec: ClusterSpec{
			Cluster: ClusterSettings{Domain: "prod"},
			HCloud: &HCloud{
				ControlPlane: &ControlPlane{Replicas: ptr[int32](2)},
				Workers:      map[string]Pool{"b": {Replicas: ptr[int32](-1)}, "a": {Type: "x"}},
			},
			AWS:       &AWS{Flavor: FlavorEKS, ControlPlane: &ControlPlane{}},
			Bootstrap: []Addon{{Name: "cilium"}, {Name: "cilium", Version: "x"}},
			GitOps:    &GitOps{Provider: "jenkins", Repo: "ftp://x/y", Branch: "..", Path: "/"},
		},
	}
	errs := c.Validate(ValidateOptions{})
	var fields []string
	for _, fe := range errs {
		fields = append(fields, fe.Field)
	}
	want := []string{
		"apiVersion",
		"kind",
		"metadata.name",
		"spec",
		"spec.aws.controlPlane",
		"spec.aws.region",
		"spec.bootstrap[1].name",
		"spec.bootstrap[1].version",
		"spec.cluster.domain",
		"spec.gitops.branch",
		"spec.gitops.path",
		"spec.gitops.provider",
		"spec.gitops.repo",
		"spec.hcloud.controlPlane.replicas",
		"spec.hcloud.controlPlane.type",
		"spec.hcloud.region",
		"spec.hcloud.sshKeyName",
		"spec.hcloud.workers.b.replicas",
		"spec.hcloud.workers.b.type",
		"spec.kubernetes.version",
	}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields:\n%s\nwant:\n%s\nerrors: %v", strings.Join(fields, "\n"), strings.Join(want, "\n"), errs)
	}
	if !slices.IsSortedFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) }) {
		t.Error("errors are not sorted by field")
	}
}

func TestLoadMergesParseAndValidationErrors(t *testing.T) {
	t.Parallel()
	doc := `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: prod}
spec:
  kubernetes: {version: v1.30.0}
  cluster: {domain: prod.example.com, namspace: default}
  hcloud:
    region: fsn1
    sshKeyName: 42
    controlPlane: {replicas: 2, type: cax21}
    workers: {gpu: {replicas: many, type: ccx33}}
  bootstrap: [cilium, calico]
`
	c, err := Load([]byte(doc), ValidateOptions{})
	if c == nil {
		t.Fatal("Load returned no spec with field errors")
	}
	errs := fieldErrors(t, err)
	want := FieldErrors{
		{"spec.bootstrap[1].name", `unknown addon "calico": must be one of cilium, ccm, cert-manager`},
		{"spec.cluster.namspace", "unknown field"},
		{"spec.hcloud.controlPlane.replicas", "must be odd (1, 3, 5) for etcd quorum"},
		// Not also "required": the value is there, with the wrong type.
		{"spec.hcloud.sshKeyName", "must be a string, got number 42"},
		{"spec.hcloud.workers.gpu.replicas", "must be an integer, got a string"},
		{"spec.kubernetes.version", "must be between v1.31.0 and v1.37.x"},
	}
	if !reflect.DeepEqual(errs, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.ReplaceAll(errs.Error(), "; ", "\n"), strings.ReplaceAll(want.Error(), "; ", "\n"))
	}
}

func TestFieldErrorsError(t *testing.T) {
	t.Parallel()
	errs := FieldErrors{{"spec", "one provider section is required"}, {"metadata.name", "required"}}
	if got, want := errs.Error(), "spec: one provider section is required; metadata.name: required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
