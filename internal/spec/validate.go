package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The supported Kubernetes releases: v1.MinKubernetesMinor.0 up to the last
// patch of v1.MaxKubernetesMinor.
const (
	MinKubernetesMinor = 31
	MaxKubernetesMinor = 37
)

// MaxNameLength bounds metadata.name, which prefixes generated object names.
const MaxNameLength = 40

// DefaultAddons are the add-ons spec.bootstrap may name when
// ValidateOptions.KnownAddons is nil.
var DefaultAddons = []string{"cilium", "ccm", "cert-manager"}

// MaxPlacementGroupServers is how many servers Hetzner allows in a spread
// placement group.
const MaxPlacementGroupServers = 10

// hcloudImage: a Hetzner image name (ubuntu-24.04) or a snapshot's
// caph-image-name label value (a Kubernetes label value).
var hcloudImage = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// HCloudRegions are the Hetzner Cloud locations spec.hcloud.region accepts.
var HCloudRegions = []string{"fsn1", "nbg1", "hel1", "ash", "hil", "sin"}

// GitOpsProviders are the values spec.gitops.provider accepts.
var GitOpsProviders = []string{"flux", "argo"}

// ValidateOptions is what Validate checks against beyond the spec itself.
type ValidateOptions struct {
	// KnownAddons are the add-ons spec.bootstrap may name; nil means DefaultAddons.
	KnownAddons []string
	// ProviderSections are the spec sections that select a provider, from
	// the template catalog (capi.Catalog.ProviderSections); nil means
	// BuiltinSections. Load accepts spec.<section> for each, keeping those
	// other than the built-in ones in ClusterSpec.Extra, and a built-in
	// section not listed is reported as having no provider.
	ProviderSections []string
	// SectionProviders names the provider of each section
	// (capi.Catalog.SectionProviders): sections of one provider may be set
	// together, as spec.hcloud and spec.hrobot are. A section it does not
	// name belongs to its built-in provider (hcloud and hrobot: hetzner, aws:
	// aws), or else to a provider of its own.
	SectionProviders map[string]string
}

// BuiltinSections are the provider sections with Go types in ClusterSpec.
var BuiltinSections = []string{"hcloud", "hrobot", "aws"}

var builtinProviders = map[string]string{"hcloud": ProviderHetzner, "hrobot": ProviderHetzner, "aws": ProviderAWS}

var (
	kubernetesVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	semVer            = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	awsRegion         = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-[0-9]$`)
	awsAMIID          = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	awsAccountID      = regexp.MustCompile(`^[0-9]{12}$`)
	awsAMIBaseOS      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	scpRepo           = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)+$`)

	// awsAMIName: what an AMI name may hold (EC2 RegisterImage: letters,
	// digits, ( ) [ ] space . / - ' @ _), and the name filter's * and ?.
	awsAMIName = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./'@_*?-]+$`)
)

// Load parses, defaults and validates a document. A *SyntaxError stops it
// early; otherwise the unknown fields, type errors and validation errors are
// returned together in one FieldErrors, sorted by field, along with the
// best-effort spec. Without errors it returns the defaulted spec.
func Load(data []byte, opts ValidateOptions) (*Capi, error) {
	doc, err := LoadDocument(data, opts)
	if doc == nil {
		return nil, err
	}
	return doc.Capi, err
}

// LoadDocument is Load that also returns what ParseDocument learned about
// the document (its shape, the fields it ignored); the errors name fields
// as the document wrote them.
func LoadDocument(data []byte, opts ValidateOptions) (*Document, error) {
	doc, err := ParseDocument(data, opts.ProviderSections)
	var parseErrs FieldErrors
	if err != nil && !errors.As(err, &parseErrs) {
		return nil, err
	}
	c := doc.Capi
	c.Default()
	errs := parseErrs
	for _, fe := range doc.fieldErrors(c.Validate(opts)) {
		// A field that failed to decode is zero; do not also report it as missing.
		if !slices.ContainsFunc(parseErrs, func(pe FieldError) bool { return within(fe.Field, pe.Field) }) {
			errs = append(errs, fe)
		}
	}
	if len(errs) > 0 {
		errs.sortByField()
		return doc, errs
	}
	return doc, nil
}

