//go:build tools

// Package tools records the kube-apiserver main package so that go.mod and
// go.sum pin it and its dependencies. Build it with hack/test-assets.sh.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
