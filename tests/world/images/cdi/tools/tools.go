//go:build tools

// The programs of CDI v1.64.0 this module builds (images-world.sh): the importer that runs in
// the importer Pods, and CDI's own controller that creates them from DataVolumes.
package tools

import (
	_ "kubevirt.io/containerized-data-importer/cmd/cdi-controller"
	_ "kubevirt.io/containerized-data-importer/cmd/cdi-importer"
)
