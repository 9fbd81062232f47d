package main

// VirtualMachine.ExportVm and the HTTP side of its HttpNfcLease.
//
// govmomi's simulator (v0.56.0) has HttpNfcLease, VirtualMachineSnapshot.ExportSnapshot and a /nfc/
// handler, but no VirtualMachine.ExportVm; its lease type keeps the file table in unexported fields,
// and its GET path streams without Content-Length, Range or HEAD. So this file brings its own lease
// type and download handler, using the simulator's public API only:
//
//   - Registry.Handler (a per-call dispatch hook) redirects ExportVm calls on a VirtualMachine to
//     the exporter singleton below. The hook rewrites Method.This because, for a logged-in session,
//     the dispatcher looks the object up again by Method.This (Session.Get) after the hook ran.
//     Authentication is unchanged: the dispatcher still refuses ExportVm without a session.
//   - Leases are session objects (Session.Put, moref "session[<key>]<uuid>" like stock leases), so
//     RetrieveProperties/WaitForUpdatesEx on state and info, HttpNfcLeaseProgress, Complete, Abort
//     and GetManifest go through the normal dispatcher.
//   - Service.Handle registers "GET /nfc/" (Go 1.22 mux: more specific than the stock "/nfc/"), so
//     downloads use vSphere-like URLs https://127.0.0.1:PORT/nfc/<ticket>/disk-N.vmdk; tickets this
//     file does not know are handed to the stock simulator.ServeNFC.
//   - A lease lives as long as the session that made it, as on vSphere; "GET /vmimport/debug"
//     lists every lease and session (debug.go).

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var (
	nfcChunked      bool          // -nfc-chunked: no Content-Length, no Range
	nfcLeaseTimeout time.Duration // -nfc-lease-timeout: 0 = leases never expire

	tickets sync.Map // ticket (URL path element) -> *exportLease

	allLeasesMu sync.Mutex
	allLeases   []*exportLease // every lease made, for /vmimport/debug
)

const nfcPrefix = "/nfc/"

// extension singletons: the Registry.Handler hook points calls at them.
type vmExporter struct {
	Self types.ManagedObjectReference
}

type ovfDescriber struct {
	Self types.ManagedObjectReference
}

func (e *vmExporter) Reference() types.ManagedObjectReference   { return e.Self }
func (o *ovfDescriber) Reference() types.ManagedObjectReference { return o.Self }

var (
	exporter  = &vmExporter{Self: types.ManagedObjectReference{Type: "VirtualMachine", Value: "vmimport-ext-exporter"}}
	describer = &ovfDescriber{Self: types.ManagedObjectReference{Type: "OvfManager", Value: "vmimport-ext-ovf"}}
)

func installExtensions(m *simulator.Registry) {
	prev := m.Handler
	m.Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if f := injectMethodFault(method); f != nil { // faults.go
			return nil, f
		}
		switch method.Name {
		case "ExportVm":
			if _, ok := ctx.Map.Get(method.This).(*simulator.VirtualMachine); ok {
				method.This = exporter.Self // the request body keeps the VM's moref
				return exporter, nil
			}
		case "CreateDescriptor":
			if _, ok := ctx.Map.Get(method.This).(*simulator.OvfManager); ok {
				method.This = describer.Self
				return describer, nil
			}
		}
		if prev != nil {
			return prev(ctx, method)
		}
		return nil, nil
	}
	simulator.RegisterEndpoint(func(s *simulator.Service, r *simulator.Registry) {
		s.Handle("GET "+nfcPrefix, http.HandlerFunc(serveNFC)) // GET patterns also match HEAD
		registerFaultSwitch(s)
	})
}

// exportDisk is one virtual disk of a VM, in device order.
type exportDisk struct {
	key      string // HttpNfcLeaseDeviceUrl.Key, e.g. /vm-42/VirtualLsiLogicController0:0
	ikey     string // HttpNfcLeaseDeviceUrl.ImportKey, e.g. /myvm/VirtualLsiLogicController0:0
	name     string // disk-N.vmdk, the last element of the device URL
	file     string // local path of the backing file
	capKB    int64
	unit     int32
	ctlrKey  int32
	dsPath   string // "[ds] dir/file.vmdk"
	ctlrType string // e.g. ParaVirtualSCSIController
	ctlrBus  int32
}

