// Package addonstest serves Helm charts from a local chart repository for
// tests: charts packaged with Helm's own action.Package, an index.yaml made
// by repo.IndexDirectory, served over HTTP on loopback, so the real
// download and install code runs without the internet.
package addonstest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"

	"helm.sh/helm/v4/pkg/action"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// Chart is a chart source directory packaged at Version.
type Chart struct {
	Dir     string
	Version string
}

// Repo is a running chart repository.
type Repo struct {
	URL      string
	server   *httptest.Server
	requests sync.Map // path -> *atomic.Int64
}

// Count returns how many requests asked for path (/index.yaml, /probe-0.1.0.tgz).
func (r *Repo) Count(path string) int64 {
	if v, ok := r.requests.Load(path); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// Close stops the server.
func (r *Repo) Close() { r.server.Close() }

// Serve packages charts into dir, indexes them and serves dir.
func Serve(dir string, charts ...Chart) (*Repo, error) {
	for _, c := range charts {
		p := action.NewPackage()
		p.Destination, p.Version = dir, c.Version
		if _, err := p.Run(c.Dir, nil); err != nil {
			return nil, fmt.Errorf("package %s %s: %w", c.Dir, c.Version, err)
		}
	}
	index, err := repo.IndexDirectory(dir, "")
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", dir, err)
	}
	if err := index.WriteFile(filepath.Join(dir, "index.yaml"), 0o644); err != nil {
		return nil, err
	}
	r := &Repo{}
	files := http.FileServer(http.Dir(dir))
	r.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v, _ := r.requests.LoadOrStore(req.URL.Path, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		files.ServeHTTP(w, req)
	}))
	r.URL = r.server.URL
	return r, nil
}
