package addons

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// Errors of Installer.
var (
	// ErrNotInstalled: the release does not exist.
	ErrNotInstalled = errors.New("release not installed")
	// ErrReleaseBusy: another operation on the release is pending and
	// younger than the install timeout; retry later.
	ErrReleaseBusy = errors.New("release has an operation in progress")
)

// FieldManager is the server-side apply field manager of the Secrets and
// namespaces this package applies (the service's own name).
const FieldManager = "lok8s"

// Config configures an Installer.
type Config struct {
	// CacheDir holds downloaded repository indexes and charts (required).
	// Charts are kept per repository, name and version, so a pinned chart
	// is downloaded once per server.
	CacheDir string
	// Logger receives Helm's log records and the installer's; never values
	// or Secrets. Default: discard.
	Logger *slog.Logger
	// Timeout bounds one release's install or upgrade, waiting for its
	// resources included (default 5m). A Request may set its own.
	Timeout time.Duration
	// DownloadTimeout bounds each HTTP request to a chart repository
	// (default 2m).
	DownloadTimeout time.Duration
	// MaxHistory is how many revisions Helm keeps per release (default 10).
	MaxHistory int
}

// WithDefaults returns c with its zero fields defaulted.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.DownloadTimeout == 0 {
		c.DownloadTimeout = 2 * time.Minute
	}
	if c.MaxHistory == 0 {
		c.MaxHistory = 10
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.CacheDir == "" {
		errs = append(errs, errors.New("CacheDir: required"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("addons: Config.Timeout must be positive"))
	}
	if c.DownloadTimeout < 0 {
		errs = append(errs, errors.New("addons: Config.DownloadTimeout must be positive"))
	}
	if c.MaxHistory < 0 {
		errs = append(errs, errors.New("MaxHistory: must be positive"))
	}
	return errors.Join(errs...)
}

// Installer installs add-ons into workload clusters with the Helm SDK.
// It is safe for concurrent use on different releases.
type Installer struct {
	cfg Config
}

// NewInstaller checks cfg (defaulted) and returns an Installer.
func NewInstaller(cfg Config) (*Installer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("addons: config: %w", err)
	}
	return &Installer{cfg: cfg}, nil
}

// Request is one add-on to install.
type Request struct {
	// Addon is the catalogue entry resolved for the cluster's provider.
	Addon Resolved
	// Version replaces the catalogue's pinned chart version
	// (spec.bootstrap[].version); empty keeps the pin.
	Version string
	// Values are the release's values: Values(Addon.Layers(...), vars).
	Values map[string]any
	// Secrets are applied before the chart: Addon.Secrets(credentials, vars).
	Secrets []*corev1.Secret
	// Timeout bounds the install or upgrade with its wait; 0: Config.Timeout.
	Timeout time.Duration
}

// Action is what Install did.
type Action string

// Actions.
const (
	Installed Action = "installed" // a first revision
	Upgraded  Action = "upgraded"  // a new revision (changed, or recovering a failed one)
	Unchanged Action = "unchanged" // the deployed revision already had this chart and these values
)

// Result describes the release after Install.
type Result struct {
	Release   string
	Namespace string
	Chart     string // chart name
	Version   string // chart version installed
	Revision  int
	Action    Action
}

