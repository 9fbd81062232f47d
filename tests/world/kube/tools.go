//go:build tools

// Package tools pins the Go programs the test world builds: kube-apiserver and kubectl from
// k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3. Nothing here is compiled into the
// product (which is C++); kube-world.sh builds these packages with `go build`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
