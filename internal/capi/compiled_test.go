package capi

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	provisioner "lok8s.dev/provisioner"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/spec"
)

// embeddedCatalog loads the catalog the binary embeds.
func embeddedCatalog(t testing.TB) *Catalog {
	t.Helper()
	sub, err := fs.Sub(provisioner.Templates, "templates")
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadCatalog(sub)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// textCatalog is c rendering every template as text (renderText), as Render
// did before templates were compiled.
func textCatalog(c *Catalog) *Catalog {
	tc := *c
	tc.parsed = maps.Clone(c.parsed)
	for file, pt := range tc.parsed {
		pt.compiled = nil
		tc.parsed[file] = pt
	}
	return &tc
}

func goldenSpec(t testing.TB, c *Catalog, name string) *Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "specs", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := spec.Load(data, c.ValidateOptions(spec.ValidateOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	read, err := NewSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return read
}

// Every template of the embedded catalog compiles, and for every golden
// spec each template and patch renders from its compiled form (no fallback)
// to the objects the text path decodes, and Render to the same bytes.
func TestCompiledMatchesText(t *testing.T) {
	t.Parallel()
	c := embeddedCatalog(t)
	text := textCatalog(c)
	for _, file := range sortedKeys(c.parsed) {
		if c.parsed[file].compiled == nil {
			t.Errorf("%s: not compiled: it uses a form compiledTemplate does not cover, so every render decodes its text", file)
		}
	}
	specs, err := filepath.Glob(filepath.Join("testdata", "specs", "*.yaml"))
	if err != nil || len(specs) == 0 {
		t.Fatalf("no golden specs: %v", err)
	}
	for _, path := range specs {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := goldenSpec(t, c, name)
			in := RenderInput{Spec: s, Labels: map[string]string{mgmt.LabelTenant: "acme"}}
			got, err := c.Render(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := text.Render(in)
			if err != nil {
				t.Fatal(err)
			}
			sameObjects(t, "Render", got.Objects, want.Objects)
			gy, err := got.YAML()
			if err != nil {
				t.Fatal(err)
			}
			wy, err := want.YAML()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gy, wy) {
				t.Errorf("Render YAML differs from the text path's:\n%s\n--- text path:\n%s", gy, wy)
			}
			// Nothing a render does changes the compiled templates
			// (patches share their constant parts), nor does a caller
			// that changes what Render returned (an apply writes the
			// server's answer into the objects).
			for _, o := range got.Objects {
				scribble(o.Object)
			}
			again, err := c.Render(in)
			if err != nil {
				t.Fatal(err)
			}
			if ay, err := again.YAML(); err != nil || !bytes.Equal(ay, gy) {
				t.Errorf("a second Render differs from the first (%v):\n%s", err, ay)
			}
			// After the renders: each unit still compiled, and the same.
			pl, err := c.plan(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range append(pl.units, pl.patches...) {
				got, ok := c.parsed[u.file].compiled.render(u.vars, false)
				if !ok {
					t.Errorf("%s: the compiled path fell back to the text path", u.file)
					continue
				}
				want, err := c.renderText(u)
				if err != nil {
					t.Fatalf("%s: %v", u.file, err)
				}
				sameObjects(t, u.file, got, want)
			}
		})
	}
}

// scribble changes every map and list under v.
func scribble(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			scribble(e)
			v[k] = "scribbled"
		}
		v["scribbled"] = true
	case []any:
		for i, e := range v {
			scribble(e)
			v[i] = "scribbled"
		}
	}
}

func sameObjects(t *testing.T, what string, got, want []*unstructured.Unstructured) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d objects, text path %d", what, len(got), len(want))
	}
	for i := range got {
		// DeepEqual: the same Go types too (int64 3 and float64 3 print alike).
		if !reflect.DeepEqual(got[i].Object, want[i].Object) {
			t.Errorf("%s: object %d differs from the text path's:\n%#v\n--- text path:\n%#v", what, i, got[i].Object, want[i].Object)
		}
	}
}

// edgeTemplates use every form a reference may take, those the compiled
// path covers (the first) and those it leaves to the text path.
var edgeTemplates = map[string]string{
	"covered.yaml": `# A comment with ${A} in it.
apiVersion: v1
kind: ConfigMap
metadata:
  name: "cm-${A}"
  labels:
    n: "${N:=7}"
data:
  whole: "${A}"
  inside: "prefix ${A} middle ${B} suffix"
  escaped: "tab\there ${A}\\"
  list: ["${A}", "x-${B}"]
  replicas: ${N:=3}
  flag: ${F:-false}
  block: |
    constant
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: second
data:
  v: "${B}"
`,
	"comment.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm # named ${A}
data:
  v: "${B}"
`,
	"multiline.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  v: "first line ${A}
    second ${B}"
`,
	"single.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  v: '${A}'
`,
	"block.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  v: |
    ${A}
`,
	"key.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  "k${B}": v
`,
	"plain-inside.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  v: --flag=${A}
`,
	"func.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  v: "${A/a/b}"
`,
	"plain-name.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${B}
`,
}

