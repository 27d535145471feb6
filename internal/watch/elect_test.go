package watch

import (
	"strings"
	"testing"
	"time"
)

func TestElectionValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		e    Election
		bad  string // what the error names; "" for none
	}{
		{"defaults", Election{Identity: "pod-1"}.WithDefaults(), ""},
		{"short test timing", Election{Identity: "pod-1", LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}, ""},
		{"no identity", Election{}.WithDefaults(), "Identity"},
		{"lease no longer than the deadline", Election{Identity: "p", LeaseDuration: 10 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second}, "LeaseDuration"},
		{"deadline within a jittered retry", Election{Identity: "p", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 9 * time.Second}, "RenewDeadline"},
		{"negative", Election{Identity: "p", LeaseDuration: -1, RenewDeadline: 1, RetryPeriod: 1}, "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.e.Validate()
			switch {
			case tc.bad == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Fatalf("Validate: %v, want an error naming %s", err, tc.bad)
			}
		})
	}
}

func TestLeaseNamePerManagementCluster(t *testing.T) {
	t.Parallel()
	e := Election{}.WithDefaults()
	if got := e.LeaseName(""); got != "lok8s-watcher" {
		t.Errorf("default management cluster: %q", got)
	}
	if got := e.LeaseName("eu.example.com"); got != "lok8s-watcher-eu.example.com" {
		t.Errorf("named management cluster: %q", got)
	}
	if a, b := NewIdentity(), NewIdentity(); a == b || !strings.Contains(a, "-") {
		t.Errorf("identities %q and %q: want the host name and differing random suffixes", a, b)
	}
}
