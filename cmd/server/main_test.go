package main

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/api"
	"lok8s.dev/provisioner/internal/app"
	"lok8s.dev/provisioner/internal/dbtest"
	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/seal"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadConfigNamesEveryBadVariable(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(env(map[string]string{
		"LOK8S_ENCRYPTION_KEY":      "c2hvcnQ=",
		"LOK8S_ENCRYPTION_OLD_KEYS": "!!",
		"LOK8S_MGMT_KUBECONFIG":     "/does/not/exist",
		"LOK8S_TEMPLATES_DIR":       "/does/not/exist",
		"LOK8S_LOG_FORMAT":          "xml",
		"LOK8S_LOG_LEVEL":           "loud",
		"LOK8S_WORKERS":             "-2",
		"LOK8S_EVENT_RETENTION":     "a week",
		"LOK8S_LEASE_RETRY_PERIOD":  "soon",
		"LOK8S_MAX_CONNS":           "100", // not above LOK8S_MAX_IN_FLIGHT's 256
	}))
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, name := range []string{"LOK8S_ADMIN_TOKEN", "LOK8S_ENCRYPTION_KEY", "LOK8S_ENCRYPTION_OLD_KEYS", "LOK8S_MGMT_KUBECONFIG",
		"LOK8S_TEMPLATES_DIR", "LOK8S_LOG_FORMAT", "LOK8S_LOG_LEVEL", "LOK8S_WORKERS", "LOK8S_EVENT_RETENTION", "LOK8S_LEASE_RETRY_PERIOD",
		"LOK8S_MAX_CONNS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	if _, err := loadConfig(env(map[string]string{"LOK8S_ADMIN_TOKEN": "short", "LOK8S_ENCRYPTION_KEY": seal.NewKey()})); err == nil ||
		!strings.Contains(err.Error(), "at least 24") {
		t.Errorf("short admin token: %v", err)
	}
	// A lease that lapses before its holder gives up renewing would let
	// two replicas lead at once.
	for _, tc := range []struct{ duration, deadline, retry, bad string }{
		{"10s", "10s", "2s", "LOK8S_LEASE_DURATION"}, {"15s", "10s", "9s", "LOK8S_LEASE_RETRY_PERIOD"},
	} {
		_, err := loadConfig(env(map[string]string{"LOK8S_ADMIN_TOKEN": "admin-token-that-is-long-enough", "LOK8S_ENCRYPTION_KEY": seal.NewKey(),
			"LOK8S_LEASE_DURATION": tc.duration, "LOK8S_LEASE_RENEW_DEADLINE": tc.deadline, "LOK8S_LEASE_RETRY_PERIOD": tc.retry}))
		if err == nil || !strings.Contains(err.Error(), tc.bad) {
			t.Errorf("lease %s, renew deadline %s, retry %s: %v", tc.duration, tc.deadline, tc.retry, err)
		}
	}
	cfg, err := loadConfig(env(map[string]string{"LOK8S_ADMIN_TOKEN": "admin-token-that-is-long-enough", "LOK8S_ENCRYPTION_KEY": seal.NewKey()}))
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Election; e.Namespace != "lok8s-system" || e.Name != "lok8s-watcher" ||
		e.LeaseDuration != 15*time.Second || e.RenewDeadline != 10*time.Second || e.RetryPeriod != 2*time.Second {
		t.Errorf("default election: %+v", e)
	}
}

