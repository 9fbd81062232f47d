#pragma once

// A connection to a libvirt daemon through libvirt's own client library (libvirt-dev): the
// remote driver over TLS (qemu+tls://), TCP with SASL (qemu+tcp://) or ssh (qemu+ssh://). The
// Secret's PEM files and ssh key are written for libvirt to read (it reads them only from files)
// into a private 0700 directory (files 0600) that is removed as soon as the open returns.
//
// ssh: libvirt's qemu+ssh runs the `ssh` binary (with ~/.ssh, an agent, a prompt); the
// controller uses libvirt's libssh2 transport instead (Debian's libvirt0 links libssh2 and
// libssh; libssh streamed 6x slower and once crashed inside libvirt in our tests), which takes
// the key and known_hosts as files: `qemu+ssh://user@host:port/system` (or qemu+libssh://) is
// opened as
// `qemu+libssh2://...?keyfile=K&known_hosts=H&known_hosts_verify=normal&sshauth=privkey`. The host
// key must be in known_hosts (an unknown or different one is refused: libvirt asks the auth
// callback to accept it, and it says no); `insecureSkipVerify: "true"` alone makes it
// known_hosts_verify=ignore. On the host, libvirt runs virt-ssh-helper (or nc) to reach libvirtd's
// unix socket.
//
// A stalled peer (libvirtd accepts TCP, then answers nothing) must not hold a caller for ever:
//  - The first Connect registers libvirt's default event loop (virEventRegisterDefaultImpl) and
//    starts one thread that runs it for the life of the process; every connection then gets
//    libvirt's keepalive (virConnectSetKeepAlive(interval, count)): a peer that answers no ping
//    for interval x count seconds has its connection closed, and every call on it fails.
//  - The open itself (TCP, TLS handshake, SASL) has no keepalive: it runs under RunBounded
//    (bounded_call.h) with ConnectOptions::timeout.
//  - Closing a connection is a round trip: ConnectPtr closes it on a thread of its own.
//
// libvirt's objects are thread-safe; each handle here has one owner. Errors of libvirt calls are
// thread-local (virGetLastError): LastError() must be called on the thread of the failed call.

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <chrono>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include "core/result.h"
#include "source/provider.h"

namespace vmimport::source::libvirt {

//! virConnectClose on a thread of its own (a stalled peer holds it up to the keepalive).
void CloseInBackground(virConnectPtr c) noexcept;

struct ConnectDeleter {
  void operator()(virConnectPtr c) const noexcept { CloseInBackground(c); }
};
struct DomainDeleter {
  void operator()(virDomainPtr d) const noexcept { virDomainFree(d); }
};
struct VolumeDeleter {
  void operator()(virStorageVolPtr v) const noexcept { virStorageVolFree(v); }
};
struct PoolDeleter {
  void operator()(virStoragePoolPtr p) const noexcept { virStoragePoolFree(p); }
};
using ConnectPtr = std::unique_ptr<virConnect, ConnectDeleter>;
using DomainPtr = std::unique_ptr<virDomain, DomainDeleter>;
using VolumePtr = std::unique_ptr<virStorageVol, VolumeDeleter>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolDeleter>;

//! A string libvirt allocated (free()d).
std::string TakeString(char* s);

//! The calling thread's last libvirt error as ours, "libvirt: <context>: <libvirt's message>":
//! kUnauthenticated (authentication failed or cancelled), kUnavailable (cannot connect, a
//! broken connection; "tls:" in the message for certificate and handshake failures), kNotFound
//! (no such domain, volume or pool), kInternal otherwise. Resets the error.
core::Error LastError(std::string_view context);

//! Secret keys: SASL `username` and `password`; TLS `ca.crt` (or caCert), `tls.crt` and
//! `tls.key` (the client certificate libvirtd requires); `insecureSkipVerify: "true"` turns
//! the server certificate check off (no_verify=1); nothing else does.
inline constexpr const char* kTlsCertKey = "tls.crt";
inline constexpr const char* kTlsKeyKey = "tls.key";
//! ssh: the private key (OpenSSH or PEM; the key of Kubernetes' kubernetes.io/ssh-auth Secrets)
//! and the host's known_hosts lines ("[host]:port ssh-ed25519 AAAA..." when not port 22).
inline constexpr const char* kSshKeyKey = "ssh-privatekey";
inline constexpr const char* kKnownHostsKey = "known_hosts";

//! What a URI names, checked: qemu+tls, qemu+tcp, qemu+ssh (or qemu+libssh) with a host; no
//! query parameters (the controller sets pkipath, no_verify, keyfile... itself; `command=` of
//! the ssh transport runs programs). Errors: kInvalidArgument for a URI that is not one,
//! kUnsupported for other transports.
struct ParsedUri {
  std::string transport;  //!< "tls", "tcp" or "ssh"
  std::string host;       //!< "host" or "host:port"
  std::string user;       //!< ssh: the user before '@' ("" if none)
  std::string path;       //!< "/system" or "/session"
};
core::Result<ParsedUri> ParseUri(std::string_view uri);

struct ConnectOptions {
  //! The whole open: TCP connect, TLS handshake, SASL.
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  //! libvirt's keepalive: a ping every `keepalive_interval` s; the connection is closed after
  //! `keepalive_count` unanswered ones (so a stalled peer is noticed within about
  //! interval x (count + 1) s). libvirt's own defaults (virsh) are 5 and 6.
  int keepalive_interval = 5;
  unsigned keepalive_count = 3;
};

//! Opens `config.endpoint` with the Secret's credentials, with libvirt's keepalive on. Errors:
//! ParseUri's; kInvalidArgument naming the Secret when a key a transport needs is missing;
//! LastError's; RunBounded's (kCancelled; kUnavailable "... timed out ..."). Safe to call from
//! any thread, any number of times; each call is a connection of its own.
core::Result<ConnectPtr> Connect(std::stop_token stop, const SourceConfig& config,
                                 const ConnectOptions& options = {});

}  // namespace vmimport::source::libvirt
