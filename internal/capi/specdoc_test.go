package capi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"lok8s.dev/provisioner/internal/spec"
)

// TestSpecDocumentKept: a spec's document is decoded once and kept, and a
// caller that changes its copy changes neither the kept document nor the
// next caller's; a changed spec gets a document of its own.
func TestSpecDocumentKept(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "specs", "hcloud.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s spec.Capi
	if err := yaml.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Metadata.Name = "kept-" + t.Name()
	first, err := specDocument(&s)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := specDocs.get(mustJSON(t, &s)); !ok {
		t.Fatal("the document was not kept")
	}
	want := copyValue(first).(map[string]any)
	// Both the caller that decoded it and one that found it kept.
	for i := range 2 {
		got, err := specDocument(&s)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			got = first
		}
		got["spec"].(map[string]any)["hcloud"] = "changed by a caller"
		got["metadata"] = nil
		next, err := specDocument(&s)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(next, want) {
			t.Fatalf("a caller's change reached the next caller:\n got %v\nwant %v", next, want)
		}
	}
	s.Metadata.Name = "other-" + t.Name()
	third, err := specDocument(&s)
	if err != nil {
		t.Fatal(err)
	}
	if got := third["metadata"].(map[string]any)["name"]; got != s.Metadata.Name {
		t.Errorf("changed spec: metadata.name %v, want %s", got, s.Metadata.Name)
	}
}

func mustJSON(t *testing.T, s *spec.Capi) []byte {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
