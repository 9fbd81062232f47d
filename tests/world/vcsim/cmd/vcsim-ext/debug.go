package main

// "GET /vmimport/debug": read-only, no credentials (loopback only, like the rest of vcsim-ext).
// Lists every export lease made so far with its state, and the live sessions, for world tests that
// check what an import left behind on the source side (no open lease, no session of ours).
//
// A lease lives as long as the session that made it, as on vSphere: once that session is gone
// (Logout, TerminateSession, idle expiry) the lease counts as ended and its URLs answer 404.

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

func init() {
	simulator.RegisterEndpoint(func(s *simulator.Service, r *simulator.Registry) {
		s.Handle("GET /vmimport/debug", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			serveDebug(w, r)
		}))
	})
}

// sessionGone: the session that made l has ended (vSphere then releases the lease with it).
func (l *exportLease) sessionGone() bool {
	sm := l.ctx.Map.SessionManager()
	res, ok := sm.SessionIsActive(l.ctx, &types.SessionIsActive{
		SessionID: l.ctx.Session.Key, UserName: l.ctx.Session.UserName,
	}).(*methods.SessionIsActiveBody)
	return ok && res.Res != nil && !res.Res.Returnval
}

// state is the lease's state for /vmimport/debug: open, or why it closed. A lease whose session
// ended is closed here, lazily.
func (l *exportLease) state() string {
	l.mu.Lock()
	closed, outcome := l.closed, l.outcome
	l.mu.Unlock()
	if closed {
		return outcome
	}
	if l.sessionGone() {
		l.close("sessionEnded")
		return "sessionEnded"
	}
	return "open"
}

// serveDebug answers GET /vmimport/debug: every lease made so far with its state (open,
// completed, aborted, expired, sessionEnded) and the live sessions, as JSON.
func serveDebug(w http.ResponseWriter, m *simulator.Registry) {
	type leaseView struct {
		Lease   string    `json:"lease"`
		VM      string    `json:"vm"`
		VMRef   string    `json:"vmRef"`
		Session string    `json:"session"`
		State   string    `json:"state"`
		Created time.Time `json:"created"`
	}
	type sessionView struct {
		Key        string    `json:"key"`
		User       string    `json:"user"`
		UserAgent  string    `json:"userAgent"`
		LoginTime  time.Time `json:"loginTime"`
		LastActive time.Time `json:"lastActive"`
	}
	out := struct {
		Leases   []leaseView   `json:"leases"`
		Sessions []sessionView `json:"sessions"`
	}{Leases: []leaseView{}, Sessions: []sessionView{}}
	allLeasesMu.Lock()
	leases := append([]*exportLease(nil), allLeases...)
	allLeasesMu.Unlock()
	for _, l := range leases {
		out.Leases = append(out.Leases, leaseView{
			Lease: l.Self.Value, VM: l.vm, VMRef: l.vmRef, Session: l.ctx.Session.Key,
			State: l.state(), Created: l.created,
		})
	}
	// A session's view of SessionManager carries sessionList (what govc session.ls reads).
	view := &simulator.Session{Registry: simulator.NewRegistry(), Map: m}
	ref := types.ManagedObjectReference{Type: "SessionManager", Value: "SessionManager"}
	if sm, ok := view.Get(ref).(*simulator.SessionManager); ok {
		for _, s := range sm.SessionList {
			out.Sessions = append(out.Sessions, sessionView{
				Key: s.Key, User: s.UserName, UserAgent: s.UserAgent, LoginTime: s.LoginTime,
				LastActive: s.LastActiveTime,
			})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
