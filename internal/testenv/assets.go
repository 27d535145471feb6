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
	// The script reports its progress (a build takes minutes) on stderr; show
	// it as it comes and keep it for the error message.
	dir, err := RunCacheScript(ctx, root, script, os.Stderr)
	if err != nil {
		return "", fmt.Errorf("testenv: %w\nset KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd, or %s", err, assetsHint)
	}
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("testenv: %s printed %q: %w; %s", script, dir, err, assetsHint)
	}
	return dir, nil
}

// RunCacheScript runs a script of the repository's hack/ (bash, in root)
// that builds something on a cache miss and prints its directory last; it
// returns that directory. The script's stderr goes to progress (when not
// nil) and, its end, into the error when the script fails.
func RunCacheScript(ctx context.Context, root, script string, progress io.Writer) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if progress != nil {
		cmd.Stderr = io.MultiWriter(progress, &stderr)
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s failed (%w):\n%s", script, err, tail(stderr.String(), 4000))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// CheckExecutables reports each of names that is not an executable file in
// dir.
func CheckExecutables(dir string, names ...string) error {
	var errs []error
	for _, name := range names {
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

func checkAssets(dir string) error { return CheckExecutables(dir, "kube-apiserver", "etcd") }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