// vmDisks lists vm's disks; the caller holds vm's lock.
func vmDisks(ctx *simulator.Context, vm *simulator.VirtualMachine) ([]exportDisk, types.BaseMethodFault) {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	var disks []exportDisk
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue // RDM without a file etc.: nothing to serve
		}
		var p object.DatastorePath
		if !p.FromString(b.GetVirtualDeviceFileBackingInfo().FileName) {
			return nil, &types.InvalidDatastorePath{DatastorePath: b.GetVirtualDeviceFileBackingInfo().FileName}
		}
		ds := findDatastore(ctx, vm, p.Datastore)
		if ds == nil {
			return nil, &types.InvalidDatastore{Name: p.Datastore}
		}
		if ds.Summary.Type == string(types.HostFileSystemVolumeFileSystemTypeVsan) {
			return nil, &types.NotSupported{} // vSAN paths go through a namespace map we cannot see
		}
		ctlrType, bus := "VirtualController", int32(0)
		if c := devices.FindByKey(disk.ControllerKey); c != nil {
			ctlrType = strings.TrimPrefix(fmt.Sprintf("%T", c), "*types.")
			if bc, ok := c.(types.BaseVirtualController); ok {
				bus = bc.GetVirtualController().BusNumber
			}
		}
		unit := int32(0)
		if disk.UnitNumber != nil {
			unit = *disk.UnitNumber
		}
		disks = append(disks, exportDisk{
			key:      fmt.Sprintf("/%s/%s%d:%d", vm.Self.Value, ctlrType, bus, unit),
			ikey:     fmt.Sprintf("/%s/%s%d:%d", vm.Name, ctlrType, bus, unit),
			name:     fmt.Sprintf("disk-%d.vmdk", len(disks)),
			file:     path.Join(ds.Summary.Url, p.Path),
			capKB:    disk.CapacityInKB,
			unit:     unit,
			ctlrKey:  disk.ControllerKey,
			dsPath:   p.String(),
			ctlrType: ctlrType,
			ctlrBus:  bus,
		})
	}
	return disks, nil
}

func findDatastore(ctx *simulator.Context, vm *simulator.VirtualMachine, name string) *simulator.Datastore {
	if ds, ok := ctx.Map.FindByName(name, vm.Datastore).(*simulator.Datastore); ok {
		return ds
	}
	for _, e := range ctx.Map.All("Datastore") {
		if ds, ok := e.(*simulator.Datastore); ok && ds.Name == name {
			return ds
		}
	}
	return nil
}

// serverURL is vcsim's own https://127.0.0.1:PORT/sdk.
func serverURL(ctx *simulator.Context) *url.URL {
	for _, o := range ctx.Map.OptionManager().Setting {
		if v := o.GetOptionValue(); v.Key == "vcsim.server.url" {
			if s, ok := v.Value.(string); ok {
				if u, err := url.Parse(s); err == nil {
					return u
				}
			}
		}
	}
	return &url.URL{Scheme: "https", Host: "127.0.0.1"}
}

