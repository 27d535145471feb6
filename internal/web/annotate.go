package web

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"lok8s.dev/provisioner/internal/service"
)

// specLine is a line of a submitted spec, with the errors about the field
// on it.
type specLine struct {
	Number int
	Text   string
	Errors []service.FieldError
}

// annotateSpec puts each field error beside the line of the field it names
// (spec.hcloud.workers.gpu.replicas is on the line of that replicas key; a
// missing field's error goes on the line of its nearest parent present).
// A syntax error goes on its line. Errors it cannot place are returned.
func annotateSpec(doc string, p *service.Problem) ([]specLine, []service.FieldError) {
	text := strings.Split(strings.TrimRight(doc, "\n"), "\n")
	lines := make([]specLine, len(text))
	for i, t := range text {
		lines[i] = specLine{Number: i + 1, Text: t}
	}
	var rest []service.FieldError
	place := func(line int, e service.FieldError) {
		if line < 1 || line > len(lines) {
			rest = append(rest, e)
			return
		}
		lines[line-1].Errors = append(lines[line-1].Errors, e)
	}
	if p.Line > 0 && len(p.Errors) == 0 {
		place(p.Line, service.FieldError{Field: "line " + strconv.Itoa(p.Line), Message: p.Detail})
		return lines, rest
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil || len(root.Content) == 0 {
		return lines, p.Errors
	}
	for _, e := range p.Errors {
		place(lineOf(root.Content[0], e.Field), e)
	}
	return lines, rest
}

// lineOf is the line of the deepest node of path present in n (a mapping
// key's line for a key), or 0 when not even the path's first element is.
func lineOf(n *yaml.Node, path string) int {
	line := 0
	for _, el := range pathElements(path) {
		next, at := child(n, el)
		if next == nil {
			break
		}
		n, line = next, at
	}
	return line
}

// pathElements splits spec.bootstrap[1].name into spec, bootstrap, [1], name.
func pathElements(path string) []string {
	var out []string
	for _, part := range strings.Split(path, ".") {
		for {
			i := strings.Index(part, "[")
			if i < 0 {
				break
			}
			if i > 0 {
				out = append(out, part[:i])
			}
			j := strings.Index(part[i:], "]")
			if j < 0 {
				break
			}
			out = append(out, part[i:i+j+1])
			part = part[i+j+1:]
		}
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}

// child finds a path element in n: a key of a mapping ("name") or an index
// of a sequence ("[1]"), with the line it is written on.
func child(n *yaml.Node, el string) (*yaml.Node, int) {
	switch {
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == el {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case n.Kind == yaml.SequenceNode && strings.HasPrefix(el, "["):
		i, err := strconv.Atoi(strings.Trim(el, "[]"))
		if err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], n.Content[i].Line
		}
	}
	return nil, 0
}
