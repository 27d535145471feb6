package spec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// loadTestdata loads a testdata file that must be valid.
func loadTestdata(t *testing.T, name string) *Capi {
	t.Helper()
	c, err := Load(readTestdata(t, name), ValidateOptions{})
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return c
}

// fieldErrors asserts that err is a FieldErrors and returns it.
func fieldErrors(t *testing.T, err error) FieldErrors {
	t.Helper()
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error %v (%T) is not FieldErrors", err, err)
	}
	return fes
}

// syntaxError asserts that err is a *SyntaxError and returns it.
func syntaxError(t *testing.T, err error) *SyntaxError {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *SyntaxError", err, err)
	}
	return se
}

// requireFieldError asserts that errs holds an error on field whose message
// contains msg.
func requireFieldError(t *testing.T, errs FieldErrors, field, msg string) {
	t.Helper()
	for _, fe := range errs {
		if fe.Field == field && strings.Contains(fe.Message, msg) {
			return
		}
	}
	t.Errorf("no error on %s containing %q in:\n%s", field, msg, strings.ReplaceAll(errs.Error(), "; ", "\n"))
}

func TestLoadTestdata(t *testing.T) {
	t.Parallel()
	fromYAML := loadTestdata(t, "prod.yaml")
	fromJSON := loadTestdata(t, "prod.json")
	if !reflect.DeepEqual(fromYAML, fromJSON) {
		t.Fatalf("prod.yaml and prod.json differ:\n%+v\n%+v", fromYAML, fromJSON)
	}

	want := &Capi{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   Metadata{Name: "prod"},
		Spec: ClusterSpec{
			Kubernetes:        Kubernetes{Version: "v1.31.10"},
			Cluster:           ClusterSettings{Domain: "prod.example.com", Namespace: "default"},
			ManagementCluster: &ManagementCluster{Domain: "mgmt.example.com"},
			Credentials:       Credentials{SecretName: "prod-credentials"},
			HCloud: &HCloud{
				Region:       "fsn1",
				SSHKeyName:   "my-ssh-key",
				ControlPlane: &ControlPlane{Replicas: ptr[int32](3), Type: "cax21"},
				Workers: map[string]Pool{
					"general": {Replicas: ptr[int32](3), Type: "cax21"},
					"gpu":     {Replicas: ptr[int32](1), Type: "ccx33"},
				},
				Image:           ptr(DefaultHCloudImage),
				Network:         &HCloudNetwork{Enabled: ptr(true)},
				PlacementGroups: ptr(true),
			},
			Bootstrap: []Addon{{Name: "cilium"}, {Name: "ccm"}, {Name: "cert-manager"}},
			GitOps: &GitOps{
				Provider: "flux",
				Repo:     "https://github.com/myorg/infra.git",
				Branch:   "main",
				Path:     "clusters/prod.example.com/artifacts",
			},
		},
	}
	if !reflect.DeepEqual(fromYAML, want) {
		t.Fatalf("prod.yaml loaded as\n%+v\nwant\n%+v", fromYAML, want)
	}
	if got := fromYAML.Provider(); got != ProviderHetzner {
		t.Errorf("Provider() = %q, want %q", got, ProviderHetzner)
	}
}

func TestLoadAppliesDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		doc  string
		want func(c *Capi) []any // got and want values, in pairs
	}{
		{
			name: "hcloud",
			doc: `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: prod}
spec:
  kubernetes: {version: v1.33.1}
  cluster: {domain: prod.example.com}
  hcloud:
    region: nbg1
    sshKeyName: key
    controlPlane: {type: cax21}
    workers:
      general: {type: cax21}
      zero: {type: cax21, replicas: 0}
  gitops: {provider: argo, repo: "git@github.com:myorg/infra.git"}
`,
			want: func(c *Capi) []any {
				return []any{
					c.Spec.Credentials.SecretName, "prod-credentials",
					c.Spec.Cluster.Namespace, "default",
					*c.Spec.HCloud.ControlPlane.Replicas, int32(3),
					*c.Spec.HCloud.Workers["general"].Replicas, int32(1),
					*c.Spec.HCloud.Workers["zero"].Replicas, int32(0),
					c.Spec.GitOps.Branch, "main",
					c.Spec.GitOps.Path, "clusters/prod.example.com",
					c.Spec.ManagementCluster == nil, true,
					*c.Spec.HCloud.Image, "ubuntu-24.04",
					*c.Spec.HCloud.Network.Enabled, true,
					// 3 control-plane machines: spread over hosts.
					*c.Spec.HCloud.PlacementGroups, true,
				}
			},
		},
		{
			name: "hcloud fields set",
			doc: `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: prod}
spec:
  kubernetes: {version: v1.35.4}
  cluster: {domain: prod.example.com}
  hcloud:
    region: nbg1
    sshKeyName: key
    image: k8s-1.35.4-ubuntu-24.04
    network: {enabled: false}
    placementGroups: false
    controlPlane: {type: cax21, replicas: 5}
`,
			want: func(c *Capi) []any {
				return []any{
					*c.Spec.HCloud.Image, "k8s-1.35.4-ubuntu-24.04",
					*c.Spec.HCloud.Network.Enabled, false,
					*c.Spec.HCloud.PlacementGroups, false,
				}
			},
		},
		{
			name: "aws ec2",
			doc: `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: edge}
spec:
  kubernetes: {version: v1.37.0}
  cluster: {domain: edge.example.com, namespace: clusters}
  credentials: {secretName: aws-creds}
  aws:
    region: eu-central-1
    sshKeyName: key
    controlPlane: {type: m6i.large}
    workers: {general: {type: m6i.xlarge}}
`,
			want: func(c *Capi) []any {
				return []any{
					c.Spec.Credentials.SecretName, "aws-creds",
					c.Spec.Cluster.Namespace, "clusters",
					c.Spec.AWS.Flavor, FlavorEC2,
					*c.Spec.AWS.ControlPlane.Replicas, int32(3),
					*c.Spec.AWS.Workers["general"].Replicas, int32(1),
				}
			},
		},
		{
			name: "aws eks and hrobot-free",
			doc: `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: eks}
spec:
  kubernetes: {version: v1.32.4}
  cluster: {domain: eks.example.com}
  aws:
    region: us-gov-west-1
    flavor: eks
    workers: {general: {type: m6i.xlarge, replicas: 5}}
`,
			want: func(c *Capi) []any {
				return []any{
					c.Spec.AWS.Flavor, FlavorEKS,
					c.Spec.AWS.ControlPlane == nil, true,
					*c.Spec.AWS.Workers["general"].Replicas, int32(5),
					c.Provider(), ProviderAWS,
				}
			},
		},
		{
			name: "hcloud with hrobot",
			doc: `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: metal}
spec:
  kubernetes: {version: v1.31.0}
  cluster: {domain: metal.example.com}
  hcloud:
    region: hel1
    sshKeyName: key
    controlPlane: {type: cax21, replicas: 1}
  hrobot:
    workers: {storage: {type: ax41}}
`,
			want: func(c *Capi) []any {
				return []any{
					*c.Spec.HCloud.ControlPlane.Replicas, int32(1),
					*c.Spec.HRobot.Workers["storage"].Replicas, int32(1),
					// One control-plane machine: no placement group by default.
					*c.Spec.HCloud.PlacementGroups, false,
					c.Provider(), ProviderHetzner,
					strings.Join(c.Spec.ProviderFields(), ","), "spec.hcloud,spec.hrobot",
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load([]byte(tc.doc), ValidateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pairs := tc.want(c)
			for i := 0; i < len(pairs); i += 2 {
				if !reflect.DeepEqual(pairs[i], pairs[i+1]) {
					t.Errorf("value %d: got %v, want %v", i/2, pairs[i], pairs[i+1])
				}
			}
		})
	}
}

func TestDefaultIsIdempotent(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"prod.yaml", "prod.json"} {
		c, err := Parse(readTestdata(t, name))
		if err != nil {
			t.Fatal(err)
		}
		c.Spec.Credentials.SecretName = ""
		c.Spec.GitOps.Path = ""
		c.Spec.HCloud.ControlPlane.Replicas = nil
		c.Spec.HCloud.Workers["gpu"] = Pool{Type: "ccx33"}
		c.Default()
		once, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c.Default()
		twice, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if string(once) != string(twice) {
			t.Errorf("%s: Default is not idempotent:\n%s\n%s", name, once, twice)
		}
	}
}

