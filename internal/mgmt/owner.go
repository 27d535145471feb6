package mgmt

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelTenant names the tenant that owns an object the service created.
const LabelTenant = "lok8s.dev/tenant"

// ErrNotOwned is returned for an object that exists on the management
// cluster but is not the tenant's: another tenant's, or not created by
// the service at all. The service never takes such an object over
// (server-side apply with forced ownership would), deletes or reads it.
var ErrNotOwned = errors.New("exists and is not the tenant's")

// CheckOwner returns ErrNotOwned when the object named by gvk, namespace
// and name exists and its lok8s.dev/tenant label is not tenant; an absent
// object is fine (the service may create it). An object the watcher's
// cache holds with the tenant's label needs no request; anything else
// (not cached, another owner, absent from the cache) is read from the
// apiserver, so the cache never makes an object look the tenant's that the
// apiserver would not.
func (c *Cluster) CheckOwner(ctx context.Context, gvk schema.GroupVersionKind, namespace, name, tenant string) error {
	if obj, ok := c.cachedObject(gvk, namespace, name); ok && tenant != "" && obj.GetLabels()[LabelTenant] == tenant {
		return nil
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	err := c.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, meta)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get %s %s: %w", gvk.Kind, objectKey(meta), err)
	}
	if owner := meta.GetLabels()[LabelTenant]; owner != tenant {
		who := "was not created by lok8s"
		if owner != "" {
			who = "belongs to another tenant"
		}
		return fmt.Errorf("%s %s %s: %w", gvk.Kind, objectKey(meta), who, ErrNotOwned)
	}
	return nil
}

// EnsureTenantNamespace makes sure namespace name exists for tenant: it
// creates it with labels (which carry lok8s.dev/tenant) when it is
// missing, leaves one that exists unlabelled or labelled for the tenant as
// it is (a named management cluster's own namespace, such as default, is
// not relabelled), and refuses, with ErrNotOwned, one labelled for
// another tenant. With a tenant role (Registry.TenantRole) it binds that
// role to the service in the namespace.
func (c *Cluster) EnsureTenantNamespace(ctx context.Context, name string, labels map[string]string) error {
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	err := c.client.Get(ctx, client.ObjectKey{Name: name}, meta)
	switch {
	case apierrors.IsNotFound(err):
		if err := c.EnsureNamespace(ctx, name, labels); err != nil {
			return err
		}
		return c.bindTenantRole(ctx, name)
	case err != nil:
		return fmt.Errorf("get namespace %s: %w", name, err)
	}
	if owner := meta.GetLabels()[LabelTenant]; owner != "" && owner != labels[LabelTenant] {
		return fmt.Errorf("namespace %s belongs to another tenant: %w", name, ErrNotOwned)
	}
	return c.bindTenantRole(ctx, name)
}
