package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/seal"
	"lok8s.dev/provisioner/internal/tracing"
	"lok8s.dev/provisioner/internal/watch"
)

// config is the server's configuration, read from the environment only
// here: the service's (app.Config, zero fields defaulted by the packages
// that own them) and the logger's.
type config struct {
	app.Config
	LogFormat string
	LogLevel  slog.Level
}

// minAdminTokenLen keeps the admin token out of guessing range.
const minAdminTokenLen = 24

// Defaults of the server's own (app.Config's zero value is another).
const (
	defaultWorkers        = 10
	defaultEventRetention = 7 * 24 * time.Hour
)

// intVars are the whole-number variables: unset, the field keeps its
// default; set, it must be at least min.
var intVars = []struct {
	name, field string
	min         int
	dst         func(*app.Config) *int
}{
	{"LOK8S_WORKERS", "Workers", 0, func(c *app.Config) *int { return &c.Workers }},
	{"LOK8S_MAX_IN_FLIGHT", "MaxInFlight", 1, func(c *app.Config) *int { return &c.MaxInFlight }},
	{"LOK8S_MAX_CONNS", "MaxConns", 1, func(c *app.Config) *int { return &c.MaxConns }},
	{"LOK8S_MGMT_BURST", "MgmtBurst", 1, func(c *app.Config) *int { return &c.MgmtBurst }},
	{"LOK8S_JOB_MAX_ATTEMPTS", "JobMaxAttempts", 1, func(c *app.Config) *int { return &c.JobMaxAttempts }},
}

// durationVars are the duration variables: unset, the field keeps its
// default; set, it must be positive.
var durationVars = []struct {
	name, field string
	dst         func(*app.Config) *time.Duration
}{
	{"LOK8S_CHECK_INTERVAL", "CheckInterval", func(c *app.Config) *time.Duration { return &c.CheckInterval }},
	{"LOK8S_WATCHED_CHECK_INTERVAL", "WatchedCheckInterval", func(c *app.Config) *time.Duration { return &c.WatchedCheckInterval }},
	{"LOK8S_PROVISION_TIMEOUT", "ProvisionTimeout", func(c *app.Config) *time.Duration { return &c.ProvisionTimeout }},
	{"LOK8S_ADDON_TIMEOUT", "AddonTimeout", func(c *app.Config) *time.Duration { return &c.AddonTimeout }},
	{"LOK8S_EVENT_RETENTION", "EventRetention", func(c *app.Config) *time.Duration { return &c.EventRetention }},
	{"LOK8S_JOB_TIMEOUT", "JobTimeout", func(c *app.Config) *time.Duration { return &c.JobTimeout }},
	{"LOK8S_JOB_RESCUE_AFTER", "JobRescueAfter", func(c *app.Config) *time.Duration { return &c.JobRescueAfter }},
	{"LOK8S_SHUTDOWN_TIMEOUT", "ShutdownTimeout", func(c *app.Config) *time.Duration { return &c.ShutdownTimeout }},
	{"LOK8S_LEASE_DURATION", "Election.LeaseDuration", func(c *app.Config) *time.Duration { return &c.Election.LeaseDuration }},
	{"LOK8S_LEASE_RENEW_DEADLINE", "Election.RenewDeadline", func(c *app.Config) *time.Duration { return &c.Election.RenewDeadline }},
	{"LOK8S_LEASE_RETRY_PERIOD", "Election.RetryPeriod", func(c *app.Config) *time.Duration { return &c.Election.RetryPeriod }},
}

// fieldNames matches the field names app.Config.Validate's errors use.
var fieldNames = regexp.MustCompile(`\b(?:Election\.)?[A-Z][A-Za-z]+\b`)

// variableOf is the variable that sets each app.Config field.
var variableOf = func() map[string]string {
	m := map[string]string{"MgmtQPS": "LOK8S_MGMT_QPS"}
	for _, v := range intVars {
		m[v.field] = v.name
	}
	for _, v := range durationVars {
		m[v.field] = v.name
	}
	return m
}()

