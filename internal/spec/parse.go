package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	goyaml "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// maxJSONDepth bounds the nesting of a JSON document.
const maxJSONDepth = 1000

// Parse reads one Capi document, YAML or JSON, strictly.
//
// A malformed document is a *SyntaxError. Otherwise every unknown field and
// every wrongly typed value is reported in one FieldErrors, and the returned
// *Capi, non-nil, holds everything that could be decoded, so a caller can go
// on to Default and Validate and report all problems at once. Parse does not
// default or validate.
func Parse(data []byte) (*Capi, error) {
	return ParseSections(data, nil)
}

// ParseSections is Parse that also accepts the provider sections named in
// sections (spec.<name>, beyond hcloud, hrobot and aws), keeping them in
// ClusterSpec.Extra. Pass the template catalog's sections
// (ValidateOptions.ProviderSections) to read a spec stored after Load.
func ParseSections(data []byte, sections []string) (*Capi, error) {
	doc, err := ParseDocument(data, sections)
	if doc == nil {
		return nil, err
	}
	return doc.Capi, err
}

// ParseDocument is ParseSections that also returns the document's shape,
// the fields it ignored and the mapping of the normalised spec's fields
// to the document's own (Document.Field). A document of ShapeProvider is
// normalised to the same Capi as one of ShapeSections; its errors name
// the fields as the document wrote them. On a *SyntaxError the Document
// is nil; with FieldErrors it holds the best-effort spec.
func ParseDocument(data []byte, sections []string) (*Document, error) {
	parsed, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	root, ok := parsed.(map[string]any)
	if !ok {
		return nil, &SyntaxError{Line: 1, Message: "document must be a mapping of fields" + describe(parsed)}
	}
	var c Capi
	d := decoder{sections: sections}
	d.checkText("", root)
	doc := d.normalise(root)
	errs := d.errs
	d.errs = nil
	d.decodeValue("", root, reflectValueOf(&c))
	errs = append(errs, doc.fieldErrors(d.errs)...)
	doc.Capi = &c
	if len(errs) > 0 {
		errs.sortByField()
		return doc, errs
	}
	return doc, nil
}

// checkText reports every string (and object key) of the document that
// holds a NUL byte or is not valid UTF-8: Postgres refuses to store them
// (SQLSTATE 22P05, 22021), so they are refused here, naming the field.
func (d *decoder) checkText(path string, in any) {
	bad := func(s string) bool { return strings.ContainsRune(s, 0) || !utf8.ValidString(s) }
	switch v := in.(type) {
	case string:
		if bad(v) {
			d.fail(path, "must not contain NUL bytes or invalid UTF-8")
		}
	case map[string]any:
		for k, e := range v {
			if bad(k) {
				d.fail(joinKey(path, k), "field names must not contain NUL bytes or invalid UTF-8")
				continue
			}
			d.checkText(joinKey(path, k), e)
		}
	case []any:
		for i, e := range v {
			d.checkText(fmt.Sprintf("%s[%d]", path, i), e)
		}
	}
}

// CheckJSON returns a *SyntaxError, with line and column, when data is not
// one valid JSON document, and nil when it is. Parse alone is lenient with a
// document that opens with "{" (it may be a YAML flow mapping); a caller
// told the body is JSON checks it with CheckJSON first.
func CheckJSON(data []byte) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(bytes.TrimSpace(data)) == 0 {
		return &SyntaxError{Message: "empty document"}
	}
	_, err := parseJSON(data)
	return err
}

// parseDocument turns a YAML or JSON document into a generic JSON value:
// map[string]any, []any, json.Number, string, bool or nil.
//
// JSON is a subset of YAML in principle but not in every detail (YAML has no
// "\/" escape, for one), so a document that opens with "{" is read as JSON
// first and only read as a YAML flow mapping when it is not valid JSON. JSON
// syntax errors carry a line and a column.
func parseDocument(data []byte) (any, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, &SyntaxError{Message: "empty document"}
	}
	var doc any
	var err error
	if trimmed[0] == '{' {
		doc, err = parseJSON(data)
		var jsonErr *SyntaxError
		if errors.As(err, &jsonErr) && !jsonErr.duplicate() {
			if yamlDoc, yamlErr := parseYAML(data); yamlErr == nil {
				doc, err = yamlDoc, nil
			}
		}
	} else {
		doc, err = parseYAML(data)
	}
	if err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, &SyntaxError{Message: "empty document"}
	}
	return doc, nil
}

func (e *SyntaxError) duplicate() bool { return strings.HasPrefix(e.Message, "duplicate key") }