// Validate returns every problem with the spec, sorted by field. It checks
// what is set and accepts empty values for the fields Default fills in, so
// it can run before or after Default.
func (c *Capi) Validate(opts ValidateOptions) FieldErrors {
	known := opts.KnownAddons
	if known == nil {
		known = DefaultAddons
	}
	v := validator{}
	s := &c.Spec

	if c.APIVersion != APIVersion {
		v.add("apiVersion", fmt.Sprintf("must be %q", APIVersion))
	}
	if c.Kind != Kind {
		v.add("kind", fmt.Sprintf("must be %q", Kind))
	}
	v.name("metadata.name", c.Metadata.Name)
	v.kubernetesVersion("spec.kubernetes.version", s.Kubernetes.Version)
	v.domain("spec.cluster.domain", s.Cluster.Domain)
	if ns := s.Cluster.Namespace; ns != "" {
		v.dns("spec.cluster.namespace", validation.IsDNS1123Label(ns))
	}
	if mc := s.ManagementCluster; mc != nil {
		v.domain("spec.managementCluster.domain", mc.Domain)
	}
	if sn := s.Credentials.SecretName; sn != "" {
		v.dns("spec.credentials.secretName", validation.IsDNS1123Subdomain(sn))
	}

	v.providers(s, opts)
	if h := s.HCloud; h != nil {
		v.hcloud(h)
	}
	if r := s.HRobot; r != nil {
		if s.HCloud == nil {
			v.add("spec.hcloud", "required when spec.hrobot is set: bare-metal workers need an hcloud control plane")
		}
		v.pools("spec.hrobot.workers", r.Workers, scalingEKSOnly)
		v.hosts(r.Hosts)
		if h := s.HCloud; h != nil && h.Network != nil && h.Network.Enabled != nil && *h.Network.Enabled {
			v.add("spec.hcloud.network.enabled", "must be false with spec.hrobot: the hcloud cloud controller manager cannot route pods "+
				"through the private network in Robot mode (pods tunnel over the public addresses); omit it or set false")
		}
	}
	if a := s.AWS; a != nil {
		v.aws(a)
	}
	for _, name := range sortedKeys(s.Extra) {
		v.section(name, s.Extra[name])
	}
	v.bootstrap(s.Bootstrap, known)
	if g := s.GitOps; g != nil {
		v.gitops(g)
	}

	v.errs.sortByField()
	return v.errs
}

// providers checks that the sections set select exactly one provider.
func (v *validator) providers(s *ClusterSpec, opts ValidateOptions) {
	sections := opts.ProviderSections
	if sections == nil {
		sections = BuiltinSections
	}
	set := s.ProviderSections()
	if len(set) == 0 {
		fields := make([]string, len(sections))
		for i, name := range sections {
			fields[i] = "spec." + name
		}
		v.add("spec", "one provider section is required: "+joinOr(fields))
		return
	}
	providers := map[string]bool{}
	builtinOnly := true
	for _, name := range set {
		if !slices.Contains(sections, name) {
			v.add("spec."+name, "no provider for this section is installed")
		}
		p, ok := opts.SectionProviders[name]
		if !ok {
			p, ok = builtinProviders[name]
			if !ok {
				p = name
			}
		}
		providers[p] = true
		if _, builtin := builtinProviders[name]; !builtin {
			builtinOnly = false
		}
	}
	if len(providers) < 2 {
		return
	}
	fields := s.ProviderFields()
	named := strings.Join(fields[:len(fields)-1], ", ") + " and " + fields[len(fields)-1]
	if builtinOnly {
		v.add("spec", named+": only one provider may be set, Hetzner (spec.hcloud, spec.hrobot) or AWS (spec.aws)")
		return
	}
	v.add("spec", named+": only one provider may be set")
}