// loadConfig reads the configuration and reports every bad or missing
// variable at once, by name.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{Config: app.Config{
		Addr:           getenv("LOK8S_ADDR"),
		DatabaseURL:    getenv("DATABASE_URL"),
		AdminToken:     getenv("LOK8S_ADMIN_TOKEN"),
		MgmtKubeconfig: getenv("LOK8S_MGMT_KUBECONFIG"),
		MgmtInCluster:  getenv("KUBERNETES_SERVICE_HOST") != "",
		MgmtTenantRole: getenv("LOK8S_MGMT_TENANT_ROLE"),
		MetricsAddr:    getenv("LOK8S_METRICS_ADDR"),
		KubeconfigDir:  getenv("LOK8S_KUBECONFIG_DIR"),
		TemplatesDir:   getenv("LOK8S_TEMPLATES_DIR"),
		AddonsDir:      getenv("LOK8S_ADDONS_DIR"),
		AddonValuesDir: getenv("LOK8S_ADDON_VALUES_DIR"),
		ChartCacheDir:  or(getenv("LOK8S_CHART_CACHE_DIR"), defaultChartCache(getenv)),
		Workers:        defaultWorkers,
		EventRetention: defaultEventRetention,
		Election:       watch.Election{Namespace: getenv("LOK8S_LEASE_NAMESPACE"), Name: getenv("LOK8S_LEASE_NAME")},
	}, LogFormat: or(getenv("LOK8S_LOG_FORMAT"), "json")}
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
	for _, v := range intVars {
		if raw := getenv(v.name); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < v.min {
				bad(v.name, "must be a whole number ≥ %d, got %q", v.min, raw)
			}
			*v.dst(&c.Config) = n
		}
	}
	if raw := getenv("LOK8S_MGMT_QPS"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			bad("LOK8S_MGMT_QPS", "must be a whole number ≥ 1, got %q", raw)
		}
		c.MgmtQPS = float32(n)
	}
	defaults := app.Config{Workers: defaultWorkers, EventRetention: defaultEventRetention}.WithDefaults()
	for _, v := range durationVars {
		if raw := getenv(v.name); raw != "" {
			d, err := time.ParseDuration(raw)
			if err != nil || d <= 0 {
				bad(v.name, "must be a positive duration such as %v, got %q", *v.dst(&defaults), raw)
			}
			*v.dst(&c.Config) = d
		}
	}
	c.Tracing = tracingConfig(getenv, bad)
	// The packages' own rules, once the unset fields have their defaults:
	// their errors name app.Config's fields, named here by their variables
	// (a variable already refused is not named again).
	c.Config = c.WithDefaults()
	// Each request being worked holds a connection: a cap at or below the
	// requests' would leave the in-flight bound unreachable.
	if c.MaxConns <= c.MaxInFlight {
		bad("LOK8S_MAX_CONNS", "%d must be above LOK8S_MAX_IN_FLIGHT (%d)", c.MaxConns, c.MaxInFlight)
	}
	if err := c.Validate(); err != nil {
		for line := range strings.Lines(err.Error()) {
			line = fieldNames.ReplaceAllStringFunc(strings.TrimSpace(line), func(field string) string { return cmp.Or(variableOf[field], field) })
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(line, strings.SplitN(e.Error(), ":", 2)[0]) }) {
				errs = append(errs, errors.New(line))
			}
		}
	}
	if len(errs) > 0 {
		return config{}, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	return c, nil
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
		slog.Bool("mgmt_in_cluster", c.MgmtInCluster),
		slog.String("kubeconfig_dir", c.KubeconfigDir),
		slog.String("templates_dir", c.TemplatesDir),
		slog.String("addons_dir", c.AddonsDir),
		slog.String("addon_values_dir", c.AddonValuesDir),
		slog.String("chart_cache_dir", c.ChartCacheDir),
		slog.Int("workers", c.Workers),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Int("max_conns", c.MaxConns),
		slog.Float64("mgmt_qps", float64(c.MgmtQPS)),
		slog.Int("mgmt_burst", c.MgmtBurst),
		slog.String("mgmt_tenant_role", c.MgmtTenantRole),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Duration("check_interval", c.CheckInterval),
		slog.Duration("watched_check_interval", c.WatchedCheckInterval),
		slog.Duration("provision_timeout", c.ProvisionTimeout),
		slog.Duration("addon_timeout", c.AddonTimeout),
		slog.Duration("event_retention", c.EventRetention),
		slog.Int("job_max_attempts", c.JobMaxAttempts),
		slog.Duration("job_timeout", c.JobTimeout),
		slog.Duration("job_rescue_after", c.JobRescueAfter),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.String("lease", c.Election.Namespace+"/"+c.Election.Name),
		slog.Duration("lease_duration", c.Election.LeaseDuration),
		slog.Duration("lease_renew_deadline", c.Election.RenewDeadline),
		slog.Duration("lease_retry_period", c.Election.RetryPeriod),
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
