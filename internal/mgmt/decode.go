package mgmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// DecodeObjects splits a multi-document YAML (or JSON) manifest into
// objects, skipping empty documents; each must name its apiVersion and kind.
func DecodeObjects(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for i := 1; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) || bytes.Equal(t, []byte("{}")) {
			continue
		}
		// Unstructured's own JSON decoding keeps integers as int64.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", i, err)
		}
		objs = append(objs, obj)
	}
}

// Redacted replaces every value of a redacted Secret's data.
const Redacted = "[redacted]"

// RedactSecrets re-encodes manifests with the values of every Secret's
// data and stringData replaced by Redacted (the keys stay, so a reader sees
// what is set).
func RedactSecrets(manifests []byte) ([]byte, error) {
	objs, err := DecodeObjects(manifests)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, obj := range objs {
		if obj.GetAPIVersion() == "v1" && obj.GetKind() == "Secret" {
			for _, field := range []string{"data", "stringData"} {
				m, found, _ := unstructured.NestedMap(obj.Object, field)
				if !found {
					continue
				}
				for k := range m {
					m[k] = Redacted
				}
				_ = unstructured.SetNestedMap(obj.Object, m, field)
			}
		}
		doc, err := sigsyaml.Marshal(obj.Object)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		out.WriteString("---\n")
		out.Write(doc)
	}
	return out.Bytes(), nil
}
