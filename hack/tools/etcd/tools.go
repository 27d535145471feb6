//go:build tools

// Package tools records etcd's main package (the root package of
// go.etcd.io/etcd/server/v3, which calls etcdmain.Main) so that go.mod and
// go.sum pin it and its dependencies. Build it with hack/test-assets.sh.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
