package jobs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"lok8s.dev/provisioner/internal/mgmt"
)

func TestDescribe(t *testing.T) {
	t.Parallel()
	capi := func(reason string) error {
		return Permanent(coded(fmt.Errorf("CAPI reports the cluster failed: %s", reason), CodeProviderFailed, false, "read CAPI's reason", reason))
	}
	gr := schema.GroupResource{Group: "cluster.x-k8s.io", Resource: "clusters"}
	for _, tc := range []struct {
		name      string
		err       error
		final     bool
		code      string
		retryable bool
	}{
		{"credential rejected by the provider", capi("hcloud: Unauthorized: invalid token"), true, CodeCredentialsRejected, false},
		{"aws auth failure", capi("AuthFailure: AWS was not able to validate the provided access credentials"), true, CodeCredentialsRejected, false},
		{"quota", capi("resource_limit_exceeded: server limit reached"), true, CodeQuotaExceeded, false},
		{"provider rate limit", capi("RequestLimitExceeded: rate limit"), true, CodeQuotaExceeded, false},
		{"other provider failure", capi("server type cax21 is not available in fsn1"), true, CodeProviderFailed, false},
		{"management cluster down", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false, CodeManagementUnreachable, true},
		{"management cluster not configured", Permanent(fmt.Errorf("x: %w", mgmt.ErrUnknownCluster)), true, CodeManagementNotConfigured, false},
		{"throttled by the apiserver", apierrors.NewTooManyRequests("slow down", 1), false, CodeRateLimited, true},
		{"rendered object refused", Permanent(apierrors.NewInvalid(schema.GroupKind{Kind: "Cluster"}, "x", nil)), true, CodeTemplateInvalid, false},
		{"forbidden", Permanent(apierrors.NewForbidden(gr, "x", errors.New("no"))), true, CodeManagementUnreachable, false},
		{"timeout", Permanent(coded(errors.New("timed out"), CodeTimeout, true, "check", "phase Provisioning")), true, CodeTimeout, true},
		{"unknown, will be retried", errors.New("something odd"), false, CodeInternal, true},
		{"unknown, final", errors.New("something odd"), true, CodeInternal, false},
	} {
		f := describe("wait", tc.err, tc.final)
		if f.Code != tc.code || f.Retryable != tc.retryable || f.Remediation == "" || f.Message != tc.err.Error() || f.Reason == "" {
			t.Errorf("%s: %+v, want code %s retryable %v", tc.name, f, tc.code, tc.retryable)
		}
	}
}
