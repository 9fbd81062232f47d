// vmimagewebhook serves Harvester's own VirtualMachineImage validator
// (pkg/webhook/resources/virtualmachineimage, the one harvester-webhook runs) over HTTPS on a
// loopback address, with the wrangler caches and the indexer it reads.
//
//	vmimagewebhook -listen 127.0.0.1:PORT -tls-cert CRT -tls-key KEY -admin-kubeconfig FILE
//	vmimagewebhook -print-config -url https://127.0.0.1:PORT/v1/webhook/validation -ca-file CA \
//	               -admin-kubeconfig FILE
//
// The second form prints the ValidatingWebhookConfiguration that registers it, built as
// harvester-webhook builds its own (pkg/webhook/server: name validator.harvesterhci.io, rules
// from the validator's Resource(), failure policy Fail, no side effects), pointed at the URL.
// GET /healthz answers "ok" once the caches have synced and the validator is being served.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"os"

	"github.com/rancher/wrangler/v3/pkg/generated/controllers/core"
	"github.com/rancher/wrangler/v3/pkg/generated/controllers/storage"
	"github.com/rancher/wrangler/v3/pkg/webhook"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	harvesterv1 "github.com/harvester/harvester/pkg/apis/harvesterhci.io/v1beta1"
	ctlharvester "github.com/harvester/harvester/pkg/generated/controllers/harvesterhci.io"
	"github.com/harvester/harvester/pkg/webhook/config"
	"github.com/harvester/harvester/pkg/webhook/indexeres"
	"github.com/harvester/harvester/pkg/webhook/resources/virtualmachineimage"
	"github.com/harvester/harvester/pkg/webhook/types"
)

const (
	validationPath = "/v1/webhook/validation" // harvester-webhook's own path
	webhookName    = "validator.harvesterhci.io"
	configName     = "vmimport-world-harvester-image-validator"
)

// As harvester's pkg/webhook/indexeres (unexported there): the storage classes a backup's
// volumes use, which the validator looks up before it lets an image be deleted.
func vmBackupByStorageClassName(obj *harvesterv1.VirtualMachineBackup) ([]string, error) {
	names := []string{}
	if obj.Status == nil {
		return names, nil
	}
	for _, vb := range obj.Status.VolumeBackups {
		if vb.PersistentVolumeClaim.Spec.StorageClassName != nil {
			names = append(names, *vb.PersistentVolumeClaim.Spec.StorageClassName)
		}
	}
	return names, nil
}

// The validator's rules, as harvester-webhook's buildRules() makes them.
func printConfig(rsc types.Resource, url, caFile string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	scope := rsc.Scope
	fail := admissionregv1.Fail
	none := admissionregv1.SideEffectClassNone
	cfg := admissionregv1.ValidatingWebhookConfiguration{
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:         webhookName,
			ClientConfig: admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: rsc.OperationTypes,
				Rule: admissionregv1.Rule{
					APIGroups:   []string{rsc.APIGroup},
					APIVersions: []string{rsc.APIVersion},
					Resources:   rsc.Names,
					Scope:       &scope,
				},
			}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1", "v1beta1"},
		}},
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

func main() {
	listen := flag.String("listen", "127.0.0.1:9444", "HTTPS listen address (loopback only in the test world)")
	tlsCert := flag.String("tls-cert", "", "serving certificate (PEM)")
	tlsKey := flag.String("tls-key", "", "serving key (PEM)")
	// Not -kubeconfig: a dependency registers that flag already ("flag redefined" panic).
	kubeconfig := flag.String("admin-kubeconfig", "", "kubeconfig of the API server the caches read")
	printCfg := flag.Bool("print-config", false, "print the ValidatingWebhookConfiguration and exit")
	url := flag.String("url", "", "with -print-config: the URL the API server calls")
	caFile := flag.String("ca-file", "", "with -print-config: the CA that signed the serving certificate")
	flag.Parse()

	if *kubeconfig == "" {
		log.Fatal("vmimagewebhook: -admin-kubeconfig is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("vmimagewebhook: %v", err)
	}
	hf := ctlharvester.NewFactoryFromConfigOrDie(cfg)
	cf := core.NewFactoryFromConfigOrDie(cfg)
	sf := storage.NewFactoryFromConfigOrDie(cfg)
	k8s := kubernetes.NewForConfigOrDie(cfg)
	h := hf.Harvesterhci().V1beta1()
	h.VirtualMachineBackup().Cache().AddIndexer(indexeres.VMBackupByStorageClassNameIndex, vmBackupByStorageClassName)
	// Registers the indexers it needs on the caches; nothing is read before the factories start.
	v := virtualmachineimage.NewValidator(h.VirtualMachineImage().Cache(), cf.Core().V1().Pod().Cache(),
		cf.Core().V1().PersistentVolumeClaim().Cache(), k8s.AuthorizationV1().SelfSubjectAccessReviews(),
		h.VirtualMachineTemplateVersion().Cache(), sf.Storage().V1().StorageClass().Cache(),
		h.VirtualMachineBackup().Cache())

	if *printCfg {
		if *url == "" || *caFile == "" {
			log.Fatal("vmimagewebhook: -print-config needs -url and -ca-file")
		}
		if err := printConfig(v.Resource(), *url, *caFile); err != nil {
			log.Fatalf("vmimagewebhook: %v", err)
		}
		return
	}
	if *tlsCert == "" || *tlsKey == "" {
		log.Fatal("vmimagewebhook: -tls-cert and -tls-key are required")
	}

	ctx := context.Background()
	// Start syncs each factory's caches before it returns.
	for _, f := range []interface {
		Start(context.Context, int) error
	}{hf, cf, sf} {
		if err := f.Start(ctx, 1); err != nil {
			log.Fatalf("vmimagewebhook: %v", err)
		}
	}

	router := webhook.NewRouter()
	rsc := v.Resource()
	options := &config.Options{Namespace: "harvester-system", Threadiness: 1}
	router.Kind("VirtualMachineImage").Group(rsc.APIGroup).Type(rsc.ObjectType).
		Handle(types.NewAdmissionHandler(types.NewValidatorAdapter(v), types.AdmissionTypeValidation, options))
	http.Handle(validationPath, router)
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	log.Printf("vmimagewebhook: serving %s on https://%s", validationPath, *listen)
	log.Fatal(http.ListenAndServeTLS(*listen, *tlsCert, *tlsKey, nil))
}