// thumbprint is the SHA-1 of the server certificate, colon-separated upper-case hex, as vSphere
// puts in HttpNfcLeaseDeviceUrl.sslThumbprint.
func thumbprint(ctx *simulator.Context) string {
	sm := ctx.Map.SessionManager()
	if sm.TLS == nil {
		return ""
	}
	der, err := base64.StdEncoding.DecodeString(sm.TLSCert())
	if err != nil {
		return ""
	}
	sum := sha1.Sum(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// exportLease is an HttpNfcLease in export (download) mode. The embedded mo type comes first so
// that the PropertyCollector sees an HttpNfcLease.
type exportLease struct {
	mo.HttpNfcLease

	ticket string
	files  map[string]exportDisk // by URL name (disk-N.vmdk)

	ctx     *simulator.Context // of the ExportVm call: its session made the lease
	vm      string             // VM name and moref, for /vmimport/debug
	vmRef   string
	created time.Time

	// HttpNfcLeaseSetManifestChecksumType: device URL key -> "sha1" | "sha256" (unset: sha1).
	checksumTypes map[string]string
	// tamper: the VM's extraConfig "vmimport-ext.nfcTamper" when the lease was made (see
	// tamperKey): its disks are served with bytes the manifest does not declare.
	tamper string

	mu       sync.Mutex
	last     time.Time // last progress call or download activity
	inflight int       // downloads running now
	closed   bool      // completed, aborted, expired or its session ended
	outcome  string    // why closed: completed, aborted, expired, sessionEnded
}

func (l *exportLease) touch(delta int) {
	l.mu.Lock()
	l.last = time.Now()
	l.inflight += delta
	l.mu.Unlock()
}

func (l *exportLease) close(outcome string) {
	l.mu.Lock()
	if !l.closed {
		l.closed, l.outcome = true, outcome
	}
	l.mu.Unlock()
	tickets.Delete(l.ticket)
}

// ExportVm implements VirtualMachine.ExportVm (req.This is the VM; see installExtensions).
func (e *vmExporter) ExportVm(ctx *simulator.Context, req *types.ExportVm) soap.HasFault {
	body := new(methods.ExportVmBody)
	vm, ok := ctx.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})
		return body
	}

	var (
		state types.VirtualMachinePowerState
		disks []exportDisk
		fault types.BaseMethodFault
	)
	var tamper string
	ctx.WithLock(vm, func() {
		state = vm.Runtime.PowerState
		if state == types.VirtualMachinePowerStatePoweredOff {
			disks, fault = vmDisks(ctx, vm)
		}
		tamper = tamperMode(vm)
	})
	if state != types.VirtualMachinePowerStatePoweredOff {
		// vSphere: "InvalidPowerState: if the virtual machine is not powered off".
		body.Fault_ = simulator.Fault(fmt.Sprintf("The attempted operation cannot be performed in the current state (%s).", state),
			&types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOff, ExistingState: state})
		return body
	}
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}

	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	lease := &exportLease{
		ticket:        hex.EncodeToString(rnd[:]),
		files:         make(map[string]exportDisk),
		checksumTypes: make(map[string]string),
		tamper:        tamper,
		ctx:           ctx,
		vm:            vm.Name,
		vmRef:         vm.Self.Value,
		created:       time.Now(),
		last:          time.Now(),
	}
	lease.Self = types.ManagedObjectReference{Type: "HttpNfcLease"} // Session.Put fills in the value
	lease.State = types.HttpNfcLeaseStateReady
	if arm, ok := takeFault("lease-error"); ok { // faults.go: a lease that failed while initializing
		lease.State = types.HttpNfcLeaseStateError
		lease.Error = &types.LocalizedMethodFault{Fault: methodFault(arm.fault),
			LocalizedMessage: "lease failed: fault injected by the vcsim-ext fault switch"}
		ctx.Session.Put(lease)
		log.Printf("ExportVm %s (%s): lease %s in state error (fault switch)", vm.Self.Value, vm.Name, lease.Self.Value)
		body.Res = &types.ExportVmResponse{Returnval: lease.Self}
		return body
	}
	lease.InitializeProgress = 100
	lease.Mode = string(types.HttpNfcLeaseModePushOrGet)
	lease.Capabilities = types.HttpNfcLeaseCapabilities{PullModeSupported: true, CorsSupported: true}
	ctx.Session.Put(lease)

	leaseTimeout := int32(300) // vSphere's default, reported even when we never expire
	if nfcLeaseTimeout > 0 {
		leaseTimeout = int32((nfcLeaseTimeout + time.Second - 1) / time.Second)
	}
	info := &types.HttpNfcLeaseInfo{Lease: lease.Self, Entity: vm.Self, LeaseTimeout: leaseTimeout}
	u := serverURL(ctx)
	if _, ok := takeFault("lease-host-star"); ok { // faults.go: ESXi-style "https://*/nfc/..."
		u = &url.URL{Scheme: u.Scheme, Host: "*"}
	}
	thumb := thumbprint(ctx)
	for _, d := range disks {
		lease.files[d.name] = d
		du := url.URL{Scheme: u.Scheme, Host: u.Host, Path: nfcPrefix + lease.ticket + "/" + d.name}
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:           d.key,
			ImportKey:     d.ikey,
			Url:           du.String(),
			SslThumbprint: thumb,
			Disk:          types.NewBool(true),
		})
		info.TotalDiskCapacityInKB += d.capKB
	}
	lease.Info = info
	tickets.Store(lease.ticket, lease)
	allLeasesMu.Lock()
	allLeases = append(allLeases, lease)
	allLeasesMu.Unlock()
	log.Printf("ExportVm %s (%s): lease %s, %d disk(s), ticket %s", vm.Self.Value, vm.Name, lease.Self.Value, len(disks), lease.ticket)

	if nfcLeaseTimeout > 0 {
		go lease.watch(ctx)
	}

	body.Res = &types.ExportVmResponse{Returnval: lease.Self}
	return body
}

