// Package access issues short-lived kubeconfigs for a workload cluster, one
// identity per requesting principal, so that CAPI's admin kubeconfig never
// leaves the service.
//
// Each principal (a tenant's API token) gets a ServiceAccount of its own in
// the workload cluster's Namespace, bound to cluster-admin, and every issue
// is a bound token from the TokenRequest API with the TTL asked for. The
// apiserver enforces the expiry (and states it in the token), and deleting
// the ServiceAccount revokes every token issued for it at once, which a
// client certificate signed with the cluster's CA could not offer; tokens
// also work where there is no CA key to sign with (EKS).
package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"lok8s.dev/provisioner/internal/mgmt"
)

// Namespace holds the principals' ServiceAccounts on a workload cluster.
const Namespace = "lok8s-access"

// TTL bounds: the TokenRequest API refuses less than 10 minutes; a request
// names no TTL gets DefaultTTL, and a tenant without a policy of its own
// may ask for up to DefaultMaxTTL.
const (
	MinTTL        = 10 * time.Minute
	DefaultTTL    = time.Hour
	DefaultMaxTTL = 24 * time.Hour
)

// LabelToken names the API token a principal's ServiceAccount is for (with
// mgmt.LabelTenant, its tenant).
const LabelToken = "lok8s.dev/token"

// fieldManager owns what Issue applies on the workload cluster.
const fieldManager = "lok8s-access"

// Principal is who a kubeconfig is for: a tenant's API token, by name.
type Principal struct {
	Tenant, Token string
}

// ServiceAccount is the principal's ServiceAccount name: "<tenant>.<token>"
// (both DNS labels, so a DNS subdomain).
func (p Principal) ServiceAccount() string { return p.Tenant + "." + p.Token }

// User is the identity the workload cluster sees.
func (p Principal) User() string {
	return "system:serviceaccount:" + Namespace + ":" + p.ServiceAccount()
}

// Issued is a kubeconfig issued for a principal.
type Issued struct {
	Kubeconfig []byte
	// User is the identity the workload cluster sees; ExpiresAt is when
	// the apiserver stops taking the token.
	User      string
	ExpiresAt time.Time
}

// ErrUnreachable wraps failures to reach the workload cluster.
var ErrUnreachable = errors.New("workload cluster unreachable")

// Issue makes sure the principal's ServiceAccount and its binding exist on
// the workload cluster that admin (CAPI's kubeconfig) reaches, and returns
// a kubeconfig for clusterName with a token of the principal valid for ttl.
func Issue(ctx context.Context, admin []byte, clusterName string, p Principal, ttl time.Duration) (Issued, error) {
	if ttl < MinTTL {
		return Issued{}, fmt.Errorf("access: ttl %s is below the minimum %s", ttl, MinTTL)
	}
	cfg, err := clientcmd.Load(admin)
	if err != nil {
		return Issued{}, fmt.Errorf("access: read the admin kubeconfig: %w", err)
	}
	server, err := currentCluster(cfg)
	if err != nil {
		return Issued{}, err
	}
	rest, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return Issued{}, fmt.Errorf("access: admin kubeconfig: %w", err)
	}
	rest.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return Issued{}, fmt.Errorf("access: client: %w", err)
	}

	labels := map[string]string{"app.kubernetes.io/managed-by": "lok8s", mgmt.LabelTenant: p.Tenant, LabelToken: p.Token}
	apply := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	sa := p.ServiceAccount()
	if _, err := cs.CoreV1().Namespaces().Apply(ctx, corev1ac.Namespace(Namespace).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": "lok8s"}), apply); err != nil {
		return Issued{}, unreachable("apply namespace "+Namespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(Namespace).Apply(ctx, corev1ac.ServiceAccount(sa, Namespace).
		WithLabels(labels).WithAutomountServiceAccountToken(false), apply); err != nil {
		return Issued{}, unreachable("apply service account "+sa, err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, rbacv1ac.ClusterRoleBinding("lok8s-access:"+sa).
		WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName("cluster-admin")).
		WithSubjects(rbacv1ac.Subject().WithKind("ServiceAccount").WithName(sa).WithNamespace(Namespace)), apply); err != nil {
		return Issued{}, unreachable("bind "+sa+" to cluster-admin", err)
	}
	seconds := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	if err != nil {
		return Issued{}, unreachable("request a token for "+sa, err)
	}

	user := p.Tenant + "/" + p.Token
	out := clientcmdapi.NewConfig()
	out.Clusters[clusterName] = server
	out.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	out.Contexts[clusterName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: user}
	out.CurrentContext = clusterName
	data, err := clientcmd.Write(*out)
	if err != nil {
		return Issued{}, fmt.Errorf("access: write kubeconfig: %w", err)
	}
	return Issued{Kubeconfig: data, User: p.User(), ExpiresAt: tr.Status.ExpirationTimestamp.UTC()}, nil
}

// currentCluster is a copy of the admin kubeconfig's current cluster entry:
// the server and how to trust it, none of the admin's credentials.
func currentCluster(cfg *clientcmdapi.Config) (*clientcmdapi.Cluster, error) {
	ctxName := cfg.CurrentContext
	if ctxName == "" && len(cfg.Contexts) == 1 {
		for name := range cfg.Contexts {
			ctxName = name
		}
	}
	c, ok := cfg.Contexts[ctxName]
	if !ok {
		return nil, fmt.Errorf("access: the admin kubeconfig has no current context")
	}
	cl, ok := cfg.Clusters[c.Cluster]
	if !ok {
		return nil, fmt.Errorf("access: the admin kubeconfig has no cluster %q", c.Cluster)
	}
	return &clientcmdapi.Cluster{
		Server: cl.Server, TLSServerName: cl.TLSServerName,
		CertificateAuthorityData: cl.CertificateAuthorityData, InsecureSkipTLSVerify: cl.InsecureSkipTLSVerify,
		ProxyURL: cl.ProxyURL,
	}, nil
}

func unreachable(what string, err error) error {
	return fmt.Errorf("access: %s: %w: %w", what, ErrUnreachable, err)
}
