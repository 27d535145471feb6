package addons

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/getter"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// ErrChartNotFound: the repository's index has no such chart version.
var ErrChartNotFound = errors.New("chart not found")

// fetchChart returns the chart c, from the cache directory when it was
// downloaded before, else through the repository's index.yaml (Helm's repo
// machinery): the index entry's URL is downloaded, checked against the
// index's digest, and kept in the cache as
// <cache>/charts/<sha256(repository)[:16]>/<name>-<version>.tgz.
func (i *Installer) fetchChart(ctx context.Context, c Chart) (*chartv2.Chart, error) {
	sum := sha256.Sum256([]byte(strings.TrimSuffix(c.Repository, "/")))
	dir := filepath.Join(i.cfg.CacheDir, "charts", hex.EncodeToString(sum[:8]))
	file := filepath.Join(dir, c.Name+"-"+c.Version+".tgz")
	if data, err := os.ReadFile(file); err == nil {
		ch, err := loader.LoadArchive(bytes.NewReader(data))
		if err == nil {
			return ch, nil
		}
		i.cfg.Logger.Warn("addons: ignoring unreadable cached chart", "file", file, "error", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	getters := getter.Getters(getter.WithTimeout(i.cfg.DownloadTimeout))
	cr, err := repo.NewChartRepository(&repo.Entry{Name: hex.EncodeToString(sum[:8]), URL: c.Repository}, getters)
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w", c.Repository, err)
	}
	cr.CachePath = filepath.Join(i.cfg.CacheDir, "repository")
	indexFile, err := cr.DownloadIndexFile()
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w", c.Repository, err)
	}
	index, err := repo.LoadIndexFile(indexFile)
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: index: %w", c.Repository, err)
	}
	cv, err := index.Get(c.Name, c.Version)
	if err != nil {
		return nil, fmt.Errorf("%w: %s version %s in %s: %w", ErrChartNotFound, c.Name, c.Version, c.Repository, err)
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("%w: %s version %s in %s has no download URL", ErrChartNotFound, c.Name, c.Version, c.Repository)
	}
	chartURL, err := repo.ResolveReferenceURL(c.Repository, cv.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c, err)
	}
	g, err := getters.ByScheme(schemeOf(chartURL))
	if err != nil {
		return nil, fmt.Errorf("chart %s: %s: %w", c, chartURL, err)
	}
	buf, err := g.Get(chartURL, getter.WithURL(c.Repository))
	if err != nil {
		return nil, fmt.Errorf("downloading chart %s: %w", chartURL, err)
	}
	data := buf.Bytes()
	if want := strings.TrimPrefix(cv.Digest, "sha256:"); want != "" {
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != want {
			return nil, fmt.Errorf("chart %s: %s does not match the index's digest %s", c, chartURL, cv.Digest)
		}
	}
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c, err)
	}
	if ch.Metadata == nil || ch.Metadata.Name != c.Name || strings.TrimPrefix(ch.Metadata.Version, "v") != strings.TrimPrefix(c.Version, "v") {
		return nil, fmt.Errorf("chart %s: %s holds another chart", c, chartURL)
	}
	if err := writeAtomic(dir, file, data); err != nil {
		// The chart is good; only the cache failed.
		i.cfg.Logger.Warn("addons: could not cache chart", "file", file, "error", err)
	}
	return ch, nil
}

func schemeOf(u string) string {
	if s, _, ok := strings.Cut(u, "://"); ok {
		return s
	}
	return ""
}

func writeAtomic(dir, file string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".chart-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
