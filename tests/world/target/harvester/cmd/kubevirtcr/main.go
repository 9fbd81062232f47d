// kubevirtcr writes the KubeVirt CR a Harvester cluster runs with: spec.configuration taken
// unchanged from Harvester's chart values (deploy/charts/harvester/values.yaml, key
// kubevirt.spec.configuration: its feature gates, network and rollout settings). The chart's
// infra placement and customizeComponents patches are left out: they shape Deployments that
// virt-operator would make, and no virt-operator runs in the test world.
//
//	kubevirtcr -values <harvester module>/deploy/charts/harvester/values.yaml -out kubevirt-cr.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kubevirtcr: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	values := flag.String("values", "", "Harvester's chart values.yaml; required")
	out := flag.String("out", "", "file to write the KubeVirt CR to; required")
	namespace := flag.String("namespace", "kubevirt", "namespace of the KubeVirt CR")
	flag.Parse()
	if *values == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "kubevirtcr: -values and -out are required")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*values)
	if err != nil {
		fail("%v", err)
	}
	var chart struct {
		KubeVirt struct {
			Spec struct {
				Configuration map[string]any `json:"configuration"`
			} `json:"spec"`
		} `json:"kubevirt"`
	}
	if err := yaml.Unmarshal(raw, &chart); err != nil {
		fail("%s: %v", *values, err)
	}
	if len(chart.KubeVirt.Spec.Configuration) == 0 {
		fail("%s: no kubevirt.spec.configuration", *values)
	}
	cr := map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "KubeVirt",
		"metadata":   map[string]any{"name": "kubevirt", "namespace": *namespace},
		"spec":       map[string]any{"configuration": chart.KubeVirt.Spec.Configuration},
	}
	b, err := yaml.Marshal(cr)
	if err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("kubevirtcr: wrote %s\n", *out)
}
