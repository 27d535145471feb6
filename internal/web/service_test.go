package web

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The dashboard calls the service, not the API over in-process HTTP: no
// file of the package but its tests records responses (net/http/httptest,
// or a type with a WriteHeader method), builds requests
// (http.NewRequest*), or sets a principal on a context for the API.
func TestDashboardCallsTheServiceNotTheAPI(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == "net/http/httptest" {
				t.Errorf("%s imports net/http/httptest", fset.Position(imp.Pos()))
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if pkg, ok := n.X.(*ast.Ident); ok {
					switch name := pkg.Name + "." + n.Sel.Name; name {
					case "http.NewRequest", "http.NewRequestWithContext", "api.WithPrincipal":
						t.Errorf("%s: %s: the dashboard builds a request for the API", fset.Position(n.Pos()), name)
					}
				}
			case *ast.FuncDecl:
				if n.Recv != nil && n.Name.Name == "WriteHeader" {
					t.Errorf("%s: a response recorder (WriteHeader method)", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
}
