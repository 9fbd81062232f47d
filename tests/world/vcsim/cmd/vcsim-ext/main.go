// Command vcsim-ext is govmomi's vCenter simulator (package simulator, VPX model) with what the
// vm-import test world needs on top: VirtualMachine.ExportVm with an HttpNfcLease whose device URLs
// serve each disk's backing file byte for byte (export.go), a minimal
// OvfManager.CreateDescriptor (ovf.go), enforced SOAP credentials, a custom TLS certificate and a
// session idle timeout. It listens on 127.0.0.1 only.
//
// It is test-harness code for tests/world/vcsim/vcsim-world.sh; see README.md beside go.mod.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator" // vAPI REST (tags): a plan's selector.tags
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	model := simulator.VPX()
	model.Machine = 0 // no model VMs with empty disks unless asked for (-vm); the seed adds real ones

	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "Number of datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "Number of clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "Number of hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "Number of standalone hosts per datacenter")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "Number of local (temporary) datastores")
	flag.IntVar(&model.Machine, "vm", model.Machine, "Number of model VMs per resource pool (their disks are empty)")
	flag.IntVar(&model.Pool, "pool", model.Pool, "Number of resource pools per compute resource")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "Number of distributed port groups per datacenter")
	flag.IntVar(&model.Folder, "folder", model.Folder, "Number of folders")

	listen := flag.String("l", "127.0.0.1:0", "Listen address; port 0 picks a free port (see -url-file)")
	urlFile := flag.String("url-file", "", "Write the SDK URL (https://127.0.0.1:PORT/sdk) to this file once listening")
	username := flag.String("username", "", "Login user name enforced on SOAP Login (empty: any non-empty name and password)")
	password := flag.String("password", "", "Login password enforced on SOAP Login")
	useTLS := flag.Bool("tls", true, "Serve HTTPS")
	certFile := flag.String("tlscert", "", "TLS certificate (PEM); default: Go's built-in RSA-1024 test certificate")
	keyFile := flag.String("tlskey", "", "TLS private key (PEM)")
	sessionTimeout := flag.Duration("session-timeout", 0, "Expire SOAP sessions idle for longer than this (0: never)")
	flag.BoolVar(&nfcChunked, "nfc-chunked", os.Getenv("VCSIM_NFC_CHUNKED") == "1",
		"Serve export downloads without Content-Length (chunked), no Range (env VCSIM_NFC_CHUNKED=1)")
	flag.DurationVar(&nfcLeaseTimeout, "nfc-lease-timeout", 0,
		"Expire an export lease after this long without HttpNfcLeaseProgress or download activity (0: never)")
	flag.BoolVar(&simulator.Trace, "trace", false, "Trace SOAP to stderr")
	flag.Parse()

	if host, _, err := net.SplitHostPort(*listen); err != nil || (host != "127.0.0.1" && host != "localhost" && host != "::1") {
		log.Fatalf("vcsim-ext: -l %q: only a loopback address is allowed", *listen)
	}
	if l, err := net.Listen("tcp", *listen); err != nil { // a clear message instead of httptest's panic
		log.Fatalf("vcsim-ext: cannot listen on %s: %v", *listen, err)
	} else {
		_ = l.Close()
	}
	if (*username == "") != (*password == "") {
		log.Fatal("vcsim-ext: -username and -password go together")
	}

	model.ServiceContent.About.Name += " (govmomi simulator, vm-import extension)"
	model.ServiceContent.About.OsType = runtime.GOOS + "-" + runtime.GOARCH
	if err := model.Create(); err != nil {
		log.Fatalf("vcsim-ext: creating the model: %v", err)
	}

	if *sessionTimeout > 0 {
		// The simulator reads this option at each Login (SessionIdleWatch); real vCenter has the same
		// key in whole minutes. A session idle for more than the timeout is gone after at most twice it.
		model.Map().OptionManager().UpdateOptions(&types.UpdateOptions{ChangedValue: []types.BaseOptionValue{
			&types.OptionValue{Key: "config.vmacore.soap.sessionTimeout", Value: sessionTimeout.String()},
		}})
	}
	installExtensions(model.Map())

	model.Service.Listen = &url.URL{Host: *listen}
	if *username != "" {
		model.Service.Listen.User = url.UserPassword(*username, *password)
	}
	if *useTLS {
		model.Service.TLS = new(tls.Config)
		if *certFile != "" {
			c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				log.Fatalf("vcsim-ext: loading the TLS certificate: %v", err)
			}
			model.Service.TLS.Certificates = []tls.Certificate{c}
		}
	}
	model.Service.RegisterEndpoints = true // runs RegisterEndpoint funcs: our NFC download handler

	s := model.Service.NewServer()
	sdk := *s.URL
	sdk.User = nil
	log.Printf("vcsim-ext: listening on %s (pid %d, ExportVm + NFC download, chunked=%v, session timeout %v)",
		sdk.String(), os.Getpid(), nfcChunked, *sessionTimeout)
	if *urlFile != "" {
		tmp := filepath.Join(filepath.Dir(*urlFile), fmt.Sprintf(".%s.%d", filepath.Base(*urlFile), os.Getpid()))
		if err := os.WriteFile(tmp, []byte(sdk.String()+"\n"), 0o644); err != nil {
			log.Fatalf("vcsim-ext: %v", err)
		}
		if err := os.Rename(tmp, *urlFile); err != nil {
			log.Fatalf("vcsim-ext: %v", err)
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	got := <-sig
	log.Printf("vcsim-ext: %v: shutting down", got)
	done := make(chan struct{})
	go func() {
		s.Close()
		model.Remove()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second): // an open download must not keep us alive
	}
}
