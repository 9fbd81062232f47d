//go:build tools

// Package tools pins the Go program the test world builds from this module: the helm v3 CLI
// (helm.sh/helm/v3/cmd/helm), used by the deploy world test to render deploy/helm charts with
// `helm template` and `helm lint`. Nothing here is compiled into the product (which is C++);
// helm-world.sh builds the package with `go build`.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
