package testenv_test

import (
	"os/exec"
	"strings"
	"testing"

	"lok8s.dev/provisioner/internal/gomod"
	"lok8s.dev/provisioner/internal/testenv"
)

// TestCAPIVersionIsGoMods: the Cluster API release whose CRDs the tests
// install (and whose controllers hack/capi-controllers.sh builds) is the
// one go.mod requires, which the hack/ scripts read.
func TestCAPIVersionIsGoMods(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), gomod.GoBin(), "list", "-m", "-f", "{{.Version}}", testenv.CAPIModule)
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -m %s: %v\n%s", testenv.CAPIModule, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != testenv.CAPIVersion {
		t.Fatalf("go.mod requires %s %s; testenv.CAPIVersion is %s", testenv.CAPIModule, got, testenv.CAPIVersion)
	}
}
