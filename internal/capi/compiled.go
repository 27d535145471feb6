package capi

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/drone/envsubst/v2/parse"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// A compiled template is a template decoded once, when the catalog loads,
// into its objects with each variable reference marked where it lands, so
// that rendering copies the objects and puts the values in, instead of
// substituting text and decoding YAML again (most of a cluster's render
// time went to decoding the Hetzner node-setup script, about 7 KB, in every
// kubeadm config).
//
// It gives the objects the text path (renderText: substitute the escaped
// values, decode) gives, for the forms it covers; for any other it is not
// built, or a render falls back to the text path, so the result is always
// the text path's:
//
//   - a reference is ${VAR} or ${VAR<op>default} with a literal default
//     (op one of envsubst's default operators: =, :=, :-, -, +, :?, :+);
//   - it sits in a double-quoted scalar that begins and ends on its line
//     (any text around it), or is a whole plain scalar (replicas: ${N}),
//     or is in a comment; never in a key;
//   - at render, a value in a double-quoted scalar has only characters
//     YAML reads back as written once escaped (valid UTF-8, no C1 control,
//     DEL or byte-order mark); a value as a plain scalar is a single token
//     (a number, a boolean, a name: -?[A-Za-z0-9][A-Za-z0-9_.+-]*), typed
//     as YAML would type it; and the object still has apiVersion, kind and
//     metadata.name.
//
// TestCompiledMatchesText holds the two paths to the same objects.
type compiledTemplate struct {
	refs []compiledRef
	docs []cnode // one per object, in order
}

// compiledRef is one ${...} of a template.
type compiledRef struct {
	name   string
	def    *string // the default's text, nil for none
	quoted bool    // in a double-quoted scalar or a comment; else a whole plain scalar
}

// cnode is a node of a compiled object: cmap, clist, cstring, cplain, or a
// constant JSON value (copied at each render).
type cnode any

type cmap struct {
	keys []string
	vals []cnode
}

type clist []cnode

// cstring is a double-quoted scalar with references: text[0] ref[0]
// text[1] ... ref[n-1] text[n].
type cstring struct {
	text []string
	refs []int
}

// cplain is a plain scalar that is exactly one reference.
type cplain int

// The probe text that marks reference i: the \x5f escapes read as "_" in a
// double-quoted scalar and stay as written in any other, which tells the
// two apart.
const probePrefix = "Lok8sRef"

var probeFound = regexp.MustCompile(probePrefix + `(_|\\x5f)([0-9]+)(_|\\x5f)`)

func probeText(i int) string { return probePrefix + `\x5f` + strconv.Itoa(i) + `\x5f` }

