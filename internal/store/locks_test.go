package store_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lok8s.dev/provisioner/internal/store"
	"lok8s.dev/provisioner/migrations"
)

// TestAdvisoryLocksAreDeclared: every advisory lock id the migrations' SQL
// takes is one of store's Lock* constants, and no Go code (service or
// tests) writes one as a number: it passes the constant.
func TestAdvisoryLocksAreDeclared(t *testing.T) {
	t.Parallel()
	declared := []int64{store.LockMigrations, store.LockTestTemplate, store.LockEventsCommitOrder}
	literal := regexp.MustCompile(`pg_advisory_\w+\(\s*(\d+)\s*\)`)
	sql, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, name := range sql {
		b, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			found++
			if id, _ := strconv.ParseInt(m[1], 10, 64); !slices.Contains(declared, id) {
				t.Errorf("migrations/%s takes advisory lock %d, which store does not declare", name, id)
			}
		}
	}
	if found == 0 {
		t.Fatal("no advisory lock found in the migrations: the pattern no longer matches them")
	}
	root := filepath.Join("..", "..")
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range literal.FindAllString(string(b), -1) {
				t.Errorf("%s: %s: pass a store.Lock* constant instead", path, m)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
