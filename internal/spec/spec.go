// Package spec owns the cluster.lok8s.dev/v1beta1 Capi cluster spec: its Go
// types, strict parsing of YAML or JSON documents, defaulting and validation.
//
// Parse reports every unknown field and every wrongly typed value with its
// full path (spec.hcloud.workers.gpu.replicas, spec.bootstrap[1].name) in one
// FieldErrors; malformed documents are a *SyntaxError with a line and, for
// JSON, a column. Load chains Parse, Default and Validate and returns all
// field errors at once.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// The type of document this package reads.
const (
	APIVersion = "cluster.lok8s.dev/v1beta1"
	Kind       = "Capi"
)

// Provider names returned by Capi.Provider.
const (
	ProviderHetzner = "hetzner"
	ProviderAWS     = "aws"
)

// AWS flavors.
const (
	FlavorEC2 = "ec2"
	FlavorEKS = "eks"
)

// Capi is a production cluster provisioned through Cluster API.
type Capi struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   Metadata    `json:"metadata"`
	Spec       ClusterSpec `json:"spec"`
}

// Metadata names the cluster. The name prefixes generated object names.
type Metadata struct {
	Name string `json:"name"`
}

// ClusterSpec is the desired state of a Capi cluster. Exactly one provider is
// set: Hetzner (HCloud, optionally with HRobot bare-metal workers) or AWS.
type ClusterSpec struct {
	Kubernetes Kubernetes      `json:"kubernetes"`
	Cluster    ClusterSettings `json:"cluster"`
	// ManagementCluster is nil in SaaS mode.
	ManagementCluster *ManagementCluster `json:"managementCluster,omitempty"`
	Credentials       Credentials        `json:"credentials"`
	HCloud            *HCloud            `json:"hcloud,omitempty"`
	HRobot            *HRobot            `json:"hrobot,omitempty"`
	AWS               *AWS               `json:"aws,omitempty"`
	Bootstrap         []Addon            `json:"bootstrap,omitempty"`
	GitOps            *GitOps            `json:"gitops,omitempty"`
	// Extra holds the provider sections other than hcloud, hrobot and aws,
	// spec.<section> as a generic JSON object, for providers added as data
	// (a template catalog) rather than Go types. Parse only accepts the
	// sections its caller names (ValidateOptions.ProviderSections); they are
	// written inline, after the known fields, in the order of their names.
	Extra map[string]map[string]any `json:"-"`
}

// Kubernetes selects the Kubernetes release, as vMAJOR.MINOR.PATCH.
type Kubernetes struct {
	Version string `json:"version"`
}

// ClusterSettings locates the work cluster: Domain is its API endpoint host
// and Namespace the management-cluster namespace of its CAPI objects.
type ClusterSettings struct {
	Domain    string `json:"domain"`
	Namespace string `json:"namespace,omitempty"`
}

// ManagementCluster names the cluster that runs Cluster API.
type ManagementCluster struct {
	Domain string `json:"domain"`
}

// Credentials names the Secret holding the provider credentials.
type Credentials struct {
	SecretName string `json:"secretName,omitempty"`
}

// HCloud is the Hetzner Cloud provider section.
type HCloud struct {
	Region       string          `json:"region"`
	SSHKeyName   string          `json:"sshKeyName"`
	ControlPlane *ControlPlane   `json:"controlPlane,omitempty"`
	Workers      map[string]Pool `json:"workers,omitempty"`
	// Image is the Hetzner Cloud image of every server, control plane and
	// pools: an image name such as ubuntu-24.04 (DefaultHCloudImage), or
	// the name or caph-image-name label of a snapshot (an image-builder
	// node image). The nodes install what the image lacks.
	Image *string `json:"image,omitempty"`
	// Network is the cluster's private network; nil: DefaultHCloudNetwork,
	// or off with spec.hrobot (ClusterSpec.HCloudNetworkEnabled).
	Network *HCloudNetwork `json:"network,omitempty"`
	// PlacementGroups puts the control plane and each pool in a spread
	// placement group of its own (Hetzner: at most MaxPlacementGroupServers
	// servers each). Default: on when the control plane has
	// PlacementGroupsMinControlPlane machines or more.
	PlacementGroups *bool `json:"placementGroups,omitempty"`
}

// HCloudNetwork is the private network CAPH creates for the cluster.
type HCloudNetwork struct {
	// Enabled: the servers, the control-plane load balancer and the pods
	// (routed by the hcloud cloud controller manager) use a private
	// network; without it they talk over public addresses (the CNI
	// tunnels). Default true, but false with spec.hrobot: the hcloud CCM
	// cannot route pods through the network in Robot mode
	// (hcloud-cloud-controller-manager v1.35.0 docs/explanation/robot-support.md,
	// "Routes"), and true there is refused.
	Enabled *bool `json:"enabled,omitempty"`
}

