package jobs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"lok8s.dev/provisioner/internal/mgmt"
)

// TestClassify: one judge gives the failure record and whether the
// operation fails with it now (final) rather than being retried.
func TestClassify(t *testing.T) {
	t.Parallel()
	capi := func(reason string) error {
		return Permanent(coded(fmt.Errorf("CAPI reports the cluster failed: %s", reason), CodeProviderFailed, false, "read CAPI's reason", reason))
	}
	gr := schema.GroupResource{Group: mgmt.ClusterGVK.Group, Resource: "clusters"}
	for _, tc := range []struct {
		name        string
		err         error
		lastAttempt bool
		code        string
		retryable   bool
		final       bool
	}{
		{"credential rejected by the provider", capi("hcloud: Unauthorized: invalid token"), false, CodeCredentialsRejected, false, true},
		{"aws auth failure", capi("AuthFailure: AWS was not able to validate the provided access credentials"), false, CodeCredentialsRejected, false, true},
		{"quota", capi("resource_limit_exceeded: server limit reached"), false, CodeQuotaExceeded, false, true},
		{"provider rate limit", capi("RequestLimitExceeded: rate limit"), false, CodeQuotaExceeded, false, true},
		{"other provider failure", capi("server type cax21 is not available in fsn1"), false, CodeProviderFailed, false, true},
		{"management cluster down", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false, CodeManagementUnreachable, true, false},
		{"management cluster down, last attempt", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true, CodeManagementUnreachable, true, true},
		{"management cluster not configured", Permanent(fmt.Errorf("x: %w", mgmt.ErrUnknownCluster)), false, CodeManagementNotConfigured, false, true},
		{"management cluster not configured, unmarked", fmt.Errorf("x: %w", mgmt.ErrUnknownCluster), false, CodeManagementNotConfigured, false, true},
		{"throttled by the apiserver", apierrors.NewTooManyRequests("slow down", 1), false, CodeRateLimited, true, false},
		{"rendered object refused", apierrors.NewInvalid(schema.GroupKind{Kind: "Cluster"}, "x", nil), false, CodeTemplateInvalid, false, false},
		{"rendered object refused, written to the management cluster", refusal(apierrors.NewInvalid(schema.GroupKind{Kind: "Cluster"}, "x", nil)), false, CodeTemplateInvalid, false, true},
		{"bad request", fmt.Errorf("apply: %w", apierrors.NewBadRequest("no")), false, CodeTemplateInvalid, false, false},
		{"bad request, written to the management cluster", refusal(fmt.Errorf("apply: %w", apierrors.NewBadRequest("no"))), false, CodeTemplateInvalid, false, true},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no")), false, CodeManagementUnreachable, false, false},
		{"forbidden, written to the management cluster", refusal(apierrors.NewForbidden(gr, "x", errors.New("no"))), false, CodeManagementUnreachable, false, true},
		{"unauthorized", apierrors.NewUnauthorized("who"), false, CodeManagementUnreachable, false, false},
		{"unauthorized, written to the management cluster", refusal(apierrors.NewUnauthorized("who")), false, CodeManagementUnreachable, false, true},
		{"conflict is retried", apierrors.NewConflict(gr, "x", errors.New("changed")), false, CodeInternal, true, false},
		{"conflict written to the management cluster is retried", refusal(apierrors.NewConflict(gr, "x", errors.New("changed"))), false, CodeInternal, true, false},
		{"timeout", Permanent(coded(errors.New("timed out"), CodeTimeout, true, "check", "phase Provisioning")), false, CodeTimeout, true, true},
		{"unknown, will be retried", errors.New("something odd"), false, CodeInternal, true, false},
		{"unknown, last attempt", errors.New("something odd"), true, CodeInternal, false, true},
	} {
		f, final := classify("wait", tc.err, tc.lastAttempt)
		if f.Code != tc.code || f.Retryable != tc.retryable || final != tc.final || f.Remediation == "" || f.Message != tc.err.Error() || f.Reason == "" {
			t.Errorf("%s: %+v final %v, want code %s retryable %v final %v", tc.name, f, final, tc.code, tc.retryable, tc.final)
		}
	}
}

// A provider's machine failure (capi.MachineFailure) holds once its
// condition has lasted `for`: since the condition's lastTransitionTime
// (CAPH keeps it while it requeues a machine without host), else since the
// wait began.
func TestHeldFor(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	for _, tc := range []struct {
		name    string
		changed *time.Time
		started time.Time
		d       time.Duration
		want    bool
	}{
		{"held long enough", at(20 * time.Minute), now.Add(-time.Minute), 15 * time.Minute, true},
		{"just changed", at(2 * time.Minute), now.Add(-time.Hour), 15 * time.Minute, false},
		{"no transition time: since the wait began", nil, now.Add(-16 * time.Minute), 15 * time.Minute, true},
		{"no transition time, wait just began", nil, now.Add(-time.Minute), 15 * time.Minute, false},
		{"no for: at once", at(0), now, 0, true},
	} {
		if got := heldFor(mgmt.Condition{LastTransitionTime: tc.changed}, tc.started, now, tc.d); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