// joinOr joins items as "a, b or c".
func joinOr(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// section checks a provider section kept generically (ClusterSpec.Extra):
// controlPlane and workers, when present, have the shape of the built-in
// sections' (replicas odd and at least 1; pools named by DNS labels, with
// replicas not negative). Its other fields are the provider's business.
func (v *validator) section(name string, sec map[string]any) {
	path := "spec." + name
	if cp, ok := sec["controlPlane"]; ok && cp != nil {
		m, ok := cp.(map[string]any)
		if !ok {
			v.add(path+".controlPlane", "must be an object"+describe(cp))
		} else if r, ok := m["replicas"]; ok && r != nil {
			switch n, ok := genericInt(r); {
			case !ok:
				v.add(path+".controlPlane.replicas", "must be an integer"+describe(r))
			case n < 1:
				v.add(path+".controlPlane.replicas", "must be at least 1")
			case n%2 == 0:
				v.add(path+".controlPlane.replicas", "must be odd (1, 3, 5) for etcd quorum")
			}
		}
	}
	w, ok := sec["workers"]
	if !ok || w == nil {
		return
	}
	pools, ok := w.(map[string]any)
	if !ok {
		v.add(path+".workers", "must be an object"+describe(w))
		return
	}
	for _, pool := range sortedKeys(pools) {
		pp := joinKey(path+".workers", pool)
		if msgs := validation.IsDNS1123Label(pool); len(msgs) > 0 {
			v.add(pp, "pool name must be a DNS-1123 label: "+strings.Join(msgs, "; "))
		}
		p, ok := pools[pool].(map[string]any)
		if !ok {
			if pools[pool] != nil {
				v.add(pp, "must be an object"+describe(pools[pool]))
			}
			continue
		}
		if r, ok := p["replicas"]; ok && r != nil {
			switch n, ok := genericInt(r); {
			case !ok:
				v.add(pp+".replicas", "must be an integer"+describe(r))
			case n < 0:
				v.add(pp+".replicas", "must not be negative")
			}
		}
	}
}

// genericInt reads an integer from a generic JSON value (json.Number as
// Parse makes them, or float64 and int from other sources).
func genericInt(in any) (int64, bool) {
	switch n := in.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 32)
		return i, err == nil
	case float64:
		return int64(n), n == float64(int64(n)) && n >= math.MinInt32 && n <= math.MaxInt32
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	default:
		return 0, false
	}
}

type validator struct {
	errs FieldErrors
}

func (v *validator) add(field, msg string) {
	v.errs = append(v.errs, FieldError{Field: field, Message: msg})
}

// dns records the messages of a k8s.io/apimachinery validation, if any.
func (v *validator) dns(field string, msgs []string) {
	if len(msgs) > 0 {
		v.add(field, strings.Join(msgs, "; "))
	}
}

func (v *validator) required(field, value string) bool {
	if value == "" {
		v.add(field, "required")
		return false
	}
	return true
}

func (v *validator) name(field, name string) {
	if !v.required(field, name) {
		return
	}
	if len(name) > MaxNameLength {
		v.add(field, fmt.Sprintf("must be at most %d characters: it prefixes generated object names", MaxNameLength))
		return
	}
	v.dns(field, validation.IsDNS1123Label(name))
}

func (v *validator) kubernetesVersion(field, version string) {
	if !v.required(field, version) {
		return
	}
	m := kubernetesVersion.FindStringSubmatch(version)
	if m == nil {
		v.add(field, "must be of the form vMAJOR.MINOR.PATCH, e.g. v1.31.10")
		return
	}
	major, errMajor := strconv.Atoi(m[1])
	minor, errMinor := strconv.Atoi(m[2])
	if errMajor != nil || errMinor != nil || major != 1 || minor < MinKubernetesMinor || minor > MaxKubernetesMinor {
		v.add(field, fmt.Sprintf("must be between v1.%d.0 and v1.%d.x", MinKubernetesMinor, MaxKubernetesMinor))
	}
}

