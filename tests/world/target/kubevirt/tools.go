//go:build tools

// Package tools pins the KubeVirt program the test world builds as is: virt-controller. The
// world's own wrappers (cmd/gencrds, cmd/vmwebhook) sit next to it. Nothing here is compiled into
// the product (which is C++); target-world.sh builds these packages with `go build`.
package tools

import (
	_ "kubevirt.io/kubevirt/cmd/virt-controller"
)