// HCloudNetworkEnabled is the effective spec.hcloud.network.enabled: as
// set, else DefaultHCloudNetwork without spec.hrobot and false with it.
func (s *ClusterSpec) HCloudNetworkEnabled() bool {
	if h := s.HCloud; h != nil && h.Network != nil && h.Network.Enabled != nil {
		return *h.Network.Enabled
	}
	return DefaultHCloudNetwork && s.HRobot == nil
}

// PlacementGroupsEnabled is the effective spec.hcloud.placementGroups.
func (h *HCloud) PlacementGroupsEnabled() bool {
	if h.PlacementGroups != nil {
		return *h.PlacementGroups
	}
	replicas := int32(DefaultControlPlaneReplicas)
	if h.ControlPlane != nil && h.ControlPlane.Replicas != nil {
		replicas = *h.ControlPlane.Replicas
	}
	return replicas >= PlacementGroupsMinControlPlane
}

// HRobot adds Hetzner bare-metal worker pools to an HCloud cluster. A pool's
// Type selects the Hosts of that Type, such as "ax41".
type HRobot struct {
	SSHKeyName string          `json:"sshKeyName,omitempty"`
	Workers    map[string]Pool `json:"workers,omitempty"`
	// Hosts are the Robot servers the pools may install: each becomes a
	// CAPH HetznerBareMetalHost of the cluster.
	Hosts []HRobotHost `json:"hosts,omitempty"`
}

// HRobotHost is one Robot server, as CAPH v1.1's HetznerBareMetalHost
// describes it (api/v1beta1/hetznerbaremetalhost_types.go).
type HRobotHost struct {
	// ServerID is the server's number in Robot.
	ServerID int64 `json:"serverID"`
	// Name names the host's object, <cluster>-<name>: a DNS label.
	Name string `json:"name"`
	// Type is what the pools of that type select (the host's label
	// lok8s.dev/host-type), such as ax41.
	Type string `json:"type"`
	// RootDeviceHints says which disk the operating system goes on.
	RootDeviceHints *RootDeviceHints `json:"rootDeviceHints,omitempty"`
	// MaintenanceMode: CAPH deprovisions the host's machine and no pool
	// selects it.
	MaintenanceMode *bool `json:"maintenanceMode,omitempty"`
}

// RootDeviceHints names the root disk by its WWN (the host's
// status.hardwareDetails lists them once CAPH has inspected it). CAPH's
// RAID hints (raid.wwn) need swraid, which the pools do not set.
type RootDeviceHints struct {
	WWN string `json:"wwn"`
}

// AWS is the AWS provider section. Flavor is FlavorEC2 (kubeadm control plane
// on EC2 machines) or FlavorEKS (EKS-managed control plane).
type AWS struct {
	Region       string          `json:"region"`
	SSHKeyName   string          `json:"sshKeyName,omitempty"`
	Flavor       string          `json:"flavor,omitempty"`
	ControlPlane *ControlPlane   `json:"controlPlane,omitempty"`
	Workers      map[string]Pool `json:"workers,omitempty"`
	// AMI chooses the machine image of every EC2 machine (flavor ec2),
	// control plane and pools; nil: CAPA's default lookup of its
	// community AMIs.
	AMI *AWSAMI `json:"ami,omitempty"`
}

// AWSAMI is the machine image of the EC2 machines: an AMI by its ID, or a
// lookup by name (CAPA's AWSMachineTemplate ami.id, or imageLookupOrg,
// imageLookupBaseOS and imageLookupFormat), not both. A lookup field left
// out takes CAPA's default: owner DefaultAWSAMILookupOrg, base OS
// DefaultAWSAMILookupBaseOS, format DefaultAWSAMILookupFormat. The image
// must have kubeadm, kubelet and a container runtime at the cluster's
// Kubernetes version.
type AWSAMI struct {
	// ID is an AMI ID, ami-0123456789abcdef0, in the cluster's region. It
	// fixes the nodes' Kubernetes version: with it the version cannot be
	// changed.
	ID *string `json:"id,omitempty"`
	// LookupOrg is the AWS account ID (12 digits) that owns the AMIs.
	LookupOrg *string `json:"lookupOrg,omitempty"`
	// LookupBaseOS fills {{.BaseOS}} in LookupFormat, e.g. ubuntu-24.04.
	LookupBaseOS *string `json:"lookupBaseOS,omitempty"`
	// LookupFormat is the AMI name pattern (wildcards * and ?), with
	// {{.K8sVersion}} (the version without its v, 1.34.1) and optionally
	// {{.BaseOS}}; the newest matching AMI is used.
	LookupFormat *string `json:"lookupFormat,omitempty"`
}