func TestDefaultLeavesTypeAlone(t *testing.T) {
	t.Parallel()
	c := &Capi{}
	c.Default()
	if c.APIVersion != "" || c.Kind != "" {
		t.Errorf("Default set apiVersion %q, kind %q", c.APIVersion, c.Kind)
	}
	if c.Spec.Credentials.SecretName != "" {
		t.Errorf("Default made secret name %q without a cluster name", c.Spec.Credentials.SecretName)
	}
	if c.Spec.Cluster.Namespace != DefaultNamespace {
		t.Errorf("namespace = %q", c.Spec.Cluster.Namespace)
	}

	// An invalid name is reported once, on metadata.name.
	c = &Capi{Metadata: Metadata{Name: "Prod"}}
	c.Default()
	if c.Spec.Credentials.SecretName != "" {
		t.Errorf("Default derived secret name %q from an invalid name", c.Spec.Credentials.SecretName)
	}
}

func TestParseUnknownFields(t *testing.T) {
	t.Parallel()
	doc := `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
stauts: {}
metadata: {name: prod, namespcae: default}
spec:
  kubernetes: {version: v1.31.10}
  cluster: {domain: prod.example.com}
  hcloud:
    Region: fsn1
    region: fsn1
    sshKeyName: key
    controlPlane: {replicsa: 3, type: cax21}
    imageName: ubuntu-24.04
    network: {enabeld: false}
    placementGroup: true
    workers:
      gpu: {replicas: 1, type: ccx33, size: large}
      "odd.name": {type: ccx33, tpye: x}
  bootstrap:
    - cilium
    - {name: ccm, verison: 1.0.0, values: {anything: {goes: [here]}}}
  gitops: {provider: flux, repo: "https://github.com/myorg/infra.git", brnach: main}
`
	c, err := Parse([]byte(doc))
	errs := fieldErrors(t, err)
	want := FieldErrors{
		{"metadata.namespcae", "unknown field"},
		{"spec.bootstrap[1].verison", "unknown field"},
		{"spec.gitops.brnach", "unknown field"},
		{"spec.hcloud.Region", "unknown field"},
		{"spec.hcloud.controlPlane.replicsa", "unknown field"},
		{"spec.hcloud.imageName", "unknown field"},
		{"spec.hcloud.network.enabeld", "unknown field"},
		{"spec.hcloud.placementGroup", "unknown field"},
		{"spec.hcloud.workers.gpu.size", "unknown field"},
		{`spec.hcloud.workers["odd.name"].tpye`, "unknown field"},
		{"stauts", "unknown field"},
	}
	if !reflect.DeepEqual(errs, want) {
		t.Fatalf("errors:\n%v\nwant:\n%v", errs, want)
	}
	if c == nil {
		t.Fatal("Parse returned no spec with field errors")
	}
	if c.Spec.HCloud.Region != "fsn1" || c.Spec.HCloud.Workers["gpu"].Type != "ccx33" || c.Spec.Bootstrap[1].Name != "ccm" {
		t.Errorf("best-effort spec lost known fields: %+v", c.Spec)
	}
	wantValues := map[string]any{"anything": map[string]any{"goes": []any{"here"}}}
	if !reflect.DeepEqual(c.Spec.Bootstrap[1].Values, wantValues) {
		t.Errorf("values = %#v, want %#v", c.Spec.Bootstrap[1].Values, wantValues)
	}
	if got := err.Error(); !strings.Contains(got, "spec.hcloud.controlPlane.replicsa: unknown field; ") {
		t.Errorf("Error() = %q", got)
	}
}