// watch expires the lease after nfcLeaseTimeout without activity, as vSphere does: state error,
// fault Timedout, device URLs gone.
func (l *exportLease) watch(ctx *simulator.Context) {
	t := time.NewTicker(nfcLeaseTimeout / 4)
	defer t.Stop()
	for range t.C {
		l.mu.Lock()
		closed, idle := l.closed, l.inflight == 0 && time.Since(l.last) > nfcLeaseTimeout
		l.mu.Unlock()
		if closed {
			return
		}
		if idle {
			l.close("expired")
			ctx.WithLock(l, func() {
				ctx.Update(l, []types.PropertyChange{
					{Name: "state", Val: types.HttpNfcLeaseStateError},
					{Name: "error", Val: &types.LocalizedMethodFault{Fault: &types.Timedout{}, LocalizedMessage: "Operation timed out."}},
				})
			})
			log.Printf("lease %s expired after %v without activity", l.Self.Value, nfcLeaseTimeout)
			return
		}
	}
}

func (l *exportLease) HttpNfcLeaseProgress(ctx *simulator.Context, req *types.HttpNfcLeaseProgress) soap.HasFault {
	body := new(methods.HttpNfcLeaseProgressBody)
	if f := l.checkOpen(); f != nil {
		body.Fault_ = f
		return body
	}
	l.touch(0)
	l.TransferProgress = req.Percent
	body.Res = new(types.HttpNfcLeaseProgressResponse)
	return body
}

func (l *exportLease) HttpNfcLeaseComplete(ctx *simulator.Context, req *types.HttpNfcLeaseComplete) soap.HasFault {
	body := new(methods.HttpNfcLeaseCompleteBody)
	if f := l.checkOpen(); f != nil {
		body.Fault_ = f
		return body
	}
	l.close("completed")
	ctx.Session.Remove(ctx, req.This)
	body.Res = new(types.HttpNfcLeaseCompleteResponse)
	return body
}

func (l *exportLease) HttpNfcLeaseAbort(ctx *simulator.Context, req *types.HttpNfcLeaseAbort) soap.HasFault {
	l.close("aborted")
	ctx.Session.Remove(ctx, req.This)
	return &methods.HttpNfcLeaseAbortBody{Res: new(types.HttpNfcLeaseAbortResponse)}
}

// HttpNfcLeaseSetManifestChecksumType (vSphere 6.7+): the digest type of each device URL's
// manifest entry, "sha1" or "sha256"; anything else is InvalidArgument, as on vSphere.
func (l *exportLease) HttpNfcLeaseSetManifestChecksumType(ctx *simulator.Context, req *types.HttpNfcLeaseSetManifestChecksumType) soap.HasFault {
	body := new(methods.HttpNfcLeaseSetManifestChecksumTypeBody)
	if f := l.checkOpen(); f != nil {
		body.Fault_ = f
		return body
	}
	known := make(map[string]bool)
	for _, du := range l.Info.DeviceUrl {
		known[du.Key] = true
	}
	for _, kv := range req.DeviceUrlsToChecksumTypes {
		v := kv.Value
		if !known[kv.Key] || (v != "sha1" && v != "sha256") {
			body.Fault_ = simulator.Fault(fmt.Sprintf("invalid checksum type %q for %q", v, kv.Key),
				&types.InvalidArgument{InvalidProperty: "deviceUrlsToChecksumTypes"})
			return body
		}
	}
	l.mu.Lock()
	for _, kv := range req.DeviceUrlsToChecksumTypes {
		l.checksumTypes[kv.Key] = kv.Value
	}
	l.mu.Unlock()
	body.Res = new(types.HttpNfcLeaseSetManifestChecksumTypeResponse)
	return body
}

