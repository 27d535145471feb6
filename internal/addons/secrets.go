package addons

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrCredentials: a Secret needs credential fields the cluster's credential
// does not have. The error names fields, never values.
var ErrCredentials = errors.New("credentials")

// ManagedByLabel marks the Secrets this package creates.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// Secrets builds the Secrets r needs in the workload cluster from the
// cluster's credential fields (e.g. hcloudToken) and vars. Every missing
// field or variable is reported in one error, by name only: values never
// appear in errors.
func (r Resolved) Secrets(credentials, vars map[string]string) ([]*corev1.Secret, error) {
	var missingFields, missingVars []string
	var out []*corev1.Secret
	for _, s := range r.SecretSpecs {
		sec := &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: map[string]string{ManagedByLabel: "lok8s"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{},
		}
		for _, k := range sortedKeys(s.Data) {
			d := s.Data[k]
			var v string
			var ok bool
			if d.Credential != "" {
				if v, ok = credentials[d.Credential]; !ok || v == "" {
					if !d.Optional {
						missingFields = append(missingFields, d.Credential)
					}
					continue
				}
			} else if v, ok = vars[d.Variable]; !ok {
				missingVars = append(missingVars, d.Variable)
				continue
			}
			sec.Data[k] = []byte(v)
		}
		out = append(out, sec)
	}
	var errs []error
	if len(missingFields) > 0 {
		slices.Sort(missingFields)
		errs = append(errs, fmt.Errorf("%w: missing credential fields %s", ErrCredentials, strings.Join(slices.Compact(missingFields), ", ")))
	}
	if len(missingVars) > 0 {
		slices.Sort(missingVars)
		errs = append(errs, fmt.Errorf("%w: %s", ErrMissingVariables, strings.Join(slices.Compact(missingVars), ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("addons: %s secrets on %s: %w", r.Name, r.Provider, err)
	}
	return out, nil
}