// TestLoadConfigFromEnvironment: each variable sets its field, unset ones
// take the default of the package that owns them, and a bad value, alone
// or against another, is refused naming its variable.
func TestLoadConfigFromEnvironment(t *testing.T) {
	t.Parallel()
	base := map[string]string{"LOK8S_ADMIN_TOKEN": "admin-token-that-is-long-enough", "LOK8S_ENCRYPTION_KEY": seal.NewKey()}
	cases := []struct {
		name string
		vars map[string]string
		// check the configuration loaded, or want the error to name each of bad.
		check func(t *testing.T, c config)
		bad   []string
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			want := []struct {
				name      string
				got, want any
			}{
				{"addr", c.Addr, app.DefaultAddr},
				{"workers", c.Workers, 10},
				{"check interval", c.CheckInterval, jobs.DefaultCheckInterval},
				{"watched check interval", c.WatchedCheckInterval, jobs.DefaultWatchedCheckInterval},
				{"provision timeout", c.ProvisionTimeout, jobs.DefaultWaitTimeout},
				{"job max attempts", c.JobMaxAttempts, jobs.DefaultMaxAttempts},
				{"job timeout", c.JobTimeout, jobs.DefaultStepTimeout},
				{"job rescue after", c.JobRescueAfter, jobs.DefaultStepTimeout + jobs.DefaultRescueMargin},
				{"shutdown timeout", c.ShutdownTimeout, app.DefaultShutdownTimeout},
				{"event retention", c.EventRetention, 168 * time.Hour},
				{"max in flight", c.MaxInFlight, api.DefaultMaxInFlight},
				{"mgmt qps", c.MgmtQPS, float32(mgmt.DefaultQPS)},
				{"in cluster", c.MgmtInCluster, false},
			}
			for _, w := range want {
				if w.got != w.want {
					t.Errorf("%s = %v, want %v", w.name, w.got, w.want)
				}
			}
		}},
		{name: "River tuned", vars: map[string]string{"LOK8S_JOB_MAX_ATTEMPTS": "3", "LOK8S_JOB_TIMEOUT": "1h", "LOK8S_JOB_RESCUE_AFTER": "90m"},
			check: func(t *testing.T, c config) {
				if c.JobMaxAttempts != 3 || c.JobTimeout != time.Hour || c.JobRescueAfter != 90*time.Minute {
					t.Errorf("River: %d attempts, timeout %v, rescue after %v", c.JobMaxAttempts, c.JobTimeout, c.JobRescueAfter)
				}
			}},
		{name: "rescue follows a longer timeout", vars: map[string]string{"LOK8S_JOB_TIMEOUT": "1h"},
			check: func(t *testing.T, c config) {
				if c.JobRescueAfter != time.Hour+jobs.DefaultRescueMargin {
					t.Errorf("rescue after %v with a 1h timeout", c.JobRescueAfter)
				}
			}},
		{name: "others set", vars: map[string]string{"LOK8S_CHECK_INTERVAL": "5s", "LOK8S_SHUTDOWN_TIMEOUT": "40s", "LOK8S_WORKERS": "0",
			"LOK8S_MGMT_QPS": "200", "KUBERNETES_SERVICE_HOST": "10.0.0.1", "LOK8S_LEASE_NAME": "mine"},
			check: func(t *testing.T, c config) {
				if c.CheckInterval != 5*time.Second || c.ShutdownTimeout != 40*time.Second || c.Workers != 0 || c.MgmtQPS != 200 ||
					!c.MgmtInCluster || c.Election.Name != "mine" {
					t.Errorf("check %v, shutdown %v, workers %d, QPS %v, in cluster %v, lease %q",
						c.CheckInterval, c.ShutdownTimeout, c.Workers, c.MgmtQPS, c.MgmtInCluster, c.Election.Name)
				}
			}},
		{name: "attempts not a number", vars: map[string]string{"LOK8S_JOB_MAX_ATTEMPTS": "many"}, bad: []string{"LOK8S_JOB_MAX_ATTEMPTS"}},
		{name: "no attempts", vars: map[string]string{"LOK8S_JOB_MAX_ATTEMPTS": "0"}, bad: []string{"LOK8S_JOB_MAX_ATTEMPTS"}},
		{name: "timeout not a duration", vars: map[string]string{"LOK8S_JOB_TIMEOUT": "15"}, bad: []string{"LOK8S_JOB_TIMEOUT"}},
		{name: "negative rescue", vars: map[string]string{"LOK8S_JOB_RESCUE_AFTER": "-1m"}, bad: []string{"LOK8S_JOB_RESCUE_AFTER"}},
		{name: "rescue before the timeout", vars: map[string]string{"LOK8S_JOB_TIMEOUT": "30m", "LOK8S_JOB_RESCUE_AFTER": "20m"},
			bad: []string{"LOK8S_JOB_RESCUE_AFTER (20m0s) must be longer than LOK8S_JOB_TIMEOUT (30m0s)"}},
		{name: "rescue before the default timeout", vars: map[string]string{"LOK8S_JOB_RESCUE_AFTER": "10m"},
			bad: []string{"LOK8S_JOB_RESCUE_AFTER (10m0s) must be longer than LOK8S_JOB_TIMEOUT (15m0s)"}},
		{name: "shutdown zero", vars: map[string]string{"LOK8S_SHUTDOWN_TIMEOUT": "0s"}, bad: []string{"LOK8S_SHUTDOWN_TIMEOUT"}},
		{name: "conns under in-flight", vars: map[string]string{"LOK8S_MAX_IN_FLIGHT": "50", "LOK8S_MAX_CONNS": "40"},
			bad: []string{"LOK8S_MAX_CONNS: 40 must be above LOK8S_MAX_IN_FLIGHT (50)"}},
		{name: "conns under the default in-flight", vars: map[string]string{"LOK8S_MAX_CONNS": "100"},
			bad: []string{"LOK8S_MAX_CONNS: 100 must be above LOK8S_MAX_IN_FLIGHT (256)"}},
		{name: "lease shorter than its deadline", vars: map[string]string{"LOK8S_LEASE_DURATION": "10s"},
			bad: []string{"LOK8S_LEASE_DURATION (10s) must be longer than LOK8S_LEASE_RENEW_DEADLINE (10s)"}},
		{name: "qps", vars: map[string]string{"LOK8S_MGMT_QPS": "1.5"}, bad: []string{"LOK8S_MGMT_QPS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vars := maps.Clone(base)
			maps.Copy(vars, tc.vars)
			c, err := loadConfig(env(vars))
			if tc.bad == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("bad configuration accepted")
			}
			for _, want := range tc.bad {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
		})
	}
}

func TestSoftMemoryLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		env        map[string]string
		files      map[string]string
		want       int64
		wantSource string
	}{
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "100MiB"}, map[string]string{"/sys/fs/cgroup/memory.max": "536870912\n"}, 0, "GOMEMLIMIT"},
		{"cgroup v2 limit", nil, map[string]string{"/sys/fs/cgroup/memory.max": "536870912\n"}, 483183820, "/sys/fs/cgroup/memory.max"},
		{"cgroup v2 without a limit", nil, map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0, ""},
		{"cgroup v1 limit", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n"}, 966367641, "/sys/fs/cgroup/memory/memory.limit_in_bytes"},
		{"cgroup v1 without a limit", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, ""},
		{"no cgroup", nil, nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			read := func(path string) ([]byte, error) {
				if data, ok := tc.files[path]; ok {
					return []byte(data), nil
				}
				return nil, os.ErrNotExist
			}
			got, source := softMemoryLimit(env(tc.env), read)
			if got != tc.want || source != tc.wantSource {
				t.Fatalf("got %d from %q, want %d from %q", got, source, tc.want, tc.wantSource)
			}
		})
	}
}

func TestConfigLogValueHidesSecrets(t *testing.T) {
	t.Parallel()
	key := seal.NewKey()
	cfg, err := loadConfig(env(map[string]string{
		"LOK8S_ADMIN_TOKEN": "admin-token-that-is-long-enough", "LOK8S_ENCRYPTION_KEY": key,
		"DATABASE_URL": "postgres://u:hunter2@db:5432/lok8s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	logged := cfg.LogValue().String()
	for _, secret := range []string{"admin-token-that-is-long-enough", key, "hunter2"} {
		if strings.Contains(logged, secret) {
			t.Errorf("logged config contains a secret: %s", logged)
		}
	}
	if !strings.Contains(logged, "postgres://u:[redacted]@db:5432/lok8s") {
		t.Errorf("database url not shown redacted: %s", logged)
	}
}

// TestServeAndShutDown runs the real program on :0 against a fresh
// database, talks to it, then stops it as SIGTERM would; with
// OTEL_EXPORTER_OTLP_ENDPOINT set, the request's span reaches the OTLP
// receiver (a stand-in recording what it is sent) by the end of shutdown.
func TestServeAndShutDown(t *testing.T) {
	t.Parallel()
	var exports atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			exports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer receiver.Close()
	vars := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.URL,
		"DATABASE_URL":                dbtest.New(t),
		"LOK8S_ADDR":                  "127.0.0.1:0",
		"LOK8S_ADMIN_TOKEN":           "admin-token-that-is-long-enough",
		"LOK8S_ENCRYPTION_KEY":        seal.NewKey(),
		"LOK8S_LOG_LEVEL":             "warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env(vars), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("server exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/clusters", nil)
	req.Header.Set("Authorization", "Bearer "+vars["LOK8S_ADMIN_TOKEN"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"items":[]`) {
		t.Fatalf("GET /v1/clusters with the admin token: %d %s", resp.StatusCode, body)
	}
	if err := healthcheck(context.Background(), addr); err != nil {
		t.Fatalf("healthcheck: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("server did not stop")
	}
	if err := healthcheck(context.Background(), addr); err == nil {
		t.Fatal("healthcheck passes after shutdown")
	}
	if exports.Load() == 0 {
		t.Fatal("no spans exported to OTEL_EXPORTER_OTLP_ENDPOINT")
	}
}

func TestMigrateCommandAndUnknownCommand(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"DATABASE_URL":         dbtest.New(t),
		"LOK8S_ADMIN_TOKEN":    "admin-token-that-is-long-enough",
		"LOK8S_ENCRYPTION_KEY": seal.NewKey(),
		"LOK8S_LOG_LEVEL":      "warn",
	}
	if err := run(context.Background(), []string{"migrate"}, env(vars), nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := run(context.Background(), []string{"frobnicate"}, env(vars), nil); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	vars["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	if err := run(context.Background(), []string{"migrate"}, env(vars), nil); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("unreachable database: %v", err)
	}
}

// TestRedactURL: no form of a Postgres connection string's password
// reaches the start-up log.
func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://lok8s:s3cret@db:5432/lok8s?sslmode=require", "postgres://lok8s:[redacted]@db:5432/lok8s?sslmode=require"},
		{"postgres://lok8s@db/lok8s?password=s3cret&sslmode=disable", "postgres://lok8s@db/lok8s?password=[redacted]&sslmode=disable"},
		{"postgres://db/lok8s?user=x&sslpassword=s3cret", "postgres://db/lok8s?sslpassword=[redacted]&user=x"},
		{"postgres://127.0.0.1:5432/lok8s", "postgres://127.0.0.1:5432/lok8s"},
		{"host=db user=lok8s password=s3cret dbname=lok8s", "host=db user=lok8s password=[redacted] dbname=lok8s"},
		{`host=db password = 'it\'s s3cret' dbname=lok8s`, "host=db password=[redacted] dbname=lok8s"},
		{"host=db sslpassword='a b s3cret'", "host=db sslpassword=[redacted]"},
	} {
		got := redactURL(tc.in)
		if got != tc.want || strings.Contains(got, "s3cret") {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTracingFromOTELVariables: tracing is off unless an OTLP endpoint is
// set; the signal's own endpoint is used as is, the base one gets
// /v1/traces for http/protobuf; bad values are named.
func TestTracingFromOTELVariables(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		vars        map[string]string
		endpoint    string
		protocol    string
		badVariable string
	}{
		{name: "none set: off", vars: map[string]string{}},
		{name: "base endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			endpoint: "http://collector:4318/v1/traces", protocol: "http/protobuf"},
		{name: "traces endpoint as is", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/custom/traces"},
			endpoint: "https://collector/custom/traces", protocol: "http/protobuf"},
		{name: "grpc", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			endpoint: "http://collector:4317", protocol: "grpc"},
		{name: "disabled", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "bad protocol", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
			badVariable: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{name: "bad endpoint", vars: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"},
			badVariable: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"LOK8S_ADMIN_TOKEN": "admin-token-that-is-long-enough", "LOK8S_ENCRYPTION_KEY": seal.NewKey()}
			for k, v := range c.vars {
				vars[k] = v
			}
			cfg, err := loadConfig(env(vars))
			if c.badVariable != "" {
				if err == nil || !strings.Contains(err.Error(), c.badVariable) {
					t.Fatalf("error %v does not name %s", err, c.badVariable)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Tracing.EndpointURL != c.endpoint || cfg.Tracing.Enabled() != (c.endpoint != "") ||
				(c.endpoint != "" && cfg.Tracing.Protocol != c.protocol) {
				t.Fatalf("tracing config %+v, want endpoint %q protocol %q", cfg.Tracing, c.endpoint, c.protocol)
			}
		})
	}
}
