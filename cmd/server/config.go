package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/leaderelection"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/tracing"
	"lok8s.dev/provisioner/internal/watch"
)

// config is the server's configuration, read from the environment only here.
type config struct {
	Addr           string
	DatabaseURL    string
	AdminToken     string
	EncryptionKey  []byte
	OldKeys        [][]byte
	MgmtKubeconfig string
	KubeconfigDir  string
	TemplatesDir   string
	AddonsDir      string
	AddonValuesDir string
	ChartCacheDir  string
	AddonTimeout   time.Duration
	LogFormat      string
	LogLevel       slog.Level
	Workers        int
	// MaxInFlight bounds the requests worked at once, MaxConns the
	// connections open at once.
	MaxInFlight, MaxConns int
	// MgmtQPS and MgmtBurst bound the requests per second to each
	// management cluster.
	MgmtQPS   int
	MgmtBurst int
	// MgmtTenantRole is the ClusterRole bound in each tenant namespace.
	MgmtTenantRole string
	// MetricsAddr is where /metrics is served ("" serves none).
	MetricsAddr string
	// CheckInterval paces the wait steps; ProvisionTimeout bounds them.
	CheckInterval time.Duration
	// WatchedCheckInterval paces them when the watcher wakes them.
	WatchedCheckInterval time.Duration
	ProvisionTimeout     time.Duration
	// EventRetention is how long the event streams' history is kept.
	EventRetention time.Duration
	// LeaseNamespace and LeaseName locate the watcher lease on each
	// management cluster; LeaseDuration, LeaseRenewDeadline and
	// LeaseRetryPeriod time its election (watch.Election).
	LeaseNamespace, LeaseName                           string
	LeaseDuration, LeaseRenewDeadline, LeaseRetryPeriod time.Duration
	// Tracing is where OpenTelemetry spans go, from the standard OTEL_*
	// variables (zero: off).
	Tracing tracing.Config
}

// minAdminTokenLen keeps the admin token out of guessing range.
const minAdminTokenLen = 24

