// gencrds writes KubeVirt's own CustomResourceDefinitions, exactly as virt-operator generates
// them (pkg/virt-operator/resource/generate/components), as one YAML stream. The test world
// applies that file server-side instead of hand-reduced copies.
//
//	gencrds -out kubevirt-crds.yaml
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	extv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
)

// Every CRD virt-operator installs (components/crds.go), in its own order.
var generators = []func() (*extv1.CustomResourceDefinition, error){
	components.NewVirtualMachineInstanceCrd,
	components.NewVirtualMachineCrd,
	components.NewPresetCrd,
	components.NewReplicaSetCrd,
	components.NewVirtualMachineInstanceMigrationCrd,
	components.NewKubeVirtCrd,
	components.NewVirtualMachinePoolCrd,
	components.NewVirtualMachineSnapshotCrd,
	components.NewVirtualMachineSnapshotContentCrd,
	components.NewVirtualMachineRestoreCrd,
	components.NewVirtualMachineExportCrd,
	components.NewVirtualMachineBackupCrd,
	components.NewVirtualMachineBackupTrackerCrd,
	components.NewVirtualMachineInstancetypeCrd,
	components.NewVirtualMachineClusterInstancetypeCrd,
	components.NewVirtualMachinePreferenceCrd,
	components.NewVirtualMachineClusterPreferenceCrd,
	components.NewMigrationPolicyCrd,
	components.NewVirtualMachineCloneCrd,
}

func main() {
	out := flag.String("out", "", "file to write the CRDs to (a YAML stream); required")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gencrds: -out is required")
		os.Exit(2)
	}
	var buf bytes.Buffer
	for _, generate := range generators {
		crd, err := generate()
		if err != nil {
			fmt.Fprintf(os.Stderr, "gencrds: %v\n", err)
			os.Exit(1)
		}
		crd.APIVersion = "apiextensions.k8s.io/v1"
		crd.Kind = "CustomResourceDefinition"
		b, err := yaml.Marshal(crd)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gencrds: %s: %v\n", crd.Name, err)
			os.Exit(1)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "gencrds: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("gencrds: wrote %d CRDs to %s\n", len(generators), *out)
}