// Lookup reports whether any lookup field is set.
func (a *AWSAMI) Lookup() bool {
	return a.LookupOrg != nil || a.LookupBaseOS != nil || a.LookupFormat != nil
}

// ControlPlane sizes the control plane machines.
type ControlPlane struct {
	Replicas *int32 `json:"replicas,omitempty"`
	Type     string `json:"type,omitempty"`
}

// Pool is a worker pool: Replicas machines of Type.
type Pool struct {
	Replicas *int32 `json:"replicas,omitempty"`
	Type     string `json:"type,omitempty"`
	// Scaling bounds the pool's size (AWS flavor eks only: an EKS managed
	// node group's minSize and maxSize). Replicas stays the desired size,
	// between the two; nil: Min and Max are Replicas (Max at least 1).
	Scaling *PoolScaling `json:"scaling,omitempty"`
}

// PoolScaling is a pool's size range; a bound left out is the pool's
// replicas (the upper one at least 1, as an EKS node group's maxSize must
// be).
type PoolScaling struct {
	Min *int32 `json:"min,omitempty"`
	Max *int32 `json:"max,omitempty"`
}

// Bounds returns the pool's size range as the EKS node group gets it: the
// scaling bounds given, else the replicas (the upper bound at least 1).
func (p Pool) Bounds() (lo, hi int32) {
	var replicas int32
	if p.Replicas != nil {
		replicas = *p.Replicas
	}
	lo, hi = replicas, max(replicas, 1)
	if p.Scaling != nil && p.Scaling.Min != nil {
		lo = *p.Scaling.Min
	}
	if p.Scaling != nil && p.Scaling.Max != nil {
		hi = *p.Scaling.Max
	}
	return lo, hi
}

// GitOps points the cluster at the repository it reconciles from.
type GitOps struct {
	Provider string `json:"provider"`
	Repo     string `json:"repo"`
	Branch   string `json:"branch,omitempty"`
	Path     string `json:"path,omitempty"`
	// SecretName names a git credential (PUT /v1/credentials/{name} with
	// provider git) for a private repository; empty for a public one.
	SecretName string `json:"secretName,omitempty"`
}

// Addon is an add-on applied after the cluster is up. In a document it is
// a bare name ("cilium"), an object {name, version, values}, or the map
// form {<name>: <values>} ("ccm: {networking: {enabled: true}}"); Values is
// free-form and passed to the add-on as is.
type Addon struct {
	Name    string         `json:"name"`
	Version string         `json:"version,omitempty"`
	Values  map[string]any `json:"values,omitempty"`
}

// addonObject is the object form of Addon, without its JSON methods.
type addonObject struct {
	Name    string         `json:"name"`
	Version string         `json:"version,omitempty"`
	Values  map[string]any `json:"values,omitempty"`
}

var (
	_ json.Marshaler   = Addon{}
	_ json.Unmarshaler = (*Addon)(nil)
	_ genericDecoder   = (*Addon)(nil)
)

// MarshalJSON writes the bare name when only Name is set, else the object.
func (a Addon) MarshalJSON() ([]byte, error) {
	if a.Version == "" && len(a.Values) == 0 {
		return json.Marshal(a.Name)
	}
	return json.Marshal(addonObject(a))
}

// UnmarshalJSON reads either form, leniently; Parse is the strict reader.
func (a *Addon) UnmarshalJSON(data []byte) error {
	var name string
	if err := json.Unmarshal(data, &name); err == nil {
		*a = Addon{Name: name}
		return nil
	}
	var obj addonObject
	if err := json.Unmarshal(data, &obj); err != nil {
		return errors.New("addon must be a name or an object with name, version and values")
	}
	*a = Addon(obj)
	return nil
}

// decodeGeneric reads either form from a generic JSON value, strictly.
func (a *Addon) decodeGeneric(d *decoder, path string, in any) {
	switch v := in.(type) {
	case string:
		*a = Addon{Name: v}
	case map[string]any:
		if name, values, ok := addonMapForm(v); ok {
			*a = Addon{Name: name}
			switch vals := values.(type) {
			case nil:
			case map[string]any:
				if len(vals) > 0 {
					a.Values = vals
				}
			default:
				d.fail(joinKey(path, name), "must be the addon's values, an object"+describe(values))
			}
			return
		}
		var obj addonObject
		d.decodeValue(path, in, reflectValueOf(&obj))
		*a = Addon(obj)
	default:
		d.fail(path, "must be an addon name or an object with name, version and values (or {<name>: <values>})")
	}
}