// Install installs or upgrades the add-on's release in the cluster that
// kubeconfig reaches, and waits (bounded by the timeout) until the
// release's resources are ready.
//
//   - The chart is located through its repository's index (or the cache).
//   - The release namespace and the Secrets are applied first (server-side
//     apply, field manager FieldManager).
//   - No release yet: install. A deployed revision with the same chart
//     version and values: nothing is done (Unchanged, same revision).
//     Otherwise: upgrade, which also recovers a failed revision (Helm
//     upgrades from the failed or last deployed one and cleans up resources
//     a failed upgrade created). A revision left pending (a worker died
//     mid-install) for longer than the timeout is marked failed and then
//     upgraded; a younger one is ErrReleaseBusy.
//
// Errors carry Helm's own message, and the Kubernetes API server's where it
// refused an object.
func (i *Installer) Install(ctx context.Context, kubeconfig []byte, req Request) (Result, error) {
	a := req.Addon
	chart := a.Chart
	if req.Version != "" {
		chart.Version = req.Version
	}
	res := Result{Release: a.Release, Namespace: a.Namespace, Chart: chart.Name}
	fail := func(err error) (Result, error) {
		return res, fmt.Errorf("addons: %s (release %s/%s, chart %s-%s): %w", a.Name, a.Namespace, a.Release, chart.Name, chart.Version, err)
	}
	if a.Release == "" || a.Namespace == "" {
		return fail(errors.New("the request's addon has no release or namespace"))
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = i.cfg.Timeout
	}

	ch, err := i.fetchChart(ctx, chart)
	if err != nil {
		return fail(err)
	}
	cfg, getter, err := i.actionConfig(kubeconfig, a.Namespace)
	if err != nil {
		return fail(err)
	}
	if err := applySecrets(ctx, getter, a.Namespace, req.Secrets); err != nil {
		return fail(err)
	}
	values := req.Values
	if values == nil {
		values = map[string]any{}
	}

	last, err := lastRelease(cfg, a.Release)
	if err != nil {
		return fail(err)
	}
	log := i.cfg.Logger.With("addon", a.Name, "namespace", a.Namespace, "release", a.Release, "chart", chart.Name, "version", chart.Version)

	var rel *releasev1.Release
	switch {
	case last == nil || last.Info.Status == rcommon.StatusUninstalled:
		log.Info("addons: installing")
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = a.Release, a.Namespace, true
		in.Replace = last != nil // re-use an uninstalled release's name
		in.WaitStrategy, in.WaitForJobs, in.Timeout = kube.StatusWatcherStrategy, true, timeout
		in.ServerSideApply, in.ForceConflicts = true, true
		r, err := in.RunWithContext(ctx, ch, values)
		if err != nil {
			return fail(err)
		}
		if rel, err = asRelease(r); err != nil {
			return fail(err)
		}
		res.Action = Installed

	case last.Info.Status == rcommon.StatusDeployed && sameChart(last.Chart, ch) && sameValues(last.Config, values):
		log.Info("addons: unchanged", "revision", last.Version)
		rel, res.Action = last, Unchanged

	default:
		if last.Info.Status.IsPending() {
			age := time.Since(last.Info.LastDeployed)
			if age < timeout {
				return fail(fmt.Errorf("%w: revision %d is %s since %s", ErrReleaseBusy, last.Version, last.Info.Status, last.Info.LastDeployed.Format(time.RFC3339)))
			}
			log.Warn("addons: marking an abandoned pending revision failed", "revision", last.Version, "status", last.Info.Status, "age", age.Round(time.Second))
			last.SetStatus(rcommon.StatusFailed, fmt.Sprintf("%s abandoned for %s; marked failed by lok8s", last.Info.Status, age.Round(time.Second)))
			if err := cfg.Releases.Update(last); err != nil {
				return fail(fmt.Errorf("marking pending revision %d failed: %w", last.Version, err))
			}
		}
		log.Info("addons: upgrading", "from_revision", last.Version, "from_status", last.Info.Status)
		up := action.NewUpgrade(cfg)
		up.Namespace = a.Namespace
		up.WaitStrategy, up.WaitForJobs, up.Timeout = kube.StatusWatcherStrategy, true, timeout
		up.ServerSideApply, up.ForceConflicts = "true", true
		up.CleanupOnFail = true
		up.MaxHistory = i.cfg.MaxHistory
		up.ResetValues = true // exactly these values, never merged with the last ones
		r, err := up.RunWithContext(ctx, a.Release, ch, values)
		if err != nil {
			return fail(err)
		}
		if rel, err = asRelease(r); err != nil {
			return fail(err)
		}
		res.Action = Upgraded
	}
	res.Revision = rel.Version
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		res.Version = rel.Chart.Metadata.Version
	}
	log.Info("addons: release ready", "revision", res.Revision, "action", res.Action)
	return res, nil
}

// ReleaseStatus is a release's latest revision as Helm stored it.
type ReleaseStatus struct {
	Release     string
	Namespace   string
	Revision    int
	Status      string // deployed, failed, pending-install, …
	Description string // Helm's message (the error of a failed revision)
	Chart       string
	Version     string // chart version
	Updated     time.Time
}

// Status returns the latest revision of release in namespace, or
// ErrNotInstalled.
func (i *Installer) Status(ctx context.Context, kubeconfig []byte, namespace, release string) (ReleaseStatus, error) {
	cfg, _, err := i.actionConfig(kubeconfig, namespace)
	if err != nil {
		return ReleaseStatus{}, fmt.Errorf("addons: release %s/%s: %w", namespace, release, err)
	}
	last, err := lastRelease(cfg, release)
	if err != nil {
		return ReleaseStatus{}, fmt.Errorf("addons: release %s/%s: %w", namespace, release, err)
	}
	if last == nil {
		return ReleaseStatus{}, fmt.Errorf("addons: release %s/%s: %w", namespace, release, ErrNotInstalled)
	}
	st := ReleaseStatus{Release: last.Name, Namespace: last.Namespace, Revision: last.Version}
	if last.Info != nil {
		st.Status, st.Description, st.Updated = string(last.Info.Status), last.Info.Description, last.Info.LastDeployed
	}
	if last.Chart != nil && last.Chart.Metadata != nil {
		st.Chart, st.Version = last.Chart.Metadata.Name, last.Chart.Metadata.Version
	}
	return st, nil
}