// edgeValues are values for A, B, N and F: special characters, multi-line
// values, YAML's typed plain scalars, structured values, invalid UTF-8.
var edgeValues = []string{
	"", "x", "plain-name", "with space", " leading", "trailing ", `quote " in`, `back\slash`, "#hash", "a: b", "a #b",
	"line1\nline2\n", "tab\tsep", "cr\r\n", "---", "\n---\napiVersion: v1\nkind: Secret\n", "üñï©ødé", "\u2028\u2029",
	"0", "3", "007", "-5", "1e3", "1_000", "0x1F", "3.0", ".inf", "true", "false", "yes", "on", "null", "~",
	"[1, 2]", `{"a": 1}`, "[a, b]", "{a: b}", "9223372036854775808", "12345678901234567890",
	"\xff\xfe", "del\x7f", "nel\u0085", "bom\ufeff", "\x00nul", "${A}", "$$", "'", "''",
}

// Each template renders the same through Render's dispatch (compiled when
// it can) as through the text path, for every value: the same objects, or
// an error from both.
func TestCompiledEdgeCases(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{}
	var files []string
	for name, text := range edgeTemplates {
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
		files = append(files, name)
	}
	c := edgeCatalog(t, fsys, files)
	for _, name := range []string{"covered.yaml", "comment.yaml"} {
		if c.parsed[name].compiled == nil {
			t.Fatalf("%s: not compiled", name)
		}
	}
	special := unit{file: "covered.yaml", vars: map[string]string{"A": "quote \" back\\ line\n # x: y", "B": "üñï©ødé", "N": "", "F": ""}}
	if !sameAsText(t, c, special) {
		t.Errorf("covered.yaml with %q: not rendered from the compiled template", special.vars)
	}
	for _, name := range []string{"multiline.yaml", "single.yaml", "block.yaml", "key.yaml", "plain-inside.yaml", "func.yaml", "plain-name.yaml"} {
		if c.parsed[name].compiled != nil {
			t.Errorf("%s: compiled, though it uses a form left to the text path", name)
		}
	}
	compiled := 0
	for _, file := range files {
		for _, a := range edgeValues {
			for _, b := range []string{"b", a} {
				for _, n := range []string{"", a} {
					vars := map[string]string{"A": a, "B": b, "N": n, "F": n}
					if sameAsText(t, c, unit{file: file, vars: vars}) {
						compiled++
					}
				}
			}
		}
	}
	if compiled == 0 {
		t.Error("no value took the compiled path")
	}
}

// FuzzCompiledMatchesText: any value of A, B and N renders covered.yaml the
// same both ways.
func FuzzCompiledMatchesText(f *testing.F) {
	for _, v := range edgeValues {
		f.Add(v, "b", "3")
	}
	fsys := fstest.MapFS{"covered.yaml": &fstest.MapFile{Data: []byte(edgeTemplates["covered.yaml"])}}
	c := edgeCatalog(f, fsys, []string{"covered.yaml"})
	f.Fuzz(func(t *testing.T, a, b, n string) {
		sameAsText(t, c, unit{file: "covered.yaml", vars: map[string]string{"A": a, "B": b, "N": n, "F": n}})
	})
}

// edgeCatalog is a catalog of templates whose variables are A, B, N and F,
// loaded without a provider manifest.
func edgeCatalog(t testing.TB, fsys fs.FS, files []string) *Catalog {
	t.Helper()
	c := &Catalog{fsys: fsys, templates: map[string][]byte{}, parsed: map[string]parsedTemplate{}, checked: map[string]bool{}, files: map[string]string{}}
	m := &Manifest{Rendering: Rendering{Templates: files, Values: map[string]string{"A": "", "B": "", "N": "", "F": ""}}}
	if err := c.loadTemplates("test", m); err != nil {
		t.Fatal(err)
	}
	return c
}

// sameAsText renders u both ways and reports whether the compiled path
// rendered it.
func sameAsText(t *testing.T, c *Catalog, u unit) bool {
	t.Helper()
	want, wantErr := c.renderText(u)
	var got []*unstructured.Unstructured
	ok := false
	if ct := c.parsed[u.file].compiled; ct != nil {
		got, ok = ct.render(u.vars, false)
	}
	if !ok {
		return false
	}
	if wantErr != nil {
		t.Errorf("%s with %q: compiled rendered %d objects, the text path failed: %v", u.file, u.vars, len(got), wantErr)
		return true
	}
	sameObjects(t, u.file+" with "+strings.ReplaceAll(strings.Join([]string{u.vars["A"], u.vars["B"], u.vars["N"]}, "|"), "\n", `\n`), got, want)
	return true
}