// addonMapForm reads the map form of an addon, {<name>: <values>} (the
// lok8s CLI's "- ccm: {networking: {enabled: true}}"): one key that is not
// a field of the object form.
func addonMapForm(m map[string]any) (name string, values any, ok bool) {
	if len(m) != 1 {
		return "", nil, false
	}
	for k, v := range m {
		name, values = k, v
	}
	if _, field := jsonFields(reflect.TypeFor[addonObject]())[name]; field {
		return "", nil, false
	}
	return name, values, true
}

// Provider returns ProviderHetzner when spec.hcloud and/or spec.hrobot is
// set, ProviderAWS when spec.aws is set, and "" when none or both are, or
// when a section of Spec.Extra is set: the template catalog names the
// provider of those (capi.Catalog.Detect).
func (c *Capi) Provider() string {
	hetzner := c.Spec.HCloud != nil || c.Spec.HRobot != nil
	aws := c.Spec.AWS != nil
	switch {
	case len(c.Spec.Extra) > 0:
		return ""
	case hetzner && !aws:
		return ProviderHetzner
	case aws && !hetzner:
		return ProviderAWS
	default:
		return ""
	}
}

// ProviderFields lists the provider sections that are set, in the order
// spec.hcloud, spec.hrobot, spec.aws, then the sections of Extra by name.
func (s ClusterSpec) ProviderFields() []string {
	var fields []string
	if s.HCloud != nil {
		fields = append(fields, "spec.hcloud")
	}
	if s.HRobot != nil {
		fields = append(fields, "spec.hrobot")
	}
	if s.AWS != nil {
		fields = append(fields, "spec.aws")
	}
	for _, name := range sortedKeys(s.Extra) {
		fields = append(fields, "spec."+name)
	}
	return fields
}

// ProviderSections returns the names of the provider sections that are set,
// as ProviderFields does but without the "spec." prefix.
func (s ClusterSpec) ProviderSections() []string {
	fields := s.ProviderFields()
	for i, f := range fields {
		fields[i] = strings.TrimPrefix(f, "spec.")
	}
	return fields
}

// Region is the region the provider section names: spec.hcloud.region,
// spec.aws.region, else the first "region" of a section of Extra (by
// name) that is a string; "" when none names one.
func (s ClusterSpec) Region() string {
	switch {
	case s.HCloud != nil && s.HCloud.Region != "":
		return s.HCloud.Region
	case s.AWS != nil && s.AWS.Region != "":
		return s.AWS.Region
	}
	for _, name := range sortedKeys(s.Extra) {
		if r, ok := s.Extra[name]["region"].(string); ok && r != "" {
			return r
		}
	}
	return ""
}

// clusterSpecFields is ClusterSpec without its JSON methods.
type clusterSpecFields ClusterSpec

var (
	_ json.Marshaler   = ClusterSpec{}
	_ json.Unmarshaler = (*ClusterSpec)(nil)
)

// MarshalJSON writes the known fields in their declared order, then the
// sections of Extra inline, sorted by name.
func (s ClusterSpec) MarshalJSON() ([]byte, error) {
	known, err := json.Marshal(clusterSpecFields(s))
	if err != nil || len(s.Extra) == 0 {
		return known, err
	}
	var buf bytes.Buffer
	buf.Write(known[:len(known)-1]) // without the closing brace
	for _, name := range sortedKeys(s.Extra) {
		key, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(s.Extra[name])
		if err != nil {
			return nil, fmt.Errorf("spec.%s: %w", name, err)
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(key)
		buf.WriteByte(':')
		buf.Write(value)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads the known fields and keeps every other key whose value
// is an object in Extra, with numbers as json.Number (as Parse keeps them).
// It is lenient; Parse is the strict reader.
func (s *ClusterSpec) UnmarshalJSON(data []byte) error {
	var known clusterSpecFields
	if err := json.Unmarshal(data, &known); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	fields := jsonFields(reflect.TypeFor[ClusterSpec]())
	for key, raw := range all {
		if _, ok := fields[key]; ok {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var section map[string]any
		if err := dec.Decode(&section); err != nil || section == nil {
			continue // not an object: not a provider section
		}
		if known.Extra == nil {
			known.Extra = map[string]map[string]any{}
		}
		known.Extra[key] = section
	}
	*s = ClusterSpec(known)
	return nil
}