// HttpNfcLeaseGetManifest returns, for each file of the lease, the SHA-1 (always, as before 6.7)
// and the checksum of the type SetManifestChecksumType asked for, of the file's bytes: what an
// intact download serves, byte for byte. A tampered lease (tamperMode) declares these too, while
// its downloads serve other bytes.
func (l *exportLease) HttpNfcLeaseGetManifest(ctx *simulator.Context, req *types.HttpNfcLeaseGetManifest) soap.HasFault {
	body := new(methods.HttpNfcLeaseGetManifestBody)
	if f := l.checkOpen(); f != nil {
		body.Fault_ = f
		return body
	}
	res := &types.HttpNfcLeaseGetManifestResponse{}
	for _, du := range l.Info.DeviceUrl {
		d := l.files[path.Base(du.Url)]
		sum, err := digestOf(d.file) // manifest_digest.go
		if err != nil {
			body.Fault_ = simulator.Fault(err.Error(), &types.FileNotFound{FileFault: types.FileFault{File: d.dsPath}})
			return body
		}
		l.mu.Lock()
		typ := l.checksumTypes[du.Key]
		l.mu.Unlock()
		n := sum.size
		entry := types.HttpNfcLeaseManifestEntry{
			Key: du.Key, Sha1: sum.sha1, Size: n, Disk: true, Capacity: d.capKB * 1024, PopulatedSize: n,
		}
		switch typ {
		case "sha1":
			entry.Checksum, entry.ChecksumType = sum.sha1, typ
		case "sha256":
			entry.Checksum, entry.ChecksumType = sum.sha256, typ
		}
		res.Returnval = append(res.Returnval, entry)
	}
	body.Res = res
	return body
}

func (l *exportLease) checkOpen() *soap.Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return simulator.Fault("The lease is no longer valid.", &types.InvalidState{})
	}
	return nil
}

// serveNFC serves GET and HEAD of /nfc/<ticket>/<disk-N.vmdk>: the disk's backing file, byte for
// byte. Like vSphere's NFC URLs the ticket is the credential; no session cookie is needed.
func serveNFC(w http.ResponseWriter, r *http.Request) {
	elem := strings.Split(strings.TrimPrefix(r.URL.Path, nfcPrefix), "/")
	v, ok := tickets.Load(elem[0])
	if !ok {
		simulator.ServeNFC(w, r) // a stock lease (ExportSnapshot, ImportVApp) or unknown: 404
		return
	}
	lease := v.(*exportLease)
	if lease.state() != "open" { // its session ended since
		http.NotFound(w, r)
		return
	}
	if len(elem) != 2 {
		http.NotFound(w, r)
		return
	}
	d, ok := lease.files[elem[1]]
	if !ok {
		http.NotFound(w, r)
		return
	}
	lease.touch(1)
	defer lease.touch(-1)

	f, err := os.Open(d.file)
	if err != nil {
		log.Printf("nfc %s %s: %v", r.Method, r.URL.Path, err)
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if nfcFault(w, r, st.Size(), f) { // faults.go
		return
	}
	if lease.tamper != "" {
		serveTampered(w, r, lease.tamper, st.Size(), f)
		return
	}
	if !nfcChunked {
		http.ServeContent(w, r, d.name, st.ModTime(), f) // Content-Length, Range, HEAD
		return
	}
	// Chunked: like a VMDK generated while it streams, the length is unknown up front.
	w.Header().Set("Accept-Ranges", "none")
	w.WriteHeader(http.StatusOK)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush() // commit the headers without a Content-Length, even for a tiny body
	}
	if r.Method == http.MethodHead {
		return
	}
	n, err := io.Copy(w, f)
	if err != nil {
		log.Printf("nfc GET %s: after %d bytes: %v", r.URL.Path, n, err)
	}
}

// tamperKey is the extraConfig key of a VM whose export leases serve different bytes than their
// manifest declares (a world test sets it with govc vm.change -e, and clears it with an empty
// value). Value "append": a 512-byte zero sector after the disk's bytes, so the VMDK still
// decodes and only the manifest digest can tell. Read when ExportVm makes the lease.
const tamperKey = "vmimport-ext.nfcTamper"

// tamperMode is the VM's tamperKey value, "" when unset or empty; the caller holds vm's lock.
func tamperMode(vm *simulator.VirtualMachine) string {
	if vm.Config == nil {
		return ""
	}
	for _, o := range vm.Config.ExtraConfig {
		if v := o.GetOptionValue(); v.Key == tamperKey {
			if s, ok := v.Value.(string); ok && s == "append" {
				return s
			}
		}
	}
	return ""
}

// serveTampered serves a disk of a tampered lease: Content-Length of what is sent, no ranges.
func serveTampered(w http.ResponseWriter, r *http.Request, mode string, size int64, f io.Reader) {
	const extra = 512
	w.Header().Set("Accept-Ranges", "none")
	w.Header().Set("Content-Length", fmt.Sprint(size+extra))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	n, err := io.Copy(w, f)
	if err == nil {
		_, err = w.Write(make([]byte, extra))
		n += extra
	}
	log.Printf("nfc %s %s: tampered (%s), %d bytes served, err=%v", r.Method, r.URL.Path, mode, n, err)
}
