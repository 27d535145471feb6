// Package gomod finds Go modules in the module cache (downloading them
// through the module proxy if needed) with `go mod download -json`, run
// outside any module so that no go.mod or go.sum is touched. Tests read
// CRDs from Cluster API's and its providers' modules this way, and the
// local management cluster reads their CRDs and webhook manifests.
package gomod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Dirs returns the module-cache directory of each module@version query,
// keyed by the query, or one error naming every module it could not get.
func Dirs(ctx context.Context, queries ...string) (map[string]string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, GoBin(), append([]string{"mod", "download", "-json"}, queries...)...)
	cmd.Dir = os.TempDir()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// -mod=readonly: never edit a go.mod/go.sum; GOWORK=off: no workspace.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	runErr := cmd.Run()
	// On failure go still prints each module's JSON with its Error.
	dirs := map[string]string{}
	var errs []error
	dec := json.NewDecoder(&stdout)
	for {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			errs = append(errs, fmt.Errorf("decoding go mod download output: %w", err))
			break
		}
		if m.Error != "" {
			errs = append(errs, errors.New(m.Error))
			continue
		}
		dirs[m.Path+"@"+m.Version] = m.Dir
	}
	for _, q := range queries {
		if dirs[q] == "" && len(errs) == 0 {
			errs = append(errs, fmt.Errorf("go mod download did not report %s", q))
		}
	}
	if runErr != nil {
		errs = append(errs, fmt.Errorf("%w: %s", runErr, strings.TrimSpace(stderr.String())))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("locating modules %v: %w", queries, errors.Join(errs...))
	}
	return dirs, nil
}

// GoBin is $GOROOT/bin/go when GOROOT is set, else the go on PATH.
func GoBin() string {
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	info, err := os.Stat(p)
	return err == nil && !info.IsDir()
}
