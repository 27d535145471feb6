package spec

import (
	"strings"
	"testing"
)

func TestValidateUpdate(t *testing.T) {
	t.Parallel()
	base := func(t *testing.T) *Capi { return loadTestdata(t, "prod.yaml") }
	for _, tc := range []struct {
		name   string
		change func(c *Capi)
		field  string // "" = allowed
		msg    string
	}{
		{"scale a pool", func(c *Capi) { *c.Spec.HCloud.Workers["general"].Replicas = 5 }, "", ""},
		{"add a pool", func(c *Capi) { c.Spec.HCloud.Workers["new"] = Pool{Replicas: ptr[int32](1), Type: "cax11"} }, "", ""},
		{"remove a pool", func(c *Capi) { delete(c.Spec.HCloud.Workers, "gpu") }, "", ""},
		{"control plane replicas and type", func(c *Capi) { *c.Spec.HCloud.ControlPlane.Replicas = 5; c.Spec.HCloud.ControlPlane.Type = "cax31" }, "", ""},
		{"patch upgrade", func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31.12" }, "", ""},
		{"next minor", func(c *Capi) { c.Spec.Kubernetes.Version = "v1.32.0" }, "", ""},
		{"two minors", func(c *Capi) { c.Spec.Kubernetes.Version = "v1.33.1" }, "spec.kubernetes.version", "one minor version at a time: from v1.31.10 the next is v1.32.x"},
		{"minor downgrade", func(c *Capi) { c.Spec.Kubernetes.Version = "v1.30.9" }, "spec.kubernetes.version", "downgrades are not supported"},
		{"patch downgrade", func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31.9" }, "spec.kubernetes.version", "downgrades are not supported"},
		{"region", func(c *Capi) { c.Spec.HCloud.Region = "nbg1" }, "spec.hcloud.region", "is immutable: fsn1, not nbg1"},
		{"domain", func(c *Capi) { c.Spec.Cluster.Domain = "other.example.com" }, "spec.cluster.domain", "is immutable"},
		{"namespace", func(c *Capi) { c.Spec.Cluster.Namespace = "other" }, "spec.cluster.namespace", "is immutable"},
		{"name", func(c *Capi) { c.Metadata.Name = "other" }, "metadata.name", "is immutable"},
		{"management cluster", func(c *Capi) { c.Spec.ManagementCluster = nil }, "spec.managementCluster.domain", "is immutable: mgmt.example.com, not (none)"},
		{"credentials", func(c *Capi) { c.Spec.Credentials.SecretName = "x" }, "spec.credentials.secretName", "PUT /v1/credentials/prod-credentials"},
		// CAPH v1.1.8's webhooks: HetznerCluster.spec.hcloudNetwork and
		// HCloudMachineTemplate.spec are immutable
		// (api/v1beta1/hetznercluster_webhook.go, hcloudmachinetemplate_webhook.go).
		{"image", func(c *Capi) { c.Spec.HCloud.Image = ptr("k8s-snapshot") }, "spec.hcloud.image", "is immutable: ubuntu-24.04, not k8s-snapshot"},
		{"network", func(c *Capi) { c.Spec.HCloud.Network.Enabled = ptr(false) }, "spec.hcloud.network.enabled", "HetznerCluster's network"},
		{"placement groups", func(c *Capi) { c.Spec.HCloud.PlacementGroups = ptr(false) }, "spec.hcloud.placementGroups", "is immutable: true, not false"},
		{"placement groups unset, same effect", func(c *Capi) { c.Spec.HCloud.PlacementGroups = nil }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, updated := base(t), base(t)
			tc.change(updated)
			checkUpdate(t, ValidateUpdate(old, updated, "hetzner", "hetzner"), tc.field, tc.msg)
		})
	}
	t.Run("provider", func(t *testing.T) {
		t.Parallel()
		errs := ValidateUpdate(base(t), base(t), "hetzner", "aws")
		if len(errs) != 1 || errs[0].Field != "spec" || !strings.Contains(errs[0].Message, "provider is immutable") {
			t.Fatalf("%v", errs)
		}
	})
}

// checkUpdate checks ValidateUpdate's errs: none when field is "" (the
// update is allowed), else one error for field whose message contains msg.
func checkUpdate(t *testing.T, errs FieldErrors, field, msg string) {
	t.Helper()
	if field == "" {
		if len(errs) != 0 {
			t.Fatalf("refused: %v", errs)
		}
		return
	}
	if len(errs) != 1 || errs[0].Field != field || !strings.Contains(errs[0].Message, msg) {
		t.Fatalf("got %v, want %s: ...%s...", errs, field, msg)
	}
}

// spec.aws.ami is immutable: CAPA v2.13.0 refuses any change to an
// AWSMachineTemplate's spec.template.spec (webhooks/awsmachinetemplate_webhook.go,
// ValidateUpdate), and ours keep their names. An AMI ID holds one
// Kubernetes version's kubelet and kubeadm (CAPA book,
// topics/images/custom-amis.md: a new version needs a new image and
// AWSMachineTemplate), so with one the version cannot change; a lookup finds
// each version's image (CAPA looks up the Machine's version).
func TestValidateUpdateAWSAMI(t *testing.T) {
	t.Parallel()
	id := func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{ID: ptr("ami-0123456789abcdef0")} }
	lookup := func(c *Capi) { c.Spec.AWS.AMI = &AWSAMI{LookupOrg: ptr("123456789012")} }
	none := func(c *Capi) {}
	for _, tc := range []struct {
		name        string
		old, change func(c *Capi)
		field, msg  string // "" = allowed
	}{
		{"scale with an id", id, func(c *Capi) { *c.Spec.AWS.Workers["general"].Replicas = 4 }, "", ""},
		{"set an id", none, id, "spec.aws.ami", `is immutable: (CAPA's default lookup), not {"id":"ami-0123456789abcdef0"}`},
		{"drop the lookup", lookup, func(c *Capi) { c.Spec.AWS.AMI = nil }, "spec.aws.ami", "refuses changes to an AWSMachineTemplate's spec"},
		{"another id", id, func(c *Capi) { c.Spec.AWS.AMI.ID = ptr("ami-0fedcba9876543210") }, "spec.aws.ami", "is immutable"},
		{"upgrade with a lookup", lookup, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.32.0" }, "", ""},
		{"upgrade with CAPA's lookup", none, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31.11" }, "", ""},
		{"upgrade with an id", id, func(c *Capi) { c.Spec.Kubernetes.Version = "v1.31.11" }, "spec.kubernetes.version",
			"cannot change while spec.aws.ami.id pins every machine to ami-0123456789abcdef0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, updated := validAWS(t, FlavorEC2), validAWS(t, FlavorEC2)
			tc.old(old)
			tc.old(updated)
			tc.change(updated)
			checkUpdate(t, ValidateUpdate(old, updated, "aws", "aws"), tc.field, tc.msg)
		})
	}
}