// spec.aws.ami is parsed strictly: a misspelt field (CAPA's own names,
// imageLookupOrg, among them) is an error, not an ignored setting.
func TestParseAWSAMIUnknownFields(t *testing.T) {
	t.Parallel()
	doc := `
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: prod}
spec:
  kubernetes: {version: v1.34.1}
  cluster: {domain: prod.example.com}
  aws:
    region: eu-central-1
    sshKeyName: key
    controlPlane: {type: m6i.large}
    ami: {imageLookupOrg: "123456789012", lookupBaseOs: ubuntu-24.04, lookupFormat: "x-{{.K8sVersion}}"}
`
	c, err := Parse([]byte(doc))
	errs := fieldErrors(t, err)
	want := FieldErrors{
		{"spec.aws.ami.imageLookupOrg", "unknown field"},
		{"spec.aws.ami.lookupBaseOs", "unknown field"},
	}
	if !reflect.DeepEqual(errs, want) {
		t.Fatalf("errors:\n%v\nwant:\n%v", errs, want)
	}
	if c.Spec.AWS.AMI == nil || c.Spec.AWS.AMI.LookupFormat == nil || *c.Spec.AWS.AMI.LookupFormat != "x-{{.K8sVersion}}" {
		t.Errorf("best-effort spec lost lookupFormat: %+v", c.Spec.AWS.AMI)
	}
}

func TestParseTypeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc, field, msg string
	}{
		{"string for int", `spec: {hcloud: {controlPlane: {replicas: three}}}`, "spec.hcloud.controlPlane.replicas", "must be an integer"},
		{"float for int", `spec: {hcloud: {workers: {gpu: {replicas: 1.5}}}}`, "spec.hcloud.workers.gpu.replicas", "must be an integer"},
		{"quoted int", `spec: {aws: {workers: {gpu: {replicas: "2"}}}}`, "spec.aws.workers.gpu.replicas", "must be an integer"},
		{"int out of range", `spec: {hcloud: {controlPlane: {replicas: 3000000000}}}`, "spec.hcloud.controlPlane.replicas", "must be an integer between -2147483648 and 2147483647"},
		{"number for string", `spec: {kubernetes: {version: 1.31}}`, "spec.kubernetes.version", "must be a string, got number 1.31"},
		{"yaml 1.1 boolean for string", `metadata: {name: yes}`, "metadata.name", "must be a string, got boolean true"},
		{"list for object", `spec: {cluster: [a, b]}`, "spec.cluster", "must be an object, got a list"},
		{"string for object", `spec: {hcloud: fsn1}`, "spec.hcloud", "must be an object, got a string"},
		{"object for list", `spec: {bootstrap: {cilium: true}}`, "spec.bootstrap", "must be a list"},
		{"string for map", `spec: {hcloud: {workers: general}}`, "spec.hcloud.workers", "must be an object"},
		{"number addon", `spec: {bootstrap: [cilium, 42]}`, "spec.bootstrap[1]", "must be an addon name or an object"},
		{"addon name type", `spec: {bootstrap: [{name: [x]}]}`, "spec.bootstrap[0].name", "must be a string"},
		{"addon values type", `spec: {bootstrap: [{name: cilium, values: [x]}]}`, "spec.bootstrap[0].values", "must be an object"},
		{"json", `{"spec": {"hcloud": {"controlPlane": {"replicas": "3"}}}}`, "spec.hcloud.controlPlane.replicas", "must be an integer"},
		{"quoted boolean", `spec: {hcloud: {placementGroups: "false"}}`, "spec.hcloud.placementGroups", "must be a boolean"},
		{"number for boolean", `spec: {hcloud: {network: {enabled: 0}}}`, "spec.hcloud.network.enabled", "must be a boolean"},
		{"boolean for network", `spec: {hcloud: {network: false}}`, "spec.hcloud.network", "must be an object"},
		{"number for image", `spec: {hcloud: {image: 24.04}}`, "spec.hcloud.image", "must be a string"},
		// Postgres stores neither a NUL byte (SQLSTATE 22P05) nor invalid
		// UTF-8 (22021): such a spec would be accepted and break later reads.
		{"NUL in a string", `{"spec": {"hcloud": {"sshKeyName": "a\u0000b"}}}`, "spec.hcloud.sshKeyName", "must not contain NUL bytes or invalid UTF-8"},
		{"NUL in addon values", `{"spec": {"bootstrap": [{"name": "cilium", "values": {"a": ["x\u0000"]}}]}}`, "spec.bootstrap[0].values.a[0]", "must not contain NUL bytes"},
		{"NUL in a key", `{"spec": {"bootstrap": [{"name": "cilium", "values": {"a\u0000": 1}}]}}`, `spec.bootstrap[0].values["a\x00"]`, "field names must not contain NUL bytes"},
		{"number for ami lookupOrg", `spec: {aws: {ami: {lookupOrg: 123456789012}}}`, "spec.aws.ami.lookupOrg", "must be a string"},
		{"string for ami", `spec: {aws: {ami: ami-0123456789abcdef0}}`, "spec.aws.ami", "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.doc))
			errs := fieldErrors(t, err)
			if c == nil {
				t.Error("Parse returned no spec with field errors")
			}
			requireFieldError(t, errs, tc.field, tc.msg)
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		doc        string
		line, col  int
		msg        string
		anyColumn  bool
		wantString string
	}{
		{
			name: "yaml tab indentation",
			doc:  "apiVersion: cluster.lok8s.dev/v1beta1\nkind: Capi\nmetadata:\n\tname: prod\n",
			line: 4, msg: "found character that cannot start any token", anyColumn: true,
		},
		{
			name: "yaml unclosed flow sequence",
			doc:  "kind: Capi\nspec:\n  bootstrap: [cilium, ccm\n  gitops: {}\n",
			line: 3, msg: "did not find expected ',' or ']'", anyColumn: true,
		},
		{
			name: "yaml mapping in scalar",
			doc:  "kind: Capi\nmetadata: name: prod\n",
			line: 2, msg: "mapping values are not allowed", anyColumn: true,
			wantString: "syntax error at line 2: mapping values are not allowed in this context",
		},
		{
			name: "yaml duplicate key",
			doc:  "kind: Capi\nmetadata:\n  name: a\n  name: b\n",
			line: 4, msg: `key "name" already set in map`, anyColumn: true,
		},
		{
			name: "json missing colon",
			doc:  "{\n  \"apiVersion\": \"cluster.lok8s.dev/v1beta1\",\n  \"kind\" \"Capi\"\n}",
			line: 3, col: 10, msg: "after object key",
			wantString: "syntax error at line 3, column 10: invalid character '\"' after object key",
		},
		{
			name: "json missing comma",
			doc:  "{\n  \"kind\": \"Capi\"\n  \"spec\": {}\n}\n",
			line: 3, col: 3, msg: "after object key:value pair",
		},
		{
			name: "json column counts characters",
			doc:  "{\"name\": \"ä\" x}",
			line: 1, col: 14, msg: "invalid character 'x'",
		},
		{
			name: "json truncated",
			doc:  "{\n  \"kind\": \"Capi\",\n  \"spec\": {",
			line: 3, col: 12, msg: "unexpected end of JSON input",
		},
		{
			name: "json trailing data",
			doc:  "{\"kind\": \"Capi\"}\n{}",
			line: 2, col: 1, msg: "after top-level value",
		},
		{
			name: "json duplicate key",
			doc:  "{\n  \"kind\": \"Capi\",\n  \"kind\": \"Capi\"\n}",
			line: 3, msg: `duplicate key "kind"`, anyColumn: true,
		},
		{name: "empty", doc: "", msg: "empty document"},
		{name: "blank", doc: " \n\t\n", msg: "empty document"},
		{name: "only comments", doc: "# nothing here\n", msg: "empty document"},
		{name: "json null", doc: "null", msg: "empty document"},
		{
			name: "two yaml documents",
			doc:  "kind: Capi\n---\nkind: Capi\n",
			line: 2, msg: "more than one YAML document",
		},
		{name: "scalar document", doc: "just a string\n", line: 1, msg: "document must be a mapping of fields, got a string"},
		{name: "list document", doc: "[1, 2]", line: 1, msg: "document must be a mapping of fields, got a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.doc))
			if c != nil {
				t.Errorf("Parse returned a spec with a syntax error: %+v", c)
			}
			se := syntaxError(t, err)
			if se.Line != tc.line || (!tc.anyColumn && se.Column != tc.col) {
				t.Errorf("position = %d:%d, want %d:%d (%v)", se.Line, se.Column, tc.line, tc.col, se)
			}
			if !strings.Contains(se.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", se.Message, tc.msg)
			}
			if tc.wantString != "" && se.Error() != tc.wantString {
				t.Errorf("Error() = %q, want %q", se.Error(), tc.wantString)
			}
			if _, err := Load([]byte(tc.doc), ValidateOptions{}); !errors.As(err, &se) {
				t.Errorf("Load did not stop at the syntax error: %v", err)
			}
		})
	}
}

