package capi

import (
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// applyPatch merges patch into the object of objs it names: the same
// apiVersion group, kind and metadata.name. The patch's apiVersion, kind,
// metadata.name and metadata.namespace identify the target and are not
// merged. It only reads patch, and keeps none of it: the objects get
// copies (Render passes patches that share parts with the compiled
// templates).
func applyPatch(objs []*unstructured.Unstructured, patch *unstructured.Unstructured) error {
	gk := patch.GroupVersionKind().GroupKind()
	for _, o := range objs {
		if o.GroupVersionKind().GroupKind() != gk || o.GetName() != patch.GetName() {
			continue
		}
		// mergePatch copies what it takes: clone only the maps whose
		// keys are dropped, so that patch stays as it is.
		body := maps.Clone(patch.Object)
		delete(body, "apiVersion")
		delete(body, "kind")
		if meta, ok := body["metadata"].(map[string]any); ok {
			meta = maps.Clone(meta)
			delete(meta, "name")
			delete(meta, "namespace")
			body["metadata"] = meta
		}
		mergePatch(o.Object, body)
		return nil
	}
	return fmt.Errorf("%s %q is not rendered: a patch changes an object a template renders", gk.String(), patch.GetName())
}

// mergePatch merges src into dst, as a strategic merge patch does with
// "name" as the merge key of every list:
//
//   - maps merge key by key, recursively;
//   - a list of objects that all have a string "name", patched by a
//     non-empty list of such objects, merges by name: an item of the same
//     name is merged, a new name is appended (in the patch's order);
//   - any other value (scalars, other lists, an empty list) replaces;
//   - null removes the key.
//
// dst is changed; src is not (what is stored in dst is copied).
func mergePatch(dst, src map[string]any) {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		switch s := sv.(type) {
		case map[string]any:
			if d, ok := dst[k].(map[string]any); ok {
				mergePatch(d, s)
				continue
			}
		case []any:
			if d, ok := dst[k].([]any); ok && len(s) > 0 && namedItems(d) && namedItems(s) {
				dst[k] = mergeNamed(d, s)
				continue
			}
		}
		dst[k] = copyValue(sv)
	}
}

// namedItems reports whether every item is an object with a string name.
func namedItems(items []any) bool {
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

func mergeNamed(dst, src []any) []any {
	out := dst
	for _, it := range src {
		item := it.(map[string]any)
		merged := false
		for _, d := range out {
			if dm := d.(map[string]any); dm["name"] == item["name"] {
				mergePatch(dm, item)
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, copyValue(item))
		}
	}
	return out
}

func copyValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = copyValue(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = copyValue(e)
		}
		return out
	default:
		return v
	}
}
