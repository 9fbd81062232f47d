package main

// The fault switch: a test-only HTTP endpoint that makes the next calls of a SOAP method, the next
// NFC downloads or the next export leases fail, so that world tests can check that the controller
// retries, or fails with a clear reason, and never takes a short disk. Loopback only, like the
// rest of vcsim-ext; no login (it is test harness, and the world listens on 127.0.0.1 only).
//
//	POST   /vmimport-ext/faults?target=T&count=N[&fault=F][&after=BYTES]   arm (adds N to T)
//	GET    /vmimport-ext/faults   {"armed":{T:N},"injected":{T:N},"openLeases":[moref...]}
//	DELETE /vmimport-ext/faults   disarm everything and zero the counters
//
// Targets:
//
//	method:<Name>     the next N SOAP calls of <Name> (PowerOffVM_Task, ShutdownGuest, ExportVm,
//	                  HttpNfcLeaseProgress, HttpNfcLeaseComplete, ...) answer fault F
//	nfc-status        the next N NFC downloads answer 503 before any body byte
//	nfc-cut           the next N NFC downloads promise the whole length, send BYTES body bytes
//	                  (default 1 MiB) and drop the connection
//	lease-error       the next N ExportVm calls return a lease already in state error (fault F)
//	lease-host-star   the next N ExportVm leases name their host "*" in the device URLs, as ESXi
//	                  does: the client resolves it against its own SDK URL (e.g. through a proxy)
//
// Faults F: SystemError (default), NoPermission, InvalidState, Timedout, HostCommunication.

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const faultsPath = "/vmimport-ext/faults"

type faultArm struct {
	count int
	fault string
	after int64
}

var faults = struct {
	sync.Mutex
	armed    map[string]*faultArm
	injected map[string]int
}{armed: map[string]*faultArm{}, injected: map[string]int{}}

// takeFault consumes one armed fault of target; ok is false when none is armed.
func takeFault(target string) (arm faultArm, ok bool) {
	faults.Lock()
	defer faults.Unlock()
	a := faults.armed[target]
	if a == nil || a.count <= 0 {
		return faultArm{}, false
	}
	a.count--
	if a.count == 0 {
		delete(faults.armed, target)
	}
	faults.injected[target]++
	log.Printf("fault injected: %s (%s)", target, a.fault)
	return *a, true
}

func methodFault(name string) types.BaseMethodFault {
	const reason = "fault injected by the vcsim-ext fault switch"
	switch name {
	case "NoPermission":
		return &types.NoPermission{PrivilegeId: "VirtualMachine.Provisioning.GetVmFiles"}
	case "InvalidState":
		return &types.InvalidState{}
	case "Timedout":
		return &types.Timedout{}
	case "HostCommunication":
		return &types.HostCommunication{}
	default:
		return &types.SystemError{Reason: reason}
	}
}

func knownFault(name string) bool {
	switch name {
	case "SystemError", "NoPermission", "InvalidState", "Timedout", "HostCommunication":
		return true
	}
	return false
}

// injectMethodFault is called first by the Registry.Handler hook, for every SOAP call.
func injectMethodFault(method *simulator.Method) types.BaseMethodFault {
	if arm, ok := takeFault("method:" + method.Name); ok {
		return methodFault(arm.fault)
	}
	return nil
}

// openLeases counts the leases still open: not completed, aborted or expired, and their session
// alive (a lease ends with its session, as on vSphere; see debug.go).
func openLeases() []string {
	open := []string{}
	tickets.Range(func(_, v any) bool {
		if l := v.(*exportLease); l.state() == "open" {
			open = append(open, l.Self.Value)
		}
		return true
	})
	return open
}

func serveFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		q := r.URL.Query()
		target := q.Get("target")
		count, err := strconv.Atoi(q.Get("count"))
		if err != nil || count <= 0 {
			http.Error(w, "count must be a positive integer", http.StatusBadRequest)
			return
		}
		fault := q.Get("fault")
		if fault == "" {
			fault = "SystemError"
		}
		if !knownFault(fault) {
			http.Error(w, "unknown fault "+fault, http.StatusBadRequest)
			return
		}
		after := int64(1 << 20)
		if s := q.Get("after"); s != "" {
			if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
				http.Error(w, "after must be a byte count", http.StatusBadRequest)
				return
			}
		}
		switch {
		case strings.HasPrefix(target, "method:") && len(target) > len("method:"):
		case target == "nfc-status", target == "nfc-cut", target == "lease-error", target == "lease-host-star":
		default:
			http.Error(w, "unknown target "+target, http.StatusBadRequest)
			return
		}
		faults.Lock()
		a := faults.armed[target]
		if a == nil {
			a = &faultArm{}
			faults.armed[target] = a
		}
		a.count += count
		a.fault = fault
		a.after = after
		faults.Unlock()
		log.Printf("fault armed: %s x%d (%s, after %d bytes)", target, count, fault, after)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		faults.Lock()
		faults.armed = map[string]*faultArm{}
		faults.injected = map[string]int{}
		faults.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		faults.Lock()
		out := struct {
			Armed      map[string]int `json:"armed"`
			Injected   map[string]int `json:"injected"`
			OpenLeases []string       `json:"openLeases"` // morefs
		}{Armed: map[string]int{}, Injected: map[string]int{}}
		for k, v := range faults.armed {
			out.Armed[k] = v.count
		}
		for k, v := range faults.injected {
			out.Injected[k] = v
		}
		faults.Unlock()
		out.OpenLeases = openLeases()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	default:
		http.Error(w, "GET, POST or DELETE", http.StatusMethodNotAllowed)
	}
}

// nfcFault answers an NFC GET with an armed nfc-status or nfc-cut fault; false when none is armed.
func nfcFault(w http.ResponseWriter, r *http.Request, size int64, body io.Reader) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if _, ok := takeFault("nfc-status"); ok {
		http.Error(w, "fault injected by the vcsim-ext fault switch", http.StatusServiceUnavailable)
		return true
	}
	arm, ok := takeFault("nfc-cut")
	if !ok {
		return false
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	n, _ := io.CopyN(w, body, min(arm.after, size))
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	log.Printf("nfc GET %s: cut after %d of %d bytes (fault switch)", r.URL.Path, n, size)
	panic(http.ErrAbortHandler) // drops the connection: the body stays short of its length
}

func registerFaultSwitch(s *simulator.Service) {
	s.Handle(faultsPath, http.HandlerFunc(serveFaults))
}
