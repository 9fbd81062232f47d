// vmwebhook serves KubeVirt's own VirtualMachine validating admitter (the one virt-api serves at
// /virtualmachines-validate) over HTTPS on a loopback address, wired as virt-api wires it: the
// cluster configuration comes from the KubeVirt CR through the same informers.
//
//	vmwebhook -listen 127.0.0.1:PORT -tls-cert CRT -tls-key KEY -admin-kubeconfig FILE
//	vmwebhook -print-config -url https://127.0.0.1:PORT/virtualmachines-validate -ca-file CA
//
// The second form prints the ValidatingWebhookConfiguration that registers it: the entry
// "virtualmachine-validator.kubevirt.io" of virt-operator's own configuration (same rules,
// failure policy and timeout), its clientConfig pointed at the URL instead of the virt-api Service.
// GET /healthz answers "ok" once the informers have synced and the admitter is being served.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"kubevirt.io/client-go/kubecli"

	"kubevirt.io/kubevirt/pkg/controller"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks"
	validating_webhook "kubevirt.io/kubevirt/pkg/virt-api/webhooks/validating-webhook"
	virtconfig "kubevirt.io/kubevirt/pkg/virt-config"
	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
)

const (
	webhookName = "virtualmachine-validator.kubevirt.io"
	configName  = "vmimport-world-kubevirt-vm-validator"
)

func printConfig(namespace, url, caFile string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	upstream := components.NewVirtAPIValidatingWebhookConfiguration(namespace)
	for _, w := range upstream.Webhooks {
		if w.Name != webhookName {
			continue
		}
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca}
		cfg := admissionregistrationv1.ValidatingWebhookConfiguration{
			Webhooks: []admissionregistrationv1.ValidatingWebhook{w},
		}
		cfg.APIVersion = "admissionregistration.k8s.io/v1"
		cfg.Kind = "ValidatingWebhookConfiguration"
		cfg.Name = configName
		b, err := yaml.Marshal(&cfg)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	}
	return fmt.Errorf("no webhook %q in virt-operator's ValidatingWebhookConfiguration", webhookName)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "HTTPS listen address (loopback only in the test world)")
	tlsCert := flag.String("tls-cert", "", "serving certificate (PEM)")
	tlsKey := flag.String("tls-key", "", "serving key (PEM)")
	kubeconfig := flag.String("admin-kubeconfig", "", "kubeconfig of the API server the informers read")
	namespace := flag.String("namespace", "kubevirt", "KubeVirt's install namespace (where the KubeVirt CR is)")
	printCfg := flag.Bool("print-config", false, "print the ValidatingWebhookConfiguration and exit")
	url := flag.String("url", "", "with -print-config: the URL the API server calls")
	caFile := flag.String("ca-file", "", "with -print-config: the CA that signed the serving certificate")
	flag.Parse()

	if *printCfg {
		if *url == "" || *caFile == "" {
			log.Fatal("vmwebhook: -print-config needs -url and -ca-file")
		}
		if err := printConfig(*namespace, *url, *caFile); err != nil {
			log.Fatalf("vmwebhook: %v", err)
		}
		return
	}
	if *tlsCert == "" || *tlsKey == "" || *kubeconfig == "" {
		log.Fatal("vmwebhook: -tls-cert, -tls-key and -admin-kubeconfig are required")
	}

	virtCli, err := kubecli.GetKubevirtClientFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("vmwebhook: %v", err)
	}

	// As virt-api's Run(): the informers its webhooks read, then the cluster configuration.
	factory := controller.NewKubeInformerFactory(virtCli.RestClient(), virtCli, nil, *namespace)
	kubeVirtInformer := factory.KubeVirt()
	crdInformer := factory.CRD()
	presetInformer := factory.VirtualMachinePreset()
	restoreInformer := factory.VirtualMachineRestore()
	backupInformer := factory.VirtualMachineBackup()
	namespaceInformer := factory.Namespace()
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)

	clusterConfig, err := virtconfig.NewClusterConfig(crdInformer, kubeVirtInformer, *namespace)
	if err != nil {
		log.Fatalf("vmwebhook: %v", err)
	}
	var dataSourceInformer cache.SharedIndexInformer
	if clusterConfig.HasDataSourceAPI() {
		dataSourceInformer = factory.DataSource()
	} else {
		dataSourceInformer = factory.DummyDataSource()
	}
	factory.Start(stop)
	factory.WaitForCacheSync(stop)

	informers := &webhooks.Informers{
		VMIPresetInformer:  presetInformer,
		VMRestoreInformer:  restoreInformer,
		VMBackupInformer:   backupInformer,
		DataSourceInformer: dataSourceInformer,
		NamespaceInformer:  namespaceInformer,
	}
	serviceAccounts := webhooks.KubeVirtServiceAccounts(*namespace)
	http.HandleFunc(components.VMValidatePath, func(w http.ResponseWriter, r *http.Request) {
		validating_webhook.ServeVMs(w, r, clusterConfig, virtCli, informers, serviceAccounts)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	log.Printf("vmwebhook: serving %s on https://%s", components.VMValidatePath, *listen)
	log.Fatal(http.ListenAndServeTLS(*listen, *tlsCert, *tlsKey, nil))
}
