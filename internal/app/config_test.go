package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"lok8s.dev/provisioner/internal/jobs"
	"lok8s.dev/provisioner/internal/watch"
)

// TestConfigDefaultsAndValidation: a zero Config takes each package's
// defaults and is valid; Serve refuses a bad one before it connects,
// naming Config's fields.
func TestConfigDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if c.JobTimeout != jobs.DefaultStepTimeout || c.JobRescueAfter != jobs.DefaultStepTimeout+jobs.DefaultRescueMargin ||
		c.JobMaxAttempts != jobs.DefaultMaxAttempts || c.CheckInterval != jobs.DefaultCheckInterval ||
		c.ProvisionTimeout != jobs.DefaultWaitTimeout || c.ShutdownTimeout != DefaultShutdownTimeout ||
		c.Election.LeaseDuration != watch.DefaultLeaseDuration {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the defaults are invalid: %v", err)
	}
	for i, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{JobTimeout: time.Hour, JobRescueAfter: time.Minute}, []string{"JobRescueAfter (1m0s) must be longer than JobTimeout (1h0m0s)"}},
		{Config{JobMaxAttempts: -1, Workers: -1}, []string{"JobMaxAttempts", "Workers"}},
		{Config{Election: watch.Election{LeaseDuration: time.Second}}, []string{"Election.LeaseDuration (1s) must be longer than Election.RenewDeadline"}},
		{Config{ShutdownTimeout: -time.Second}, []string{"ShutdownTimeout must be positive"}},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // without the check, Serve fails to connect instead
		tc.cfg.DatabaseURL = "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
		err := Serve(ctx, tc.cfg, nil)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("case %d: Serve = %v, want an error saying %q", i, err, want)
			}
		}
	}
}
