package mgmt

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

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
	_, err := c.readOwner(ctx, gvk, namespace, name, tenant)
	return err
}

// readOwner reads the object's metadata from the apiserver: ErrNotOwned
// when it exists and is not tenant's, else its UID ("" when absent).
func (c *Cluster) readOwner(ctx context.Context, gvk schema.GroupVersionKind, namespace, name, tenant string) (types.UID, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	err := c.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, meta)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get %s %s: %w", gvk.Kind, objectKey(meta), err)
	}
	if owner := meta.GetLabels()[LabelTenant]; owner != tenant {
		who := "was not created by lok8s"
		if owner != "" {
			who = "belongs to another tenant"
		}
		return "", fmt.Errorf("%s %s %s: %w", gvk.Kind, objectKey(meta), who, ErrNotOwned)
	}
	return meta.GetUID(), nil
}

// ApplyOwned server-side applies obj for tenant unless an object of its
// name exists that is not the tenant's (ErrNotOwned): the service never
// takes over another tenant's object, nor one it did not create.
//
//   - An object the watcher's cache holds with the tenant's label is
//     applied with that object's UID as a precondition, so a cache that
//     is behind (the object deleted and made again by another) cannot
//     make the service write to it: no read.
//   - With likelyAbsent (a first provisioning), the object is applied
//     create-only (ApplyNew), which the apiserver refuses if anything of
//     that name exists: no read when it is absent.
//   - Otherwise, or when that precondition fails, its owner is read from
//     the apiserver (CheckOwner's read), and the object applied if it is
//     the tenant's, or created create-only if it was absent.
//
// A new object costs one request instead of a read and an apply.
func (c *Cluster) ApplyOwned(ctx context.Context, obj *unstructured.Unstructured, tenant string, likelyAbsent bool) error {
	gvk, namespace, name := obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName()
	if tenant == "" {
		return fmt.Errorf("apply %s %s: no tenant to apply it for: %w", gvk.Kind, objectKey(obj), ErrNotOwned)
	}
	cached, held := c.cachedObject(gvk, namespace, name)
	var err error
	switch {
	case held && cached.GetLabels()[LabelTenant] == tenant:
		err = c.applyIf(ctx, obj, cached.GetUID())
	case likelyAbsent:
		err = c.ApplyNew(ctx, obj)
	default:
		err = errPreconditionNotTried
	}
	if !preconditionFailed(err) {
		return err
	}
	// Twice at most: an object made by someone else between the read and
	// the create-only apply is read again.
	for range 2 {
		uid, err := c.readOwner(ctx, gvk, namespace, name, tenant)
		if err != nil {
			return err
		}
		if uid != "" {
			// Without a UID: concurrent applies of one object (a
			// tenant's clusters share their credential's Secret) would
			// conflict, where the apiserver retries plain ones.
			return c.Apply(ctx, obj)
		}
		if err := c.ApplyNew(ctx, obj); !apierrors.IsConflict(err) {
			return err
		}
	}
	return fmt.Errorf("apply %s %s: made by someone else while being applied, twice", gvk.Kind, objectKey(obj))
}

// errPreconditionNotTried stands for an apply ApplyOwned did not try.
var errPreconditionNotTried = errors.New("no precondition tried")

// preconditionFailed reports whether err says the apply's precondition
// did not hold. The apiserver answers 409 Conflict to a resourceVersion
// that is not the object's and to a UID when no object exists (with
// forced field ownership the only other conflict is a concurrent write
// to an applied UID's object: read again as well), and 422 Invalid,
// "metadata.uid: field is immutable", to a UID that is not the object's.
func preconditionFailed(err error) bool {
	if errors.Is(err, errPreconditionNotTried) || apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return true
	}
	if !apierrors.IsInvalid(err) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, cause := range status.Status().Details.Causes {
		if cause.Field == "metadata.uid" {
			return true
		}
	}
	return false
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
	ns := &unstructured.Unstructured{}
	ns.SetGroupVersionKind(gvk)
	ns.SetName(name)
	ns.SetLabels(labels)
	// Twice at most: a namespace created by someone else between the read
	// and the create-only apply is read again.
	for range 2 {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(gvk)
		err := c.client.Get(ctx, client.ObjectKey{Name: name}, meta)
		switch {
		case apierrors.IsNotFound(err):
			err := c.ApplyNew(ctx, ns)
			if apierrors.IsConflict(err) {
				continue
			}
			if err != nil {
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
	return fmt.Errorf("namespace %s: created and deleted again while being made", name)
}
