package spec

import (
	"fmt"
	"slices"
	"strings"
)

// SyntaxError is a document that is not well-formed YAML or JSON. Line and
// Column are 1-based, and 0 when the parser did not say.
type SyntaxError struct {
	Line    int
	Column  int
	Message string
}

func (e *SyntaxError) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("syntax error at line %d, column %d: %s", e.Line, e.Column, e.Message)
	case e.Line > 0:
		return fmt.Sprintf("syntax error at line %d: %s", e.Line, e.Message)
	default:
		return "syntax error: " + e.Message
	}
}

// FieldError is one problem with one field, named by its path in the
// document, such as spec.hcloud.workers.gpu.replicas or spec.bootstrap[1].name.
type FieldError struct {
	Field   string
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// FieldErrors is every field problem found in a document.
type FieldErrors []FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// sortByField orders the errors by field, keeping the order of errors on the
// same field.
func (e FieldErrors) sortByField() {
	slices.SortStableFunc(e, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
}

// within reports whether field is path or lies below it.
func within(field, path string) bool {
	if !strings.HasPrefix(field, path) {
		return false
	}
	rest := field[len(path):]
	return rest == "" || path == "" || rest[0] == '.' || rest[0] == '['
}