// parseJSON decodes a JSON document, rejecting duplicate keys and anything
// after the top-level value.
func parseJSON(data []byte) (any, error) {
	var discard struct{}
	if err := json.Unmarshal(data, &discard); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// Offset counts the bytes read, up to and including the offending
			// one; at the end of the input it points just past the last byte.
			offset := int(se.Offset)
			if offset < len(data) || !strings.Contains(se.Error(), "unexpected end") {
				offset--
			}
			line, col := position(data, offset)
			return nil, &SyntaxError{Line: line, Column: col, Message: se.Error()}
		}
		// The document is syntactically valid JSON but not an object; the
		// caller reports what it is.
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return readJSON(dec, data, 0)
}

// readJSON reads the next value from a decoder over data, which is known to
// be valid JSON.
func readJSON(dec *json.Decoder, data []byte, depth int) (any, error) {
	if depth > maxJSONDepth {
		line, col := position(data, int(dec.InputOffset()))
		return nil, &SyntaxError{Line: line, Column: col, Message: fmt.Sprintf("nesting deeper than %d levels", maxJSONDepth)}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonTokenError(data, dec, err)
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return nil, jsonTokenError(data, dec, err)
			}
			key, _ := keyTok.(string) // object keys are strings in valid JSON
			if _, dup := m[key]; dup {
				// The offset is just past the key; the key starts on the same line.
				line, col := position(data, int(dec.InputOffset())-1)
				return nil, &SyntaxError{Line: line, Column: col, Message: fmt.Sprintf("duplicate key %q", key)}
			}
			v, err := readJSON(dec, data, depth+1)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, jsonTokenError(data, dec, err)
		}
		return m, nil
	case json.Delim('['):
		items := []any{}
		for dec.More() {
			v, err := readJSON(dec, data, depth+1)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, jsonTokenError(data, dec, err)
		}
		return items, nil
	default:
		return tok, nil
	}
}

func jsonTokenError(data []byte, dec *json.Decoder, err error) error {
	line, col := position(data, int(dec.InputOffset()))
	msg := err.Error()
	if errors.Is(err, io.EOF) {
		msg = "unexpected end of JSON input"
	}
	return &SyntaxError{Line: line, Column: col, Message: msg}
}

// position converts a byte offset in data to a 1-based line and column, the
// column counted in characters.
func position(data []byte, offset int) (line, column int) {
	offset = max(0, min(offset, len(data)))
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCount(before[lineStart:])
}

// parseYAML converts one YAML document to a generic JSON value. Duplicate
// keys and further non-empty documents are errors.
func parseYAML(data []byte) (any, error) {
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, yamlError(err)
	}
	if err := singleYAMLDocument(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(jsonData))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, &SyntaxError{Message: err.Error()}
	}
	return doc, nil
}

// singleYAMLDocument fails when data holds more than one document. Empty
// documents, such as one left by a trailing "---", do not count.
func singleYAMLDocument(data []byte) error {
	dec := goyaml.NewDecoder(bytes.NewReader(data))
	for n := 0; ; n++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return yamlError(err)
		}
		if n > 0 && doc != nil {
			return &SyntaxError{Line: documentStartLine(data, n), Message: "more than one YAML document; a spec is a single document"}
		}
	}
}

// documentStartLine returns the line of the "---" that starts document n
// (0-based), or 0 when it cannot tell.
func documentStartLine(data []byte, n int) int {
	seen := 0
	content := false
	for i, line := range strings.Split(string(data), "\n") {
		if line == "---" || strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "---\t") || line == "---\r" {
			if content {
				seen++
				if seen == n {
					return i + 1
				}
			}
			content = true // a leading "---" starts the first document
			continue
		}
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "%") {
			content = true
		}
	}
	return 0
}

var yamlLine = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: `)

// yamlError turns a YAML parser error into a SyntaxError, taking the line
// (and column, when given) from the message, such as
// "yaml: line 3: mapping values are not allowed in this context".
func yamlError(err error) *SyntaxError {
	msg := strings.TrimSpace(strings.TrimPrefix(err.Error(), "yaml: "))
	msg = strings.TrimPrefix(msg, "unmarshal errors:")
	se := &SyntaxError{}
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		se.Line, _ = strconv.Atoi(msg[m[2]:m[3]])
		if m[4] >= 0 {
			se.Column, _ = strconv.Atoi(msg[m[4]:m[5]])
		}
		msg = msg[:m[0]] + msg[m[1]:]
	}
	var parts []string
	for _, p := range strings.Split(msg, "\n") {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	se.Message = strings.Join(parts, "; ")
	if se.Message == "" {
		se.Message = "invalid YAML"
	}
	return se
}
