package store_test

import (
	"bufio"
	"bytes"
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// databasePackages may import pgx: the store (schema, SQL, transactions),
// jobs (River's pgx driver: its client inserts jobs in a pgx.Tx), events and
// readmodel (each LISTENs on a connection of its own), and dbtest (test
// databases). Every other package reaches Postgres through them.
var databasePackages = map[string]bool{
	module + "/internal/store":     true,
	module + "/internal/jobs":      true,
	module + "/internal/events":    true,
	module + "/internal/readmodel": true,
	module + "/internal/dbtest":    true,
}

const (
	module  = "lok8s.dev/provisioner"
	pgxPath = "github.com/jackc/pgx/"
)

// TestPgxStaysInTheDatabasePackages: outside databasePackages no non-test
// file imports pgx, and no exported declaration has a pgx type in it,
// directly or through a type of the module it is built from (as
// store.EnqueueFunc once carried pgx.Tx into api.Config): callers of the
// store see store.Tx, never the driver's transaction.
func TestPgxStaysInTheDatabasePackages(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles every package of the module")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The export data of every package and its dependencies, and each
	// module package's non-test imports.
	cmd := exec.Command("go", "list", "-e", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}\t{{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	exports := map[string]string{}
	var own []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 3)
		if len(f) != 3 {
			t.Fatalf("go list line %q", sc.Text())
		}
		exports[f[0]] = f[1]
		if f[0] != module && !strings.HasPrefix(f[0], module+"/") || databasePackages[f[0]] {
			continue
		}
		own = append(own, f[0])
		for imp := range strings.FieldsSeq(f[2]) {
			if strings.HasPrefix(imp, pgxPath) {
				t.Errorf("%s imports %s: only %v may", f[0], imp, keys(databasePackages))
			}
		}
	}
	if len(own) < 10 {
		t.Fatalf("go list found only %v", own)
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		if exports[path] == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(exports[path])
	})
	for _, path := range own {
		if exports[path] == "" {
			continue // test files only
		}
		pkg, err := imp.Import(path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		for _, name := range pkg.Scope().Names() {
			obj := pkg.Scope().Lookup(name)
			if !obj.Exported() {
				continue
			}
			w := walker{seen: map[types.Type]bool{}}
			w.walk(obj.Type())
			if tn, ok := obj.(*types.TypeName); ok {
				if named, ok := tn.Type().(*types.Named); ok {
					for m := range named.Methods() {
						if m.Exported() {
							w.walk(m.Type())
						}
					}
				}
			}
			if w.found != "" {
				t.Errorf("%s.%s has a pgx type in it: %s", path, name, w.found)
			}
		}
	}
}

// walker looks for a pgx type in a type, through its elements, exported
// fields, parameters and results and, for the module's named types, their
// underlying types (not their methods: each package's own exported methods
// are checked with it).
type walker struct {
	seen  map[types.Type]bool
	found string
}

func (w *walker) walk(t types.Type) {
	if w.found != "" || t == nil || w.seen[t] {
		return
	}
	w.seen[t] = true
	switch t := t.(type) {
	case *types.Named:
		obj := t.Obj()
		if obj.Pkg() != nil && strings.HasPrefix(obj.Pkg().Path(), pgxPath) {
			w.found = t.String()
			return
		}
		for a := range t.TypeArgs().Types() {
			w.walk(a)
		}
		if obj.Pkg() != nil && (obj.Pkg().Path() == module || strings.HasPrefix(obj.Pkg().Path(), module+"/")) {
			w.walk(t.Underlying())
			if w.found != "" && !strings.Contains(w.found, " in ") {
				w.found += " in " + t.String()
			}
		}
	case *types.Alias:
		w.walk(types.Unalias(t))
	case *types.Pointer:
		w.walk(t.Elem())
	case *types.Slice:
		w.walk(t.Elem())
	case *types.Array:
		w.walk(t.Elem())
	case *types.Chan:
		w.walk(t.Elem())
	case *types.Map:
		w.walk(t.Key())
		w.walk(t.Elem())
	case *types.Signature:
		w.walk(t.Params())
		w.walk(t.Results())
	case *types.Tuple:
		for v := range t.Variables() {
			w.walk(v.Type())
		}
	case *types.Struct:
		for f := range t.Fields() {
			if f.Exported() {
				w.walk(f.Type())
			}
		}
	case *types.Interface:
		for m := range t.ExplicitMethods() {
			if m.Exported() {
				w.walk(m.Type())
			}
		}
		for e := range t.EmbeddedTypes() {
			w.walk(e)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, strings.TrimPrefix(k, module+"/"))
	}
	sort.Strings(out)
	return out
}
