package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// envReaders are the files below internal/ that may read the environment,
// none of them part of the server (the test checks): dbtest and testenv
// find the test database and kube-apiserver (LOK8S_TEST_DATABASE_URL,
// KUBEBUILDER_ASSETS) for tests; gomod finds the go command by GOROOT, as
// the go command itself does, for tests and the development cluster.
var envReaders = map[string]string{
	"internal/dbtest/dbtest.go":  "lok8s.dev/provisioner/internal/dbtest",
	"internal/testenv/assets.go": "lok8s.dev/provisioner/internal/testenv",
	"internal/gomod/gomod.go":    "lok8s.dev/provisioner/internal/gomod",
}

// TestEnvironmentReadInCmdOnly: below internal/ no non-test file reads an
// environment variable (os.Getenv, os.LookupEnv, os.ExpandEnv,
// syscall.Getenv), except envReaders, which the server does not import:
// the service's configuration comes from cmd/server, through app.Config.
func TestEnvironmentReadInCmdOnly(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	readers := map[string]bool{"os.Getenv": true, "os.LookupEnv": true, "os.ExpandEnv": true, "syscall.Getenv": true}
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		names := map[string]string{} // local name -> import path, of os and syscall
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p != "os" && p != "syscall" {
				continue
			}
			name := p
			if imp.Name != nil {
				name = imp.Name.Name
			}
			names[name] = p
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && readers[names[x.Name]+"."+sel.Sel.Name] && envReaders[rel] == "" {
				t.Errorf("%s: %s.%s: read the environment in cmd/ and pass the value in a Config", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d files checked", checked)
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for file, pkg := range envReaders {
		for _, d := range deps {
			if d == pkg {
				t.Errorf("the server imports %s, whose %s reads the environment", pkg, file)
			}
		}
	}
}