func (v *validator) domain(field, domain string) {
	if !v.required(field, domain) {
		return
	}
	if msgs := validation.IsDNS1123Subdomain(domain); len(msgs) > 0 {
		v.dns(field, msgs)
		return
	}
	if !strings.Contains(domain, ".") {
		v.add(field, "must be a fully qualified domain name with at least one dot, e.g. prod.example.com")
	}
}

func (v *validator) hcloud(h *HCloud) {
	if v.required("spec.hcloud.region", h.Region) && !slices.Contains(HCloudRegions, h.Region) {
		v.add("spec.hcloud.region", "must be one of "+strings.Join(HCloudRegions, ", "))
	}
	v.required("spec.hcloud.sshKeyName", h.SSHKeyName)
	if h.ControlPlane == nil {
		v.add("spec.hcloud.controlPlane", "required")
	} else {
		v.controlPlane("spec.hcloud.controlPlane", h.ControlPlane)
	}
	v.pools("spec.hcloud.workers", h.Workers, scalingEKSOnly)
	if h.Image != nil && !hcloudImage.MatchString(*h.Image) {
		if *h.Image == "" {
			v.add("spec.hcloud.image", "must not be empty: omit it for "+DefaultHCloudImage)
		} else {
			v.add("spec.hcloud.image", "must be a Hetzner image name such as ubuntu-24.04, or a snapshot's name or caph-image-name label: "+
				"at most 63 letters, digits, '.', '_' or '-', beginning and ending with a letter or digit")
		}
	}
	if h.PlacementGroupsEnabled() {
		v.placementGroups(h)
	}
}

