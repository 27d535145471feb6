package addons

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/cluster-api/cmd/clusterctl/client/yamlprocessor"
	"sigs.k8s.io/yaml"
)

// ErrMissingVariables: catalogue values or Secrets use variables that were
// not supplied and have no default. The error lists every one.
var ErrMissingVariables = errors.New("missing variables")

// Variables the pipeline supplies to the catalogue's values and Secrets.
// Others may be used; a variable not supplied needs a default
// (${NAME:=default}).
const (
	VarClusterName   = "CLUSTER_NAME"
	VarAPIServerHost = "API_SERVER_HOST" // the workload API server, from its kubeconfig
	VarAPIServerPort = "API_SERVER_PORT"
	VarHCloudNetwork = "HCLOUD_NETWORK" // the cluster's hcloud network (name or id)
	VarPodCIDR       = "POD_CIDR"
)

// Layers are one add-on's values, lowest precedence first.
type Layers struct {
	// Addon: the catalogue entry's values.
	Addon map[string]any
	// Provider: the catalogue entry's values for the cluster's provider.
	Provider map[string]any
	// Operator: the server's override file for the add-on (LoadOverrides).
	Operator map[string]any
	// Cluster: the cluster spec's spec.bootstrap[].values.
	Cluster map[string]any
}

// Layers returns r's catalogue layers with the operator's and the
// cluster's values on top.
func (r Resolved) Layers(operator, cluster map[string]any) Layers {
	return Layers{Addon: r.AddonValues, Provider: r.ProviderValues, Operator: operator, Cluster: cluster}
}

// Values merges the layers, each over the one below: maps merge key by key
// recursively, any other value (lists included) replaces, and a null
// removes the key from the layers below. The Addon and Provider layers are
// rendered first with vars (clusterctl syntax, ${NAME} and
// ${NAME:=default}); every variable that is missing comes back in one
// ErrMissingVariables error. Operator and Cluster values are literal. No
// argument is modified.
func Values(l Layers, vars map[string]string) (map[string]any, error) {
	var missing []string
	addon, err := renderValues(l.Addon, vars, &missing)
	if err != nil {
		return nil, fmt.Errorf("addons: addon values: %w", err)
	}
	provider, err := renderValues(l.Provider, vars, &missing)
	if err != nil {
		return nil, fmt.Errorf("addons: provider values: %w", err)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("addons: %w: %s", ErrMissingVariables, strings.Join(slices.Compact(missing), ", "))
	}
	out := map[string]any{}
	for _, layer := range []map[string]any{addon, provider, l.Operator, l.Cluster} {
		out = Merge(out, layer)
	}
	return out, nil
}

// Merge returns base with over merged onto it (see Values); neither
// argument is modified.
func Merge(base, over map[string]any) map[string]any {
	out := deepCopyMap(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range over {
		if v == nil {
			delete(out, k)
			continue
		}
		vm, vIsMap := v.(map[string]any)
		bm, bIsMap := out[k].(map[string]any)
		if vIsMap && bIsMap {
			out[k] = Merge(bm, vm)
			continue
		}
		out[k] = deepCopy(v)
	}
	return out
}

// exactRef is a string that is one variable reference and nothing else.
var exactRef = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-=][^}]*)?\}$`)

// renderValues substitutes vars in every string of m (keys are left
// alone), recording missing variables. A string that is exactly one
// reference takes the value's YAML type ("6443" becomes a number, "true" a
// boolean), as an unquoted reference in a clusterctl template would; any
// other string stays a string.
func renderValues(m map[string]any, vars map[string]string, missing *[]string) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	proc := yamlprocessor.NewSimpleProcessor()
	lookup := func(name string) (string, error) {
		if v, ok := vars[name]; ok {
			return v, nil
		}
		return "", fmt.Errorf("%s not set", name)
	}
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch t := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(t))
			for k, e := range t {
				r, err := walk(e)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				out[k] = r
			}
			return out, nil
		case []any:
			out := make([]any, len(t))
			for i, e := range t {
				r, err := walk(e)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				out[i] = r
			}
			return out, nil
		case string:
			if !strings.Contains(t, "$") {
				return t, nil
			}
			refs, err := proc.GetVariableMap([]byte(t))
			if err != nil {
				return nil, fmt.Errorf("variable syntax in %q: %w", t, err)
			}
			short := false
			for name, def := range refs {
				if _, ok := vars[name]; !ok && def == nil {
					*missing = append(*missing, name)
					short = true
				}
			}
			if short {
				return t, nil
			}
			out, err := proc.Process([]byte(t), lookup)
			if err != nil {
				return nil, err
			}
			if exactRef.MatchString(t) {
				var typed any
				if yaml.Unmarshal(out, &typed) == nil {
					switch typed.(type) {
					case bool, float64, int64, int:
						return typed, nil
					}
				}
			}
			return string(out), nil
		default:
			return deepCopy(v), nil
		}
	}
	out, err := walk(m)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

// LoadOverrides reads the operator's overrides for addon, <addon>.yaml at
// the root of fsys (the server's override directory). A missing file is no
// overrides; a file that is not a YAML mapping is an error naming it.
func LoadOverrides(fsys fs.FS, addon string) (map[string]any, error) {
	if fsys == nil {
		return nil, nil
	}
	file := addon + ".yaml"
	data, err := fs.ReadFile(fsys, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("addons: operator overrides: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("addons: operator overrides %s: must be a YAML mapping: %w", file, err)
	}
	return m, nil
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return deepCopy(m).(map[string]any)
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopy(e)
		}
		return out
	default:
		return v
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
