package spec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
)

// FuzzLoad checks that Load never panics, fails only with a *SyntaxError or
// FieldErrors, and that a spec it accepts survives json.Marshal and Load
// unchanged, and Render in the document's shape and Load too.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"prod.yaml", "prod.json", "upstream-hetzner.yaml", "upstream-hetzner-ha.yaml", "upstream-aws.yaml", "upstream-hetzner-gitops.yaml"} {
		data, err := readFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"---\n",
		"kind: Capi\n---\nkind: Capi\n",
		"{\"a\": 1e400}",
		"a: .inf",
		"spec: {bootstrap: [cilium, {name: ccm, values: {a: [1, {b: null}]}}]}",
		"spec: {hcloud: {workers: {\"a.b\": {replicas: 99999999999}}}}",
		"metadata: {name: yes}\nspec: {kubernetes: {version: 1.31}}",
		"{\"kind\": \"Capi\",}",
		"[1, 2]",
		"\ufeff{}",
		// Valid documents of other shapes, so mutations reach the round trip.
		`{"apiVersion":"cluster.lok8s.dev/v1beta1","kind":"Capi","metadata":{"name":"eks"},"spec":{"kubernetes":{"version":"v1.35.2"},"cluster":{"domain":"eks.example.com"},"aws":{"region":"ap-southeast-2","flavor":"eks","workers":{"a":{"type":"m6i.large","replicas":0}}},"bootstrap":[{"name":"cilium","version":"1.16.0-rc.1","values":{"a":[1,"x",null,{"b":-0.5e3}],"c":{}}}],"gitops":{"provider":"argo","repo":"ssh://git@gitlab.example.com:2222/platform/infra.git","branch":"release/2025.1"}}}`,
		"apiVersion: cluster.lok8s.dev/v1beta1\nkind: Capi\nmetadata: {name: metal}\nspec:\n  kubernetes: {version: v1.31.0}\n  cluster: {domain: metal.example.com}\n  hcloud: {region: hel1, sshKeyName: key, controlPlane: {type: cax21, replicas: 1}}\n  hrobot: {workers: {storage: {type: ax41}}}\n  bootstrap: [{name: ccm, values: {x: [1, 2.5, yes, ~]}}]\n",
		"apiVersion: cluster.lok8s.dev/v1beta1\nkind: Capi\nmetadata: {name: ec2}\nspec:\n  kubernetes: {version: v1.37.1}\n  cluster: {domain: ec2.example.com}\n  credentials: {secretName: aws}\n  aws: {region: us-gov-west-1, sshKeyName: k, controlPlane: {type: m6i.large}}\n  gitops: {provider: flux, repo: \"git@github.com:o/r.git\"}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := LoadDocument(data, ValidateOptions{})
		var c *Capi
		if doc != nil {
			c = doc.Capi
		}
		if err != nil {
			var se *SyntaxError
			var fes FieldErrors
			switch {
			case errors.As(err, &se):
				if c != nil {
					t.Fatalf("spec returned with a syntax error: %v", err)
				}
			case errors.As(err, &fes):
				if c == nil || len(fes) == 0 {
					t.Fatalf("field errors without a spec, or empty: %v", err)
				}
			default:
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Load(out, ValidateOptions{})
		if err != nil {
			t.Fatalf("Load of marshalled spec: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip changed the spec:\n%#v\n%#v", c, again)
		}
		// Rendered in the shape it was written in, it loads the same.
		rendered, err := Render(c, doc.Shape)
		if err != nil {
			t.Fatalf("Render %s: %v", doc.Shape, err)
		}
		again, err = Load(rendered, ValidateOptions{})
		if err != nil {
			t.Fatalf("Load of the %s rendering: %v\n%s", doc.Shape, err, rendered)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("%s round trip changed the spec:\n%#v\n%#v", doc.Shape, c, again)
		}
	})
}

func readFile(name string) ([]byte, error) { return os.ReadFile("testdata/" + name) }
