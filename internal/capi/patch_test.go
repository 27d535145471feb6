package capi

import (
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// mergePatch follows strategic merge patch with "name" as every list's
// merge key (k8s.io/apimachinery/pkg/util/strategicpatch: maps merge, lists
// with a merge key merge by it, other lists are replaced, null deletes).
func TestMergePatch(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ dst, patch, want string }{
		"maps merge key by key": {
			dst:   `{spec: {a: 1, nested: {b: 2, c: 3}}}`,
			patch: `{spec: {nested: {c: 30, d: 4}, e: 5}}`,
			want:  `{spec: {a: 1, nested: {b: 2, c: 30, d: 4}, e: 5}}`,
		},
		"named lists merge by name, new names appended in order": {
			dst:   `{args: [{name: a, value: "1"}, {name: b, value: "2"}]}`,
			patch: `{args: [{name: c, value: "3"}, {name: a, value: "10", extra: x}, {name: d}]}`,
			want:  `{args: [{name: a, value: "10", extra: x}, {name: b, value: "2"}, {name: c, value: "3"}, {name: d}]}`,
		},
		"a named list merges into an absent or empty one": {
			dst:   `{a: [], spec: {}}`,
			patch: `{a: [{name: x}], spec: {groups: [{name: y}]}}`,
			want:  `{a: [{name: x}], spec: {groups: [{name: y}]}}`,
		},
		"lists without names replace": {
			dst:   `{cmds: [one, two], files: [{path: /a}]}`,
			patch: `{cmds: [three], files: [{path: /b}]}`,
			want:  `{cmds: [three], files: [{path: /b}]}`,
		},
		"an empty list replaces": {
			dst:   `{groups: [{name: a}]}`,
			patch: `{groups: []}`,
			want:  `{groups: []}`,
		},
		"null removes": {
			dst:   `{spec: {a: 1, b: 2}, c: 3}`,
			patch: `{spec: {a: null}, c: null}`,
			want:  `{spec: {b: 2}}`,
		},
		"scalars and types replace": {
			dst:   `{a: 1, b: {x: 1}, c: [1]}`,
			patch: `{a: two, b: [1], c: {x: 1}}`,
			want:  `{a: two, b: [1], c: {x: 1}}`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var dst, patch, want map[string]any
			for _, p := range []struct {
				s   string
				out *map[string]any
			}{{tc.dst, &dst}, {tc.patch, &patch}, {tc.want, &want}} {
				if err := yaml.Unmarshal([]byte(p.s), p.out); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := yaml.Marshal(patch)
			mergePatch(dst, patch)
			if !reflect.DeepEqual(dst, want) {
				got, _ := yaml.Marshal(dst)
				t.Errorf("merged:\n%s\nwant:\n%s", got, tc.want)
			}
			if after, _ := yaml.Marshal(patch); string(after) != string(before) {
				t.Errorf("the patch changed: %s", after)
			}
		})
	}
}
