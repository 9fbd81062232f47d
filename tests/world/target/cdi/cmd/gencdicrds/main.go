// gencdicrds writes CDI's own CRDs, as cdi-operator installs them: the YAML that CDI's
// crd-generator embeds in pkg/operator/resources (CDICRDs, which the operator's create*CRD
// functions decode unchanged), as one YAML stream in a stable order. All of them, not only
// DataVolume: virt-controller takes the DataVolume CRD as the sign that CDI is installed and then
// watches CDIConfig, CDI, DataSource and StorageProfile too, as in a Harvester cluster.
//
//	gencdicrds -out cdi.kubevirt.io.yaml
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"kubevirt.io/containerized-data-importer/pkg/operator/resources"
)

func main() {
	out := flag.String("out", "", "file to write the CRDs to (a YAML stream); required")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gencdicrds: -out is required")
		os.Exit(2)
	}
	if _, ok := resources.CDICRDs["datavolume"]; !ok {
		fmt.Fprintln(os.Stderr, "gencdicrds: no \"datavolume\" CRD in CDI's generated resources")
		os.Exit(1)
	}
	names := make([]string, 0, len(resources.CDICRDs))
	for name := range resources.CDICRDs {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString("---\n")
		b.WriteString(resources.CDICRDs[name])
		if !strings.HasSuffix(resources.CDICRDs[name], "\n") {
			b.WriteString("\n")
		}
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "gencdicrds: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("gencdicrds: wrote %d CRDs (%s) to %s\n", len(names), strings.Join(names, ", "), *out)
}