// loadConfig reads the configuration and reports every bad or missing
// variable at once, by name.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		Addr:           or(getenv("LOK8S_ADDR"), ":8080"),
		DatabaseURL:    or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/lok8s?sslmode=disable"),
		AdminToken:     getenv("LOK8S_ADMIN_TOKEN"),
		MgmtKubeconfig: getenv("LOK8S_MGMT_KUBECONFIG"),
		MgmtTenantRole: getenv("LOK8S_MGMT_TENANT_ROLE"),
		MetricsAddr:    getenv("LOK8S_METRICS_ADDR"),
		KubeconfigDir:  getenv("LOK8S_KUBECONFIG_DIR"),
		TemplatesDir:   getenv("LOK8S_TEMPLATES_DIR"),
		AddonsDir:      getenv("LOK8S_ADDONS_DIR"),
		AddonValuesDir: getenv("LOK8S_ADDON_VALUES_DIR"),
		ChartCacheDir:  or(getenv("LOK8S_CHART_CACHE_DIR"), defaultChartCache(getenv)),
		LogFormat:      or(getenv("LOK8S_LOG_FORMAT"), "json"),
		LeaseNamespace: or(getenv("LOK8S_LEASE_NAMESPACE"), watch.DefaultLeaseNamespace),
		LeaseName:      or(getenv("LOK8S_LEASE_NAME"), watch.DefaultLeaseName),
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.AdminToken == "":
		bad("LOK8S_ADMIN_TOKEN", "required (the bootstrap admin API token; make one with: openssl rand -hex 32)")
	case len(c.AdminToken) < minAdminTokenLen:
		bad("LOK8S_ADMIN_TOKEN", "must be at least %d characters", minAdminTokenLen)
	}
	if raw := getenv("LOK8S_ENCRYPTION_KEY"); raw == "" {
		bad("LOK8S_ENCRYPTION_KEY", "required (32 random bytes, base64; make one with: openssl rand -base64 32)")
	} else if key, err := seal.ParseKey(raw); err != nil {
		bad("LOK8S_ENCRYPTION_KEY", "%v", err)
	} else {
		c.EncryptionKey = key
	}
	for i, raw := range strings.FieldsFunc(getenv("LOK8S_ENCRYPTION_OLD_KEYS"), func(r rune) bool { return r == ',' || r == ' ' }) {
		key, err := seal.ParseKey(raw)
		if err != nil {
			bad("LOK8S_ENCRYPTION_OLD_KEYS", "key %d: %v", i+1, err)
			continue
		}
		c.OldKeys = append(c.OldKeys, key)
	}
	if c.MgmtKubeconfig != "" {
		if info, err := os.Stat(c.MgmtKubeconfig); err != nil || !info.Mode().IsRegular() {
			bad("LOK8S_MGMT_KUBECONFIG", "%q is not a readable file", c.MgmtKubeconfig)
		}
	}
	for name, dir := range map[string]string{"LOK8S_KUBECONFIG_DIR": c.KubeconfigDir, "LOK8S_TEMPLATES_DIR": c.TemplatesDir,
		"LOK8S_ADDONS_DIR": c.AddonsDir, "LOK8S_ADDON_VALUES_DIR": c.AddonValuesDir} {
		if dir == "" {
			continue
		}
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			bad(name, "%q is not a directory", dir)
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("LOK8S_LOG_FORMAT", "must be json or text, got %q", c.LogFormat)
	}
	if err := c.LogLevel.UnmarshalText([]byte(or(getenv("LOK8S_LOG_LEVEL"), "info"))); err != nil {
		bad("LOK8S_LOG_LEVEL", "must be debug, info, warn or error")
	}
	workers, err := strconv.Atoi(or(getenv("LOK8S_WORKERS"), "10"))
	if err != nil || workers < 0 {
		bad("LOK8S_WORKERS", "must be a whole number ≥ 0 (0 runs no workers: an API-only replica)")
	}
	c.Workers = workers
	inFlight, err := strconv.Atoi(or(getenv("LOK8S_MAX_IN_FLIGHT"), strconv.Itoa(api.DefaultMaxInFlight)))
	if err != nil || inFlight < 1 {
		bad("LOK8S_MAX_IN_FLIGHT", "must be a whole number ≥ 1")
	}
	c.MaxInFlight = inFlight
	maxConns, err := strconv.Atoi(or(getenv("LOK8S_MAX_CONNS"), strconv.Itoa(app.DefaultMaxConns)))
	if err != nil || maxConns <= c.MaxInFlight {
		bad("LOK8S_MAX_CONNS", "must be a whole number above LOK8S_MAX_IN_FLIGHT (%d)", c.MaxInFlight)
	}
	c.MaxConns = maxConns
	for _, v := range []struct {
		name string
		def  int
		dst  *int
	}{{"LOK8S_MGMT_QPS", mgmt.DefaultQPS, &c.MgmtQPS}, {"LOK8S_MGMT_BURST", mgmt.DefaultBurst, &c.MgmtBurst}} {
		n, err := strconv.Atoi(or(getenv(v.name), strconv.Itoa(v.def)))
		if err != nil || n < 1 {
			bad(v.name, "must be a whole number ≥ 1")
		}
		*v.dst = n
	}
	durations := []struct {
		name, def string
		dst       *time.Duration
	}{
		{"LOK8S_CHECK_INTERVAL", "15s", &c.CheckInterval},
		{"LOK8S_WATCHED_CHECK_INTERVAL", "2m", &c.WatchedCheckInterval},
		{"LOK8S_PROVISION_TIMEOUT", "45m", &c.ProvisionTimeout},
		{"LOK8S_ADDON_TIMEOUT", "5m", &c.AddonTimeout},
		{"LOK8S_EVENT_RETENTION", "168h", &c.EventRetention},
		{"LOK8S_LEASE_DURATION", watch.DefaultLeaseDuration.String(), &c.LeaseDuration},
		{"LOK8S_LEASE_RENEW_DEADLINE", watch.DefaultRenewDeadline.String(), &c.LeaseRenewDeadline},
		{"LOK8S_LEASE_RETRY_PERIOD", watch.DefaultRetryPeriod.String(), &c.LeaseRetryPeriod},
	}
	for _, d := range durations {
		v, err := time.ParseDuration(or(getenv(d.name), d.def))
		if err != nil || v <= 0 {
			bad(d.name, "must be a positive duration such as %s", d.def)
		}
		*d.dst = v
	}
	if c.LeaseDuration > 0 && c.LeaseRenewDeadline > 0 && c.LeaseRetryPeriod > 0 {
		if err := c.election("config-check").Validate(); err != nil {
			bad("LOK8S_LEASE_DURATION", "must be longer than LOK8S_LEASE_RENEW_DEADLINE, and that longer than %.1f × LOK8S_LEASE_RETRY_PERIOD (%v)",
				leaderelection.JitterFactor, err)
		}
	}
	c.Tracing = tracingConfig(getenv, bad)
	if len(errs) > 0 {
		return config{}, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

// election is the watcher lease configuration for the replica named identity.
func (c config) election(identity string) watch.Election {
	return watch.Election{Namespace: c.LeaseNamespace, Name: c.LeaseName, Identity: identity,
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.LeaseRenewDeadline, RetryPeriod: c.LeaseRetryPeriod}
}

// tracingConfig reads OpenTelemetry's standard variables: tracing is on
// when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: http/protobuf adds /v1/traces)
// is set, unless OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is
// none. The protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc).
func tracingConfig(getenv func(string) string, bad func(name, format string, args ...any)) tracing.Config {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return tracing.Config{}
	}
	switch exp := getenv("OTEL_TRACES_EXPORTER"); exp {
	case "", "otlp":
	case "none":
		return tracing.Config{}
	default:
		bad("OTEL_TRACES_EXPORTER", "must be otlp or none, got %q", exp)
		return tracing.Config{}
	}
	protoVar := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if getenv(protoVar) == "" {
		protoVar = "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	c := tracing.Config{Protocol: or(getenv(protoVar), tracing.ProtocolHTTP), ServiceName: or(getenv("OTEL_SERVICE_NAME"), "lok8s")}
	if c.Protocol != tracing.ProtocolHTTP && c.Protocol != tracing.ProtocolGRPC {
		bad(protoVar, "must be %s or %s, got %q", tracing.ProtocolHTTP, tracing.ProtocolGRPC, c.Protocol)
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	signal := endpoint != ""
	if !signal {
		name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		return tracing.Config{}
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad(name, "must be an http:// or https:// URL, got %q", redactURL(endpoint))
		return tracing.Config{}
	}
	if !signal && c.Protocol == tracing.ProtocolHTTP {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	c.EndpointURL = u.String()
	return c
}

// LogValue keeps secrets out of logs when the configuration is logged.
func (c config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("database", redactURL(c.DatabaseURL)),
		slog.String("admin_token", "[redacted]"),
		slog.String("encryption_key_id", seal.KeyID(c.EncryptionKey)),
		slog.Int("old_keys", len(c.OldKeys)),
		slog.String("mgmt_kubeconfig", c.MgmtKubeconfig),
		slog.String("kubeconfig_dir", c.KubeconfigDir),
		slog.String("templates_dir", c.TemplatesDir),
		slog.String("addons_dir", c.AddonsDir),
		slog.String("addon_values_dir", c.AddonValuesDir),
		slog.String("chart_cache_dir", c.ChartCacheDir),
		slog.Int("workers", c.Workers),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int("max_conns", c.MaxConns),
		slog.Int("mgmt_qps", c.MgmtQPS),
		slog.Int("mgmt_burst", c.MgmtBurst),
		slog.String("mgmt_tenant_role", c.MgmtTenantRole),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Duration("check_interval", c.CheckInterval),
		slog.Duration("watched_check_interval", c.WatchedCheckInterval),
		slog.Duration("provision_timeout", c.ProvisionTimeout),
		slog.Duration("event_retention", c.EventRetention),
		slog.String("lease", c.LeaseNamespace+"/"+c.LeaseName),
		slog.Duration("lease_duration", c.LeaseDuration),
		slog.Duration("lease_renew_deadline", c.LeaseRenewDeadline),
		slog.Duration("lease_retry_period", c.LeaseRetryPeriod),
		slog.String("otlp_traces_endpoint", redactURL(c.Tracing.EndpointURL)),
		slog.String("otlp_protocol", c.Tracing.Protocol),
	)
}

// redactURL hides every password a Postgres connection string may carry:
// a URL's user password and its password or sslpassword parameters, or
// the same keywords of a keyword=value string.
func redactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return secretKeyword.ReplaceAllString(raw, "${1}=[redacted]")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsed]"
	}
	const mark = "REDACTED-BY-LOK8S" // survives URL encoding, then shown as [redacted]
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), mark)
	}
	q := u.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, mark)
		}
	}
	u.RawQuery = q.Encode()
	return strings.ReplaceAll(u.String(), mark, "[redacted]")
}

// secretKeyword matches a password keyword of a keyword=value connection
// string with its value, quoted or not.
var secretKeyword = regexp.MustCompile(`(?i)\b((?:ssl)?password)\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)`)

// defaultChartCache is ${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/charts.
func defaultChartCache(getenv func(string) string) string {
	if dir := getenv("XDG_CACHE_HOME"); dir != "" {
		return filepath.Join(dir, "lok8s", "charts")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".cache", "lok8s", "charts")
	}
	return filepath.Join(os.TempDir(), "lok8s-charts")
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
