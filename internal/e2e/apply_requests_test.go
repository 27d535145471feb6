package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// maxApplyRequestsPerCluster is how many requests to the management
// apiserver provisioning a cluster may take until its objects are applied
// (the seed spec: the namespace's check, its credential's Secret, 16
// objects), discovery left out, once the tenant's namespace and Secret
// exist. It was 35 when every object was read before it was applied
// (docs/performance.md); a create-only apply needs no read: 19.
const maxApplyRequestsPerCluster = 19.5

// maxDiscoveryRequests bounds discovery, a cost per process and
// management cluster, not per cluster.
const maxDiscoveryRequests = 12

// TestApplyRequestsPerCluster counts the requests the service makes to
// the management apiserver (through its transport; watches left out)
// from the first POST until every cluster of a tenant is applied, and
// fails when a cluster costs more than maxApplyRequestsPerCluster.
func TestApplyRequestsPerCluster(t *testing.T) {
	t.Parallel()
	const clusters = 4
	reqs := newBenchRequests(2)
	s := startService(t, options{wrapTransport: reqs.wrap})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	seed := seedSpecWithoutAddons(t)
	// The tenant's first cluster makes its namespace and credential
	// Secret, and the watcher starts: a cost per tenant, not per cluster.
	s.submit(benchWithName(seed, "first"))
	s.waitStatus("first", 90*time.Second, func(st map[string]any) bool { return stepState(st, "apply") == "succeeded" })
	reqs.phase.Store(1)
	names := make([]string, clusters)
	for i := range names {
		names[i] = fmt.Sprintf("prod-%d", i)
		s.submit(benchWithName(seed, names[i]))
	}
	for _, name := range names {
		s.waitStatus(name, 90*time.Second, func(st map[string]any) bool { return stepState(st, "apply") == "succeeded" })
	}
	counts, _ := reqs.phaseCounts(1)
	total := 0
	for kind, n := range counts {
		if !strings.HasPrefix(kind, "watch ") && kind != "discovery" {
			total += n
		}
	}
	perCluster := float64(total) / clusters
	t.Logf("%.2f apiserver requests per cluster until applied, and %d of discovery:\n%s",
		perCluster, counts["discovery"], benchKinds(reqs, counts, clusters, false))
	if perCluster > maxApplyRequestsPerCluster {
		t.Errorf("%.2f apiserver requests per cluster until applied; at most %.0f", perCluster, maxApplyRequestsPerCluster)
	}
	if counts["discovery"] > maxDiscoveryRequests {
		t.Errorf("%d discovery requests for %d clusters; at most %d", counts["discovery"], clusters, maxDiscoveryRequests)
	}
}
