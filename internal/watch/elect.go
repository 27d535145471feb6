package watch

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ensureNamespace makes the lease's namespace when the management cluster
// has none of that name (a development cluster; the Helm chart's is the
// release's own, which exists).
func ensureNamespace(ctx context.Context, core corev1client.NamespacesGetter, name string) error {
	_, err := core.Namespaces().Get(ctx, name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return err
	}
	_, err = core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Defaults of the Election fields of the same names: client-go's and
// controller-runtime's usual lease timing.
const (
	DefaultLeaseNamespace = "lok8s-system"
	DefaultLeaseName      = "lok8s-watcher"
	DefaultLeaseDuration  = 15 * time.Second
	DefaultRenewDeadline  = 10 * time.Second
	DefaultRetryPeriod    = 2 * time.Second
)

// Election is the lease a replica must hold on a management cluster to run
// that cluster's watcher: one replica at a time records observed status
// (client-go's leaderelection with a Lease, the mechanism
// controller-runtime's managers use).
type Election struct {
	// Namespace and Name locate the Lease on each management cluster; a
	// named management cluster's lease is Name-<domain> (LeaseName), so
	// that management clusters sharing one apiserver keep apart.
	Namespace, Name string
	// Identity names this replica in the lease's holderIdentity and in
	// the observed status it records (observed_by); NewIdentity makes one.
	Identity string
	// LeaseDuration is how long the others wait after the holder's last
	// renewal before they take the lease; RenewDeadline how long the
	// holder keeps trying to renew before it stops leading; RetryPeriod
	// how often each tries.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// OnLeading, when set, is told when this replica starts and stops
	// leading a management cluster (the leader gauge).
	OnLeading func(domain string, leading bool)
}

// WithDefaults fills the zero fields with the Default values.
func (e Election) WithDefaults() Election {
	e.Namespace = cmp.Or(e.Namespace, DefaultLeaseNamespace)
	e.Name = cmp.Or(e.Name, DefaultLeaseName)
	e.LeaseDuration = cmp.Or(e.LeaseDuration, DefaultLeaseDuration)
	e.RenewDeadline = cmp.Or(e.RenewDeadline, DefaultRenewDeadline)
	e.RetryPeriod = cmp.Or(e.RetryPeriod, DefaultRetryPeriod)
	return e
}

// Validate names the first field that would make the election unsound.
func (e Election) Validate() error {
	switch {
	case e.Identity == "":
		return errors.New("watch: Election.Identity is empty")
	case e.RetryPeriod <= 0 || e.RenewDeadline <= 0 || e.LeaseDuration <= 0:
		return errors.New("watch: Election.LeaseDuration, Election.RenewDeadline and Election.RetryPeriod must be positive")
	case e.LeaseDuration <= e.RenewDeadline:
		return fmt.Errorf("watch: Election.LeaseDuration (%v) must be longer than Election.RenewDeadline (%v)", e.LeaseDuration, e.RenewDeadline)
	case e.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(e.RetryPeriod)):
		return fmt.Errorf("watch: Election.RenewDeadline (%v) must be longer than %.1f × Election.RetryPeriod (%v)", e.RenewDeadline, leaderelection.JitterFactor, e.RetryPeriod)
	}
	return nil
}

// LeaseName is the lease of the management cluster domain ("" is the SaaS
// default).
func (e Election) LeaseName(domain string) string {
	if domain == "" {
		return e.Name
	}
	return e.Name + "-" + domain
}

// NewIdentity is this replica's name in elections: the host name (a pod's
// name) and a random suffix, so two processes on one host differ.
func NewIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "lok8s"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// retryWatcher paces restarts of a watcher that stopped with an error
// while its replica still leads.
const retryWatcher = 5 * time.Second

// RunElected campaigns for the management cluster's lease until ctx ends
// and runs the watcher while this replica holds it; the other replicas
// stand by and take over once the lease lapses. A lost lease stops the
// watcher and the campaign begins again. When ctx ends, the watcher stops
// first and the lease is released after (ReleaseOnCancel), so the next
// holder starts at once and never writes beside this one.
func (w *Watcher) RunElected(ctx context.Context, e Election) error {
	e = e.WithDefaults()
	if err := e.Validate(); err != nil {
		return err
	}
	w.writer = e.Identity
	cfg := rest.CopyConfig(w.cluster.Config)
	// A renewal must end before the deadline (client-go's own choice in
	// resourcelock.NewFromKubeconfig).
	cfg.Timeout = max(e.RenewDeadline/2, time.Second)
	cfg.UserAgent = "lok8s-provisioner/leader-election"
	client, err := coordinationv1.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("watch: lease client: %w", err)
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("watch: namespace client: %w", err)
	}
	lease := e.LeaseName(w.cluster.Domain)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: lease},
		Client:     client,
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	log := w.logger.With("lease", e.Namespace+"/"+lease, "identity", e.Identity)

	// The election outlives ctx until the watcher has stopped: then it is
	// ended, and the lease released.
	electionCtx, endElection := context.WithCancel(context.WithoutCancel(ctx))
	defer endElection()
	var mu sync.Mutex
	var term chan struct{} // closed when the running term's watcher has stopped
	running := func() chan struct{} { mu.Lock(); defer mu.Unlock(); return term }
	stopAfter := context.AfterFunc(ctx, func() {
		if t := running(); t != nil {
			<-t
		}
		endElection()
	})
	defer stopAfter()

	lead := func(leading context.Context) {
		mu.Lock()
		if ctx.Err() != nil || leading.Err() != nil {
			mu.Unlock()
			return
		}
		t := make(chan struct{})
		term = t
		mu.Unlock()
		defer func() { mu.Lock(); term = nil; mu.Unlock(); close(t) }()
		watchCtx, stop := context.WithCancel(leading)
		defer stop()
		defer context.AfterFunc(ctx, stop)()
		log.InfoContext(ctx, "leading: running the watcher")
		if e.OnLeading != nil {
			e.OnLeading(w.cluster.Domain, true)
			defer e.OnLeading(w.cluster.Domain, false)
		}
		for {
			err := w.Run(watchCtx)
			if watchCtx.Err() != nil {
				return
			}
			log.ErrorContext(ctx, "watcher stopped while leading; restarting it", "error", err)
			select {
			case <-watchCtx.Done():
				return
			case <-time.After(retryWatcher):
			}
		}
	}
	if err := ensureNamespace(ctx, core, e.Namespace); err != nil {
		// The election reports the same failure on each try, until someone
		// makes the namespace.
		log.WarnContext(ctx, "the lease's namespace is missing and cannot be made", "error", err)
	}
	log.InfoContext(ctx, "campaigning for the watcher lease")
	defer w.cluster.SetWatchedElsewhere(false)
	for electionCtx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: lease, ReleaseOnCancel: true,
			LeaseDuration: e.LeaseDuration, RenewDeadline: e.RenewDeadline, RetryPeriod: e.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: lead,
				OnStoppedLeading: func() {},
				// Another holder's watcher records observed status and
				// wakes the waits: this replica's checks read the store.
				OnNewLeader: func(identity string) {
					w.cluster.SetWatchedElsewhere(identity != "" && identity != e.Identity)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("watch: election: %w", err)
		}
		le.Run(electionCtx)
		// Run does not wait for the term it started: wait for the watcher.
		if t := running(); t != nil {
			<-t
		}
		if electionCtx.Err() == nil {
			log.WarnContext(ctx, "lost the watcher lease; campaigning again")
		}
	}
	return nil
}
