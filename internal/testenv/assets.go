package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the main module, whose go.mod marks the repository root.
const ModulePath = "lok8s.dev/provisioner"

// RepoRoot walks up from the working directory (a test's package directory)
// to the go.mod of module ModulePath.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	for d := dir; ; {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modulePath(data) == ModulePath {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("testenv: no go.mod of module %s above %s", ModulePath, dir)
		}
		d = parent
	}
}

const assetsHint = "build them with `hack/test-assets.sh` (prints the directory to use as KUBEBUILDER_ASSETS; the first build takes minutes)"

// AssetsDir returns a directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS when set, otherwise the last line printed by
// hack/test-assets.sh, which builds them on a cache miss.
func AssetsDir(ctx context.Context, root string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if err := checkAssets(dir); err != nil {
			return "", fmt.Errorf("testenv: KUBEBUILDER_ASSETS=%s: %w; unset it to use hack/test-assets.sh, or %s", dir, err, assetsHint)
		}
		return dir, nil
	}
	script := filepath.Join(root, "hack", "test-assets.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("testenv: KUBEBUILDER_ASSETS is not set and %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	// The script reports its progress (a build takes minutes) on stderr; show
	// it as it comes and keep it for the error message.
	cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: %s failed (%w):\n%s\nset KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd, or %s",
			script, err, tail(stderr.String(), 4000), assetsHint)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("testenv: %s printed %q: %w; %s", script, dir, err, assetsHint)
	}
	return dir, nil
}

// modulePath returns the module path declared by go.mod contents.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

func checkAssets(dir string) error {
	var errs []error
	for _, name := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err != nil:
			errs = append(errs, err)
		case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("%s is not an executable file", filepath.Join(dir, name)))
		}
	}
	return errors.Join(errs...)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
