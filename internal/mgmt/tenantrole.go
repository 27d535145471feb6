package mgmt

import (
	"context"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TenantRoleBinding names the RoleBinding that grants the service the
// tenant role in a tenant namespace.
const TenantRoleBinding = "lok8s-tenant"

// tenantRoleGrace bounds the wait for a new binding to take effect: the
// apiserver's authorizer learns of it from its own watch.
const tenantRoleGrace = 10 * time.Second

// bindTenantRole binds c.tenantRole to the service's own identity in
// namespace, once per namespace and process, and waits until the
// apiserver lets it read Secrets there. Deployed with the Helm chart, the
// service holds no cluster-wide Secret permission: this binding is how it
// may keep credentials in, and read CAPI's kubeconfigs from, a tenant's
// namespace and no other (docs/deploy.md).
func (c *Cluster) bindTenantRole(ctx context.Context, namespace string) error {
	if c.tenantRole == "" {
		return nil
	}
	if _, done := c.boundNamespaces.Load(namespace); done {
		return nil
	}
	subject, err := c.self(ctx)
	if err != nil {
		return err
	}
	rb := &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: TenantRoleBinding, Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: c.tenantRole},
		Subjects:   []rbacv1.Subject{subject},
	}
	//nolint:staticcheck // client.Apply is the server-side apply path used throughout this package.
	if err := c.client.Patch(ctx, rb, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("bind role %s in namespace %s: %w", c.tenantRole, namespace, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, tenantRoleGrace, true, func(ctx context.Context) (bool, error) {
		return c.may(ctx, namespace, "get", "secrets")
	})
	if err != nil {
		return fmt.Errorf("role %s bound in namespace %s, but Secrets there are still not readable: %w", c.tenantRole, namespace, err)
	}
	c.boundNamespaces.Store(namespace, struct{}{})
	return nil
}

// self is the subject the service authenticates as, from a
// SelfSubjectReview (allowed to every authenticated identity).
func (c *Cluster) self(ctx context.Context) (rbacv1.Subject, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.client.Create(ctx, review); err != nil {
		return rbacv1.Subject{}, fmt.Errorf("who am I on management cluster %q: %w", c.Domain, err)
	}
	user := review.Status.UserInfo.Username
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}, nil
		}
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}, nil
}

// may asks the apiserver whether the service may do verb on resource in namespace.
func (c *Cluster) may(ctx context.Context, namespace, verb, resource string) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource},
	}}
	if err := c.client.Create(ctx, review); err != nil {
		return false, fmt.Errorf("may I %s %s in %s: %w", verb, resource, namespace, err)
	}
	return review.Status.Allowed, nil
}