func TestParseAcceptedForms(t *testing.T) {
	t.Parallel()
	want := loadTestdata(t, "prod.yaml")
	for _, tc := range []struct {
		name string
		edit func(doc string) string
	}{
		{"trailing document marker", func(doc string) string { return doc + "---\n" }},
		{"leading document marker", func(doc string) string { return "---\n" + doc }},
		{"byte order mark", func(doc string) string { return "\ufeff" + doc }},
		{"crlf line ends", func(doc string) string { return strings.ReplaceAll(doc, "\n", "\r\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Load([]byte(tc.edit(string(readTestdata(t, "prod.yaml")))), ValidateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}

	t.Run("json escapes yaml lacks", func(t *testing.T) {
		t.Parallel()
		doc := strings.Replace(string(readTestdata(t, "prod.json")),
			`"https://github.com/myorg/infra.git"`, `"https:\/\/github.com\/myorg\/infra.git"`, 1)
		got, err := Load([]byte(doc), ValidateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})

	t.Run("json with a trailing comma is a yaml flow mapping", func(t *testing.T) {
		t.Parallel()
		c, err := Parse([]byte("{\n  \"kind\": \"Capi\",\n}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Kind != Kind {
			t.Errorf("got %+v", c)
		}
	})

	t.Run("yaml flow mapping", func(t *testing.T) {
		t.Parallel()
		c, err := Parse([]byte(`{apiVersion: cluster.lok8s.dev/v1beta1, kind: Capi, metadata: {name: prod}}`))
		if err != nil {
			t.Fatal(err)
		}
		if c.Kind != Kind || c.Metadata.Name != "prod" {
			t.Errorf("got %+v", c)
		}
	})
}

func TestAddonForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		doc      string
		want     Addon
		wantJSON string
	}{
		{"bare name", `cilium`, Addon{Name: "cilium"}, `"cilium"`},
		{"object with name only", `{name: cilium}`, Addon{Name: "cilium"}, `"cilium"`},
		{"object with version", `{name: cilium, version: v1.16.3}`, Addon{Name: "cilium", Version: "v1.16.3"}, `{"name":"cilium","version":"v1.16.3"}`},
		{
			"object with values",
			`{name: cilium, values: {kubeProxyReplacement: true, k8sServicePort: 6443, ipam: {mode: kubernetes}}}`,
			Addon{Name: "cilium", Values: map[string]any{
				"kubeProxyReplacement": true,
				"k8sServicePort":       json.Number("6443"),
				"ipam":                 map[string]any{"mode": "kubernetes"},
			}},
			`{"name":"cilium","values":{"ipam":{"mode":"kubernetes"},"k8sServicePort":6443,"kubeProxyReplacement":true}}`,
		},
		{"empty values", `{name: cilium, values: {}}`, Addon{Name: "cilium"}, `"cilium"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte("spec:\n  bootstrap:\n    - " + tc.doc + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Spec.Bootstrap) != 1 || !reflect.DeepEqual(c.Spec.Bootstrap[0], tc.want) {
				t.Fatalf("bootstrap = %#v, want [%#v]", c.Spec.Bootstrap, tc.want)
			}
			data, err := json.Marshal(c.Spec.Bootstrap[0])
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tc.wantJSON {
				t.Errorf("MarshalJSON = %s, want %s", data, tc.wantJSON)
			}
			// encoding/json reads back what MarshalJSON wrote.
			var back Addon
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Name, tc.want.Name) || back.Version != tc.want.Version || len(back.Values) != len(tc.want.Values) {
				t.Errorf("UnmarshalJSON = %#v, want %#v", back, tc.want)
			}
		})
	}
}

func TestAddonUnmarshalJSONRejectsOtherTypes(t *testing.T) {
	t.Parallel()
	var a Addon
	if err := json.Unmarshal([]byte(`42`), &a); err == nil {
		t.Error("UnmarshalJSON accepted a number")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		string(readTestdata(t, "prod.yaml")),
		string(readTestdata(t, "prod.json")),
		strings.Replace(string(readTestdata(t, "prod.yaml")), "    - ccm\n",
			"    - name: ccm\n      version: 1.31.0\n      values:\n        networking: {enabled: true, ratio: 0.5, list: [1, two, null], empty: {}}\n", 1),
		`
apiVersion: cluster.lok8s.dev/v1beta1
kind: Capi
metadata: {name: eks}
spec:
  kubernetes: {version: v1.35.2}
  cluster: {domain: eks.example.com}
  aws: {region: ap-southeast-2, flavor: eks, workers: {a: {type: m6i.large, replicas: 0}}}
  bootstrap: [{name: cilium, version: 1.16.0-rc.1+build.5}]
  gitops: {provider: argo, repo: "ssh://git@gitlab.example.com:2222/platform/infra.git", branch: release/2025.1, path: "."}
`,
	} {
		first, err := Load([]byte(doc), ValidateOptions{})
		if err != nil {
			t.Fatalf("Load: %v\n%s", err, doc)
		}
		data, err := json.Marshal(first)
		if err != nil {
			t.Fatal(err)
		}
		second, err := Load(data, ValidateOptions{})
		if err != nil {
			t.Fatalf("Load of marshalled spec: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(first, second) {
			t.Errorf("round trip changed the spec:\n%+v\n%+v", first, second)
		}
	}
}

func TestProviderFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		spec     ClusterSpec
		provider string
		fields   []string
	}{
		{"none", ClusterSpec{}, "", nil},
		{"hcloud", ClusterSpec{HCloud: &HCloud{}}, ProviderHetzner, []string{"spec.hcloud"}},
		{"hrobot", ClusterSpec{HRobot: &HRobot{}}, ProviderHetzner, []string{"spec.hrobot"}},
		{"hetzner", ClusterSpec{HCloud: &HCloud{}, HRobot: &HRobot{}}, ProviderHetzner, []string{"spec.hcloud", "spec.hrobot"}},
		{"aws", ClusterSpec{AWS: &AWS{}}, ProviderAWS, []string{"spec.aws"}},
		{"ambiguous", ClusterSpec{HCloud: &HCloud{}, AWS: &AWS{}}, "", []string{"spec.hcloud", "spec.aws"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &Capi{Spec: tc.spec}
			if got := c.Provider(); got != tc.provider {
				t.Errorf("Provider() = %q, want %q", got, tc.provider)
			}
			if got := tc.spec.ProviderFields(); !reflect.DeepEqual(got, tc.fields) {
				t.Errorf("ProviderFields() = %v, want %v", got, tc.fields)
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	// Valid YAML (a flow mapping with an empty value), invalid JSON.
	lenient := []byte("{\n  \"kind\": \"Capi\",\n  \"metadata\": {\"name\": }\n}")
	if _, err := Parse(lenient); err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			t.Fatalf("Parse should read this as YAML: %v", err)
		}
	}
	se := syntaxError(t, CheckJSON(lenient))
	if se.Line != 3 || se.Column != 24 {
		t.Fatalf("CheckJSON position %d:%d, want 3:24, the closing brace (%s)", se.Line, se.Column, se.Message)
	}
	if err := CheckJSON([]byte(`{"kind":"Capi"}`)); err != nil {
		t.Fatalf("valid JSON: %v", err)
	}
	if se := syntaxError(t, CheckJSON([]byte("  \n"))); se.Message != "empty document" {
		t.Fatalf("empty: %v", se)
	}
}
