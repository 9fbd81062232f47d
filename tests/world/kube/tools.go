//go:build tools

// Package tools pins the Go programs the test world builds: kube-apiserver and kubectl
// (kube-world.sh) and kubelet, kube-scheduler and kube-controller-manager (tests/world/node/
// node-world.sh) from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3. Nothing here is
// compiled into the product (which is C++); the world scripts build these packages with `go build`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