// ReleaseValues returns the values stored with the release's latest
// revision (the user-supplied ones, as `helm get values` shows them), or
// ErrNotInstalled.
func (i *Installer) ReleaseValues(ctx context.Context, kubeconfig []byte, namespace, release string) (map[string]any, error) {
	cfg, _, err := i.actionConfig(kubeconfig, namespace)
	if err != nil {
		return nil, fmt.Errorf("addons: release %s/%s: %w", namespace, release, err)
	}
	vals, err := action.NewGetValues(cfg).Run(release)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, fmt.Errorf("addons: release %s/%s: %w", namespace, release, ErrNotInstalled)
	}
	if err != nil {
		return nil, fmt.Errorf("addons: release %s/%s: %w", namespace, release, err)
	}
	return vals, nil
}

// actionConfig is Helm's configuration for one namespace of the cluster:
// releases stored as Secrets there (Helm's default driver).
func (i *Installer) actionConfig(kubeconfig []byte, namespace string) (*action.Configuration, *kubeconfigGetter, error) {
	getter, err := newKubeconfigGetter(kubeconfig, namespace)
	if err != nil {
		return nil, nil, err
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(i.cfg.Logger.Handler()))
	if err := cfg.Init(getter, namespace, "secret"); err != nil {
		return nil, nil, fmt.Errorf("helm: %w", err)
	}
	return cfg, getter, nil
}

// lastRelease returns the release's latest revision, or nil when there is
// none.
func lastRelease(cfg *action.Configuration, name string) (*releasev1.Release, error) {
	r, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading release history: %w", err)
	}
	return asRelease(r)
}

func asRelease(r any) (*releasev1.Release, error) {
	switch t := r.(type) {
	case *releasev1.Release:
		return t, nil
	case releasev1.Release:
		return &t, nil
	default:
		return nil, fmt.Errorf("helm returned a release of type %T", r)
	}
}

func sameChart(a, b *chartv2.Chart) bool {
	return a != nil && b != nil && a.Metadata != nil && b.Metadata != nil &&
		a.Metadata.Name == b.Metadata.Name && a.Metadata.Version == b.Metadata.Version
}

// sameValues compares values as Helm stores them (JSON).
func sameValues(stored, values map[string]any) bool {
	norm := func(m map[string]any) any {
		if len(m) == 0 {
			return nil
		}
		data, err := json.Marshal(m)
		if err != nil {
			return err.Error()
		}
		var out any
		if json.Unmarshal(data, &out) != nil {
			return nil
		}
		return out
	}
	return reflect.DeepEqual(norm(stored), norm(values))
}

// applySecrets server-side applies the release namespace and the Secrets
// (with their own namespaces), whole: the Secret's keys are exactly the
// ones given. Errors name Secrets, never their data.
func applySecrets(ctx context.Context, getter *kubeconfigGetter, namespace string, secrets []*corev1.Secret) error {
	cs, err := kubernetesClient(getter)
	if err != nil {
		return err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	namespaces := []string{namespace}
	for _, s := range secrets {
		if s.Namespace != "" && s.Namespace != namespace && !slices.Contains(namespaces, s.Namespace) {
			namespaces = append(namespaces, s.Namespace)
		}
	}
	for _, ns := range namespaces {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
			continue
		}
		if _, err := cs.CoreV1().Namespaces().Apply(ctx, corev1ac.Namespace(ns), opts); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	for _, s := range secrets {
		ns := s.Namespace
		if ns == "" {
			ns = namespace
		}
		ac := corev1ac.Secret(s.Name, ns).WithType(s.Type).WithLabels(s.Labels).WithData(s.Data)
		if s.Type == "" {
			ac.WithType(corev1.SecretTypeOpaque)
		}
		if _, err := cs.CoreV1().Secrets(ns).Apply(ctx, ac, opts); err != nil {
			return fmt.Errorf("secret %s/%s: %w", ns, s.Name, err)
		}
	}
	return nil
}

func kubernetesClient(g *kubeconfigGetter) (kubernetes.Interface, error) {
	cs, err := kubernetes.NewForConfig(g.restConfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}