// wwn is a disk's World Wide Name as lsblk and CAPH's hardwareDetails show
// it (0x5000c500a1b2c3d4, eui.0025388801b4f8a1): CAPH compares it as is.
var wwn = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._:-]{0,127}$`)

// hosts checks spec.hrobot.hosts: names DNS labels and server ids
// positive, both unique, a type, and a root disk.
func (v *validator) hosts(hosts []HRobotHost) {
	names := map[string]int{}
	ids := map[int64]int{}
	for i, h := range hosts {
		at := fmt.Sprintf("spec.hrobot.hosts[%d]", i)
		if v.required(at+".name", h.Name) {
			v.dns(at+".name", validation.IsDNS1123Label(h.Name))
			if j, dup := names[h.Name]; dup {
				v.add(at+".name", fmt.Sprintf("duplicate: spec.hrobot.hosts[%d] has the same name", j))
			}
			names[h.Name] = i
		}
		if h.ServerID <= 0 {
			v.add(at+".serverID", "required: the server's number in Robot, above 0")
		} else if j, dup := ids[h.ServerID]; dup {
			v.add(at+".serverID", fmt.Sprintf("duplicate: spec.hrobot.hosts[%d] is the same server", j))
		} else {
			ids[h.ServerID] = i
		}
		if v.required(at+".type", h.Type) {
			if msgs := validation.IsValidLabelValue(h.Type); len(msgs) > 0 {
				v.add(at+".type", "must be a label value: "+strings.Join(msgs, "; "))
			}
		}
		switch {
		case h.RootDeviceHints == nil || h.RootDeviceHints.WWN == "":
			v.add(at+".rootDeviceHints.wwn", "required: the WWN of the disk to install on (CAPH waits for it otherwise)")
		case !wwn.MatchString(h.RootDeviceHints.WWN):
			v.add(at+".rootDeviceHints.wwn", "must be a WWN as the host's hardwareDetails show it, such as eui.0025388801b4f8a1 or 0x5000c500a1b2c3d4")
		}
	}
}

// placementGroups checks that the control plane and each pool fit their
// spread placement group during a rolling update, which adds one machine
// (CAPI's default surge of 1).
func (v *validator) placementGroups(h *HCloud) {
	const most = MaxPlacementGroupServers - 1
	why := fmt.Sprintf("with spec.hcloud.placementGroups on (the default from %d control-plane machines) its servers share a spread placement group, "+
		"which Hetzner limits to %d servers, and a rolling update adds one: at most %d", PlacementGroupsMinControlPlane, MaxPlacementGroupServers, most)
	if cp := h.ControlPlane; cp != nil && cp.Replicas != nil && *cp.Replicas > most {
		v.add("spec.hcloud.controlPlane.replicas", why+"; set spec.hcloud.placementGroups: false for a larger control plane")
	}
	for _, name := range sortedPoolNames(h.Workers) {
		if r := h.Workers[name].Replicas; r != nil && *r > most {
			v.add(joinKey("spec.hcloud.workers", name)+".replicas", why+
				"; split the pool into pools of at most "+strconv.Itoa(most)+", or set spec.hcloud.placementGroups: false")
		}
	}
}

func (v *validator) aws(a *AWS) {
	if v.required("spec.aws.region", a.Region) && !awsRegion.MatchString(a.Region) {
		v.add("spec.aws.region", "must be an AWS region such as eu-central-1 or us-gov-west-1")
	}
	switch a.Flavor {
	case "", FlavorEC2:
		v.required("spec.aws.sshKeyName", a.SSHKeyName)
		if a.ControlPlane == nil {
			v.add("spec.aws.controlPlane", "required for flavor ec2")
		} else {
			v.controlPlane("spec.aws.controlPlane", a.ControlPlane)
		}
	case FlavorEKS:
		if a.ControlPlane != nil {
			v.add("spec.aws.controlPlane", "must be omitted for flavor eks: EKS manages the control plane")
		}
	default:
		v.add("spec.aws.flavor", fmt.Sprintf("must be one of %s, %s", FlavorEC2, FlavorEKS))
	}
	scaling := scalingEKSOnly
	if a.Flavor == FlavorEKS {
		scaling = ""
	}
	v.pools("spec.aws.workers", a.Workers, scaling)
	if a.AMI != nil {
		v.awsAMI(a.Flavor, a.AMI)
	}
}

// The placeholders CAPA fills in spec.aws.ami.lookupFormat (its AMILookup
// fields, through text/template).
const (
	amiFormatVersion = "{{.K8sVersion}}"
	amiFormatBaseOS  = "{{.BaseOS}}"
)

// awsAMI checks spec.aws.ami: an AMI ID or a lookup, not both, and each
// field as EC2 and CAPA take it.
func (v *validator) awsAMI(flavor string, ami *AWSAMI) {
	const at = "spec.aws.ami"
	if flavor == FlavorEKS {
		v.add(at, "applies to flavor ec2 only: EKS node groups take their image from amiType")
		return
	}
	lookupFields := "lookupOrg, lookupBaseOS, lookupFormat"
	switch {
	case ami.ID != nil && ami.Lookup():
		v.add(at, "set id or the lookup fields ("+lookupFields+"), not both: with an id CAPA ignores the lookup")
	case ami.ID == nil && !ami.Lookup():
		v.add(at, "set id, or one or more of "+lookupFields+"; omit spec.aws.ami for CAPA's default lookup")
	}
	if id := ami.ID; id != nil && !awsAMIID.MatchString(*id) {
		v.add(at+".id", "must be an AMI ID: ami- and 8 to 17 lowercase hexadecimal digits, such as ami-0123456789abcdef0")
	}
	if org := ami.LookupOrg; org != nil && !awsAccountID.MatchString(*org) {
		v.add(at+".lookupOrg", "must be the 12-digit ID of the AWS account that owns the AMIs, such as "+DefaultAWSAMILookupOrg+" (CAPA's community images)")
	}
	if baseOS := ami.LookupBaseOS; baseOS != nil && !awsAMIBaseOS.MatchString(*baseOS) {
		v.add(at+".lookupBaseOS", "must be a base OS name such as "+DefaultAWSAMILookupBaseOS+": at most 63 letters, digits, '.', '_' or '-', beginning with a letter or digit")
	}
	if f := ami.LookupFormat; f != nil {
		rest := strings.ReplaceAll(strings.ReplaceAll(*f, amiFormatVersion, ""), amiFormatBaseOS, "")
		switch {
		case len(*f) > 128:
			v.add(at+".lookupFormat", "must be at most 128 characters (an AMI name's limit)")
		case !strings.Contains(*f, amiFormatVersion):
			v.add(at+".lookupFormat", "must contain "+amiFormatVersion+", so that each Kubernetes version (upgrades too) finds its own image, such as "+DefaultAWSAMILookupFormat)
		case rest != "" && !awsAMIName.MatchString(rest):
			v.add(at+".lookupFormat", "must be an AMI name pattern: letters, digits, ( ) [ ] space . / - ' @ _, the wildcards * and ?, and the placeholders "+
				amiFormatVersion+" and "+amiFormatBaseOS+" (written so, without spaces)")
		}
	}
}

func (v *validator) controlPlane(field string, cp *ControlPlane) {
	if r := cp.Replicas; r != nil {
		switch {
		case *r < 1:
			v.add(field+".replicas", "must be at least 1")
		case *r%2 == 0:
			v.add(field+".replicas", "must be odd (1, 3, 5) for etcd quorum")
		}
	}
	v.required(field+".type", cp.Type)
}

// The bounds a spec stays within, whatever a tenant's quota: what one
// cluster can sensibly be, so that an absurd spec is refused at once.
const (
	MaxPoolsPerSection = 50
	MaxPoolReplicas    = 1000
)

// scalingEKSOnly is why a pool's scaling is refused outside EKS: only
// an EKS managed node group takes a size range; a MachineDeployment has
// its replicas.
const scalingEKSOnly = "applies to spec.aws.workers of flavor eks only (an EKS managed node group's minSize and maxSize)"

// pools checks worker pools; refuseScaling, when not empty, is why a
// pool's scaling is refused there.
func (v *validator) pools(field string, pools map[string]Pool, refuseScaling string) {
	if len(pools) > MaxPoolsPerSection {
		v.add(field, fmt.Sprintf("must have at most %d pools, got %d", MaxPoolsPerSection, len(pools)))
		return
	}
	for _, name := range sortedPoolNames(pools) {
		p := pools[name]
		path := joinKey(field, name)
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			v.add(path, "pool name must be a DNS-1123 label: "+strings.Join(msgs, "; "))
		}
		if p.Replicas != nil && *p.Replicas < 0 {
			v.add(path+".replicas", "must not be negative")
		}
		if p.Replicas != nil && *p.Replicas > MaxPoolReplicas {
			v.add(path+".replicas", fmt.Sprintf("must be at most %d", MaxPoolReplicas))
		}
		v.required(path+".type", p.Type)
		if p.Scaling != nil {
			if refuseScaling != "" {
				v.add(path+".scaling", refuseScaling)
			} else {
				v.poolScaling(path, p)
			}
		}
	}
}

// poolScaling checks an EKS pool's size range as EKS takes a node group's
// scalingConfig (minSize at least 0, maxSize at least 1, minSize <=
// desiredSize <= maxSize) within the pool bound; CAPA's webhook checks
// only minSize <= maxSize (v2.13.0
// exp/webhooks/awsmanagedmachinepool_webhook.go, validateScaling).
func (v *validator) poolScaling(path string, p Pool) {
	lo, hi := p.Bounds()
	var replicas int32
	if p.Replicas != nil {
		replicas = *p.Replicas
	}
	switch {
	case lo < 0:
		v.add(path+".scaling.min", "must not be negative")
	case lo > replicas:
		v.add(path+".scaling.min", fmt.Sprintf("must be at most the pool's replicas (%d): EKS keeps the desired size within min and max", replicas))
	}
	switch {
	case hi < 1:
		v.add(path+".scaling.max", "must be at least 1 (EKS's least maxSize)")
	case hi > MaxPoolReplicas:
		v.add(path+".scaling.max", fmt.Sprintf("must be at most %d", MaxPoolReplicas))
	case hi < replicas:
		v.add(path+".scaling.max", fmt.Sprintf("must be at least the pool's replicas (%d): EKS keeps the desired size within min and max", replicas))
	}
}

func sortedPoolNames(pools map[string]Pool) []string {
	names := make([]string, 0, len(pools))
	for name := range pools {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (v *validator) bootstrap(addons []Addon, known []string) {
	seen := make(map[string]bool, len(addons))
	for i, a := range addons {
		field := fmt.Sprintf("spec.bootstrap[%d]", i)
		switch {
		case a.Name == "":
			v.add(field+".name", "required")
		case !slices.Contains(known, a.Name):
			v.add(field+".name", fmt.Sprintf("unknown addon %q: must be one of %s", a.Name, strings.Join(known, ", ")))
		case seen[a.Name]:
			v.add(field+".name", fmt.Sprintf("duplicate addon %q", a.Name))
		}
		seen[a.Name] = true
		if a.Version != "" && !semVer.MatchString(a.Version) {
			v.add(field+".version", "must be a semantic version such as 1.2.3 or v1.2.3")
		}
	}
}

func (v *validator) gitops(g *GitOps) {
	if g.Provider == "" {
		v.add("spec.gitops.provider", "required: one of "+strings.Join(GitOpsProviders, ", "))
	} else if !slices.Contains(GitOpsProviders, g.Provider) {
		v.add("spec.gitops.provider", "must be one of "+strings.Join(GitOpsProviders, ", "))
	}
	if v.required("spec.gitops.repo", g.Repo) && !validRepoURL(g.Repo) {
		v.add("spec.gitops.repo", "must be a git URL: https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git")
	}
	if g.Branch != "" && !validBranchName(g.Branch) {
		v.add("spec.gitops.branch", `must be a valid git branch name (no spaces, "..", or leading "-")`)
	}
	if g.Path != "" && !validRepoPath(g.Path) {
		v.add("spec.gitops.path", `must be a relative path inside the repository (no leading "/", no ".." segment)`)
	}
	if g.SecretName != "" {
		v.dns("spec.gitops.secretName", validation.IsDNS1123Subdomain(g.SecretName))
	}
}

// validRepoURL accepts https://host/path, ssh://[user@]host/path and the
// scp-like user@host:org/repo form. An https URL may not embed credentials.
func validRepoURL(s string) bool {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return false
	}
	if scpRepo.MatchString(s) {
		return true
	}
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	switch u.Scheme {
	case "https":
		if u.User != nil {
			return false
		}
	case "ssh":
	default:
		return false
	}
	return strings.Trim(u.Path, "/") != ""
}

// validBranchName applies the rules of git check-ref-format to a branch name.
func validBranchName(s string) bool {
	if s == "@" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "/") ||
		strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".") ||
		strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") {
		return false
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(`~^:?*[\`, r)
	}) {
		return false
	}
	for _, part := range strings.Split(s, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	return true
}

// validRepoPath accepts a relative slash-separated path that stays inside
// the repository.
func validRepoPath(s string) bool {
	if strings.HasPrefix(s, "/") || strings.Contains(s, `\`) {
		return false
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return false
	}
	return !slices.Contains(strings.Split(s, "/"), "..")
}