// compileTemplate compiles data, whose substitution template tree is t;
// nil when the template uses a form the compiled path does not cover.
func compileTemplate(data []byte, t *parse.Tree) *compiledTemplate {
	if bytes.Contains(data, []byte(probePrefix)) {
		return nil
	}
	var parts []parse.Node
	if !flatten(t.Root, &parts) {
		return nil
	}
	ct := &compiledTemplate{}
	var probe, zero strings.Builder
	var offsets []int // of each reference's probe text
	for _, n := range parts {
		switch n := n.(type) {
		case *parse.TextNode:
			probe.WriteString(n.Value)
			zero.WriteString(n.Value)
		case *parse.FuncNode:
			ref, ok := compileRef(n)
			if !ok {
				return nil
			}
			offsets = append(offsets, probe.Len())
			probe.WriteString(probeText(len(ct.refs)))
			zero.WriteString("0")
			ct.refs = append(ct.refs, ref)
		}
	}
	if len(ct.refs) == 0 {
		return nil // nothing to gain
	}
	// The probe decodes as the template does with values that YAML reads
	// as strings (quoted) or as the number 0 (plain): the same objects,
	// keys and lists.
	objs, err := decodeObjects([]byte(probe.String()))
	if err != nil {
		return nil
	}
	zeros, err := decodeObjects([]byte(zero.String()))
	if err != nil || len(zeros) != len(objs) {
		return nil
	}
	c := compiler{refs: ct.refs, placed: make([]bool, len(ct.refs))}
	for i, o := range objs {
		n, ok := c.node(o.Object, zeros[i].Object)
		if !ok {
			return nil
		}
		ct.docs = append(ct.docs, n)
	}
	text := probe.String()
	for i, placed := range c.placed {
		if placed {
			r := ct.refs[i]
			if r.quoted && !onOneLine(text, offsets[i], len(probeText(i))) {
				return nil // a multi-line scalar folds the spaces around a value
			}
			if r.quoted && r.def != nil && strings.ContainsAny(*r.def, `"\`) {
				return nil // a default is not escaped: YAML reads its escapes
			}
			continue
		}
		if !inComment(text, offsets[i]) {
			return nil
		}
		// A value in a comment changes no object, but YAML still reads
		// its characters (a NEL breaks the line): checked as a quoted one.
		ct.refs[i].quoted = true
	}
	return ct
}

// flatten lists the root's text and reference nodes in order.
func flatten(n parse.Node, out *[]parse.Node) bool {
	switch n := n.(type) {
	case *parse.ListNode:
		for _, m := range n.Nodes {
			if !flatten(m, out) {
				return false
			}
		}
	case *parse.TextNode, *parse.FuncNode:
		*out = append(*out, n)
	default:
		return false
	}
	return true
}

// compileRef takes a reference of the forms covered: envsubst gives each
// of these operators its default function (toDefault: the arguments
// joined, when the value is empty).
func compileRef(n *parse.FuncNode) (compiledRef, bool) {
	switch n.Name {
	case "", "=", ":=", ":-", "-", "+", ":?", ":+":
	default:
		return compiledRef{}, false
	}
	ref := compiledRef{name: n.Param}
	if len(n.Args) > 0 {
		var def strings.Builder
		for _, a := range n.Args {
			t, ok := a.(*parse.TextNode)
			if !ok {
				return compiledRef{}, false
			}
			def.WriteString(t.Value)
		}
		s := def.String()
		if strings.ContainsAny(s, "\n\r") {
			return compiledRef{}, false
		}
		ref.def = &s
	}
	return ref, true
}

type compiler struct {
	refs   []compiledRef
	placed []bool
}

// node compiles v, the probe's value, with z, the same value decoded with
// every reference 0.
func (c *compiler) node(v, z any) (cnode, bool) {
	switch v := v.(type) {
	case map[string]any:
		zm, ok := z.(map[string]any)
		if !ok || len(zm) != len(v) {
			return nil, false
		}
		m := &cmap{}
		live := false
		for k, val := range v {
			if probeFound.MatchString(k) {
				return nil, false // a reference in a key
			}
			zv, ok := zm[k]
			if !ok {
				return nil, false
			}
			n, ok := c.node(val, zv)
			if !ok {
				return nil, false
			}
			if !isConst(n) {
				live = true
			}
			m.keys = append(m.keys, k)
			m.vals = append(m.vals, n)
		}
		if !live {
			return constant{v}, true
		}
		return m, true
	case []any:
		zl, ok := z.([]any)
		if !ok || len(zl) != len(v) {
			return nil, false
		}
		l := make(clist, len(v))
		live := false
		for i := range v {
			n, ok := c.node(v[i], zl[i])
			if !ok {
				return nil, false
			}
			live = live || !isConst(n)
			l[i] = n
		}
		if !live {
			return constant{v}, true
		}
		return l, true
	case string:
		found := probeFound.FindAllStringSubmatchIndex(v, -1)
		if len(found) == 0 {
			return constant{v}, true
		}
		var s cstring
		last := 0
		for _, f := range found {
			i, err := strconv.Atoi(v[f[4]:f[5]])
			if err != nil || i >= len(c.refs) {
				return nil, false
			}
			quoted := v[f[2]:f[3]] == "_"
			if quoted != (v[f[6]:f[7]] == "_") {
				return nil, false
			}
			if !quoted {
				// A plain scalar: the whole of it, and one that
				// YAML typed (the zero probe reads 0 as a number).
				if len(found) != 1 || f[0] != 0 || f[1] != len(v) || z != int64(0) {
					return nil, false
				}
				if c.placed[i] && c.refs[i].quoted {
					return nil, false
				}
				c.placed[i] = true
				return cplain(i), true
			}
			if c.placed[i] && !c.refs[i].quoted {
				return nil, false
			}
			c.refs[i].quoted = true
			c.placed[i] = true
			s.text = append(s.text, v[last:f[0]])
			s.refs = append(s.refs, i)
			last = f[1]
		}
		s.text = append(s.text, v[last:])
		return &s, true
	default:
		return constant{v}, true
	}
}

// constant is a value without references.
type constant struct{ v any }

func isConst(n cnode) bool { _, ok := n.(constant); return ok }

// onOneLine reports whether the double-quoted scalar around text[at:at+n]
// opens and closes on that line.
func onOneLine(text string, at, n int) bool {
	start := strings.LastIndexByte(text[:at], '\n') + 1
	end := len(text)
	if i := strings.IndexByte(text[at+n:], '\n'); i >= 0 {
		end = at + n + i
	}
	return unescapedQuote(text[start:at]) && unescapedQuote(text[at+n:end])
}

// unescapedQuote reports whether s has a " not escaped by a backslash.
func unescapedQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return true
		}
	}
	return false
}

// inComment reports whether the text at offset follows a # that starts a
// comment on its line (at its start or after a blank, no quote before it).
func inComment(text string, at int) bool {
	line := text[strings.LastIndexByte(text[:at], '\n')+1 : at]
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '"', '\'':
			return false
		case '#':
			if i == 0 || line[i-1] == ' ' || line[i-1] == '\t' {
				return true
			}
		}
	}
	return false
}

// render builds the template's objects with vars, as renderText would
// decode them; ok is false when a value is outside what the compiled path
// covers (the caller then renders the text). With shared, the objects'
// constant parts are the compiled template's own: only for objects that
// are read and dropped (patches), never changed.
func (ct *compiledTemplate) render(vars map[string]string, shared bool) (objs []*unstructured.Unstructured, ok bool) {
	vals := make([]any, len(ct.refs))
	for i, r := range ct.refs {
		v := vars[r.name]
		if v == "" && r.def != nil {
			v = *r.def
		}
		if r.quoted {
			if !readsBack(v) {
				return nil, false
			}
			vals[i] = v
			continue
		}
		val, ok := plainValue(v)
		if !ok {
			return nil, false
		}
		vals[i] = val
	}
	objs = make([]*unstructured.Unstructured, len(ct.docs))
	for i, d := range ct.docs {
		m, _ := build(d, vals, shared).(map[string]any)
		if !hasHead(m) {
			return nil, false
		}
		objs[i] = &unstructured.Unstructured{Object: m}
	}
	return objs, true
}

func build(n cnode, vals []any, shared bool) any {
	switch n := n.(type) {
	case constant:
		if shared {
			return n.v
		}
		return runtime.DeepCopyJSONValue(n.v)
	case *cmap:
		m := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			m[k] = build(n.vals[i], vals, shared)
		}
		return m
	case clist:
		l := make([]any, len(n))
		for i := range n {
			l[i] = build(n[i], vals, shared)
		}
		return l
	case *cstring:
		if len(n.refs) == 1 && n.text[0] == "" && n.text[1] == "" {
			return vals[n.refs[0]]
		}
		var b strings.Builder
		for i, r := range n.refs {
			b.WriteString(n.text[i])
			b.WriteString(vals[r].(string))
		}
		b.WriteString(n.text[len(n.refs)])
		return b.String()
	case cplain:
		return vals[n] // a scalar
	}
	panic("capi: unknown compiled node") // unreachable: compileTemplate builds only the kinds above
}

// readsBack reports whether a value, escaped (escapeValue) inside a
// double-quoted YAML scalar, reads back as itself: JSON escapes every
// control character below 0x20, and YAML refuses the others.
func readsBack(v string) bool {
	for i := 0; i < len(v); {
		if b := v[i]; b < utf8.RuneSelf {
			if b == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return false // invalid UTF-8: JSON would replace it
		case r == 0x7f, r >= 0x80 && r <= 0x9f, r == 0xfeff, r == 0xfffe, r == 0xffff:
			return false
		}
		i += size
	}
	return true
}

// plainToken is a plain scalar YAML reads the same in any position.
var plainToken = regexp.MustCompile(`^-?[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// plainValue is a token as YAML (go.yaml.in/yaml/v2, through JSON) types
// it as a plain scalar.
func plainValue(v string) (any, bool) {
	switch {
	case v == "true":
		return true, true
	case v == "false":
		return false, true
	case len(v) < 19 && v != "" && (v[0] != '0' || len(v) == 1) && strings.Trim(v, "0123456789") == "":
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	case !plainToken.MatchString(v):
		return nil, false
	}
	data, err := yaml.YAMLToJSONStrict([]byte("v: " + v))
	if err != nil {
		return nil, false
	}
	var m map[string]any
	if err := utiljson.Unmarshal(data, &m); err != nil {
		return nil, false
	}
	val, ok := m["v"]
	return val, ok
}

// hasHead reports whether an object has what decodeObjects requires.
func hasHead(m map[string]any) bool {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	meta, _ := m["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	return apiVersion != "" && kind != "" && name != ""
}
