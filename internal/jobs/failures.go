package jobs

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"lok8s.dev/provisioner/internal/mgmt"
	"lok8s.dev/provisioner/internal/store"
)

// The failure codes a step's error carries (documented in openapi.yaml);
// provider manifests add their own (machineFailures: NoHostAvailable).
const (
	CodeCredentialsRejected     = "CredentialsRejected"
	CodeCredentialMissing       = "CredentialMissing"
	CodeQuotaExceeded           = "QuotaExceeded"
	CodeRateLimited             = "RateLimited"
	CodeManagementUnreachable   = "ManagementUnreachable"
	CodeManagementNotConfigured = "ManagementNotConfigured"
	CodeTemplateInvalid         = "TemplateInvalid"
	CodeProviderFailed          = "ProviderFailed"
	CodeAddonFailed             = "AddonFailed"
	CodeProviderNotInstalled    = "ProviderNotInstalled"
	CodeObjectNotOwned          = "ObjectNotOwned"
	CodeProviderUnsupported     = "ProviderVersionUnsupported"
	CodeTimeout                 = "Timeout"
	CodeInternal                = "Internal"
)

// codedError is a step error that already knows its failure record.
type codedError struct {
	err         error
	code        string
	retryable   bool
	remediation string
	reason      string
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// coded marks err with a failure code, whether a plain retry may work, a
// remediation and CAPI's or the provider's raw reason.
func coded(err error, code string, retryable bool, remediation, reason string) error {
	return &codedError{err: err, code: code, retryable: retryable, remediation: remediation, reason: reason}
}

var (
	credentialsPattern = regexp.MustCompile(`(?i)unauthori[sz]ed|invalid (api )?token|authfailure|authentication|invalidclienttokenid|signaturedoesnotmatch|credentials? (are|is) (invalid|rejected)`)
	quotaPattern       = regexp.MustCompile(`(?i)quota|limit ?exceeded|resource_limit_exceeded|insufficient ?capacity`)
	ratePattern        = regexp.MustCompile(`(?i)rate ?limit|throttl|too many requests`)
)

// classify is the one judge of a step's error: it returns the failure
// record people see and whether the operation fails with it now (final)
// instead of River retrying the job with backoff. Final are errors a step
// marked Permanent (among them the management cluster's refusals of a
// write, marked by refusal), an unknown management cluster, and any error
// on the job's last attempt.
func classify(step string, err error, lastAttempt bool) (f store.Failure, final bool) {
	f = store.Failure{Message: err.Error(), Code: CodeInternal, Remediation: "retry; if it fails again, report it with the operation id"}
	permanent := IsPermanent(err)
	var ce *codedError
	var netErr net.Error
	switch {
	case errors.As(err, &ce):
		f.Code, f.Retryable, f.Remediation, f.Reason = ce.code, ce.retryable, ce.remediation, ce.reason
	case errors.Is(err, mgmt.ErrUnknownCluster):
		f.Code, f.Retryable, permanent = CodeManagementNotConfigured, false, true
		f.Remediation = "configure the management cluster (LOK8S_MGMT_KUBECONFIG or LOK8S_KUBECONFIG_DIR), then retry"
	case apierrors.IsTooManyRequests(err):
		f.Code, f.Retryable, f.Remediation = CodeRateLimited, true, "the management cluster is throttling: retry in a minute"
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		f.Code, f.Retryable = CodeTemplateInvalid, false
		f.Remediation = "the management cluster refused a rendered object: check the provider's templates and the spec fields it names"
	case apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err):
		f.Code, f.Retryable = CodeManagementUnreachable, false
		f.Remediation = "the management cluster refused the service's identity: check its kubeconfig and RBAC, then retry"
	case errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host"):
		f.Code, f.Retryable, f.Remediation = CodeManagementUnreachable, true, "the management cluster did not answer: retry once it is reachable"
	}
	final = permanent || lastAttempt
	if f.Code == CodeInternal {
		f.Retryable = !final
	}
	if f.Code == CodeProviderFailed || f.Code == CodeInternal {
		// Name what a provider's own words say, when they say it.
		switch text := f.Message + " " + f.Reason; {
		case credentialsPattern.MatchString(text):
			f.Code, f.Retryable = CodeCredentialsRejected, false
			f.Remediation = "the provider rejected the credential: replace it with PUT /v1/credentials/{name}, then retry"
		case quotaPattern.MatchString(text):
			f.Code, f.Retryable = CodeQuotaExceeded, false
			f.Remediation = "the provider's quota is exhausted: raise it or use smaller or fewer machines, then retry"
		case ratePattern.MatchString(text):
			f.Code, f.Retryable, f.Remediation = CodeRateLimited, true, "the provider is rate limiting: retry in a few minutes"
		}
	}
	if f.Reason == "" {
		f.Reason = fmt.Sprintf("step %s: %s", step, f.Message)
	}
	return f, final
}

// refusal marks a write the management cluster will refuse again (an
// invalid object, or the service's identity refused) as permanent; other
// errors (unreachable, throttled, conflicts) are retried. Only the
// management cluster's writes are marked: elsewhere, a refused read (a
// workload cluster's rotated token, RBAC not yet propagated) is worth
// another attempt, and classify records each the same way.
func refusal(err error) error {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return Permanent(err)
	}
	return err
}
