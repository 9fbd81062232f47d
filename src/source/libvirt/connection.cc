#include "source/libvirt/connection.h"

#include <libvirt/virterror.h>
#include <openssl/crypto.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "core/strings.h"
#include "source/importer.h"
#include "source/libvirt/bounded_call.h"
#include "source/tls.h"

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

// libvirt prints every error to stderr unless a handler is set; ours are returned instead.
void IgnoreError(void* /*user_data*/, virErrorPtr /*error*/) {}

// libvirt's default event loop, run by one thread for the life of the process: keepalive and
// stream events need it, and it must be registered before the first connection opens.
//
// At exit the loop is stopped before the libraries under libvirt tear down: a connection's last
// reference is often dropped on the loop thread after virConnectClose has returned (libvirt frees
// a removed watch's data from an idle callback), and that closes its ssh channel, which draws
// random bytes from OpenSSL. Running while OPENSSL_cleanup frees OpenSSL's locks, it crashed the
// process after main returned. Never destroyed: the loop thread may outlive the static objects.
struct EventLoop {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool stopped = false;
  int wake_fd = -1;  // an eventfd the loop watches: written at exit to wake it
};
EventLoop& Loop() {
  static auto* loop = new EventLoop;  // NOLINT(cppcoreguidelines-owning-memory)
  return *loop;
}

// The loop's watch on wake_fd: takes the wake-up, so that poll does not return at once again.
void TakeWakeUp(int /*watch*/, int fd, int /*events*/, void* /*opaque*/) {
  uint64_t n = 0;
  (void)!read(fd, &n, sizeof(n));
}

// Runs at exit, before OPENSSL_cleanup (registered after OpenSSL's own atexit handler) and after
// WaitForReleasesAtExit (registered later still, by the first release). Wakes the loop through
// its eventfd (no libvirt call from this thread: glib's state is the loop's) and waits up to 5 s
// for it to finish the callback it runs; past that the process exits anyway.
void StopEventLoopAtExit() {
  EventLoop& loop = Loop();
  std::unique_lock lock(loop.mu);
  loop.stop = true;
  const uint64_t one = 1;
  (void)!write(loop.wake_fd, &one, sizeof(one));
  loop.cv.wait_for(lock, std::chrono::seconds(5), [&] { return loop.stopped; });
}

void InitLibvirtOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // OpenSSL registers its own cleanup at exit when first initialised; done here, before ours,
    // its cleanup runs after ours (atexit handlers run in reverse order).
    OPENSSL_init_crypto(0, nullptr);
    virInitialize();
    virSetErrorFunc(nullptr, IgnoreError);
    if (virEventRegisterDefaultImpl() < 0) {
      virResetLastError();  // then libvirt runs without keepalive: RunBounded still bounds calls
      return;
    }
    EventLoop& loop = Loop();
    int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd >= 0 &&
        virEventAddHandle(wake_fd, VIR_EVENT_HANDLE_READABLE, TakeWakeUp, nullptr, nullptr) < 0) {
      virResetLastError();  // the loop then cannot be stopped at exit: it runs as before
      close(wake_fd);
      wake_fd = -1;
    }
    {
      std::lock_guard lock(loop.mu);
      loop.wake_fd = wake_fd;
    }
    std::thread([&loop] {
      for (;;) {
        {
          std::lock_guard lock(loop.mu);
          if (loop.stop) {
            loop.stopped = true;
            loop.cv.notify_all();
            return;
          }
        }
        if (virEventRunDefaultImpl() < 0) {
          virResetLastError();
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    }).detach();
    if (wake_fd >= 0) {
      std::atexit(StopEventLoopAtExit);
    }
  });
}

bool Mentions(const std::string& text, std::initializer_list<const char*> words) {
  const std::string lower = core::ToLower(text);
  for (const char* w : words) {
    if (lower.find(w) != std::string::npos) {
      return true;
    }
  }
  return false;
}

struct Credentials {
  std::string username;
  std::string password;
};

// SASL asks for the user (VIR_CRED_AUTHNAME) and the password (VIR_CRED_PASSPHRASE); libvirt
// frees each result with free().
int AuthCallback(virConnectCredentialPtr cred, unsigned int ncred, void* cbdata) {
  const auto* c = static_cast<const Credentials*>(cbdata);
  for (unsigned int i = 0; i < ncred; ++i) {
    const std::string* value = nullptr;
    switch (cred[i].type) {
      case VIR_CRED_AUTHNAME:
      case VIR_CRED_USERNAME: value = &c->username; break;
      case VIR_CRED_PASSPHRASE: value = &c->password; break;
      default: return -1;
    }
    if (value->empty()) {
      return -1;
    }
    char* copy = strdup(value->c_str());
    if (copy == nullptr) {
      return -1;
    }
    cred[i].result = copy;
    cred[i].resultlen = static_cast<unsigned int>(value->size());
  }
  return 0;
}

// A directory of our own (0700) for the PEM files libvirt reads at connect time; removed with
// this object.
class PkiDir {
 public:
  static core::Result<PkiDir> Create() {
    std::string templ =
        (std::filesystem::temp_directory_path() / "vmimport-libvirt-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) {
      return MakeError(ErrorCode::kInternal,
                       std::string("libvirt: cannot make a directory for the key files: ") +
                           std::strerror(errno));
    }
    return PkiDir(templ);
  }
  PkiDir(PkiDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  PkiDir& operator=(PkiDir&&) = delete;
  PkiDir(const PkiDir&) = delete;
  PkiDir& operator=(const PkiDir&) = delete;
  ~PkiDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  core::Status Write(const std::string& name, const std::string& data) const {
    const std::string file = path_ + "/" + name;
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out << data;
      if (!out) {
        return MakeError(ErrorCode::kInternal, "libvirt: cannot write " + file);
      }
    }
    chmod(file.c_str(), S_IRUSR | S_IWUSR);
    return {};
  }
  const std::string& path() const { return path_; }

 private:
  explicit PkiDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

std::string SecretValue(const SourceConfig& config, const char* key) {
  auto it = config.secret.find(key);
  return it == config.secret.end() ? "" : it->second;
}

}  // namespace

void CloseInBackground(virConnectPtr c) noexcept {
  ReleaseInBackground([c] {
    virConnectClose(c);
    virResetLastError();
  });
}

std::string TakeString(char* s) {
  if (s == nullptr) {
    return "";
  }
  std::string out(s);
  // NOLINTNEXTLINE(cppcoreguidelines-no-malloc,cppcoreguidelines-owning-memory): libvirt's malloc
  std::free(s);
  return out;
}

core::Error LastError(std::string_view context) {
  const virErrorPtr e = virGetLastError();
  std::string message = "libvirt: " + std::string(context);
  if (e == nullptr) {
    return core::Error{ErrorCode::kInternal, message + ": failed without saying why"};
  }
  const std::string text = e->message != nullptr ? e->message : "";
  const int code = e->code;
  virResetLastError();
  message += ": " + text;
  if (Mentions(text, {"host key"})) {  // ssh: unknown or different, before auth failures
    return core::Error{ErrorCode::kUnavailable, "ssh host key: " + message};
  }
  if (Mentions(text, {"failed to authenticate"})) {  // ssh: the key was refused
    return core::Error{ErrorCode::kUnauthenticated, message};
  }
  if (code == VIR_ERR_AUTH_FAILED || code == VIR_ERR_AUTH_CANCELLED ||
      code == VIR_ERR_AUTH_UNAVAILABLE) {
    return core::Error{ErrorCode::kUnauthenticated, message};
  }
  if (code == VIR_ERR_NO_DOMAIN || code == VIR_ERR_NO_STORAGE_VOL ||
      code == VIR_ERR_NO_STORAGE_POOL) {
    return core::Error{ErrorCode::kNotFound, message};
  }
  if (Mentions(text, {"certificate", "tls", "gnutls", "handshake"})) {
    return core::Error{ErrorCode::kUnavailable, "tls: " + message};
  }
  if (code == VIR_ERR_SYSTEM_ERROR || code == VIR_ERR_RPC || code == VIR_ERR_NO_CONNECT ||
      code == VIR_ERR_INVALID_CONN ||
      Mentions(text, {"connection", "unable to connect", "end of file", "closed"})) {
    return core::Error{ErrorCode::kUnavailable, message};
  }
  return core::Error{ErrorCode::kInternal, message};
}

core::Result<ParsedUri> ParseUri(std::string_view uri) {
  const auto sep = uri.find("://");
  if (sep == std::string_view::npos) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "libvirt: uri '" + std::string(uri) +
            "' is not a libvirt URI (qemu+tls://host/system or qemu+tcp://host/system)");
  }
  const std::string scheme = core::ToLower(uri.substr(0, sep));
  if (scheme != "qemu+tls" && scheme != "qemu+tcp" && scheme != "qemu+ssh" &&
      scheme != "qemu+libssh") {
    return MakeError(ErrorCode::kUnsupported,
                     "libvirt: transport '" + scheme +
                         "' is not supported: use qemu+tls://, qemu+ssh:// or qemu+tcp:// (SASL)");
  }
  if (uri.find('?') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "libvirt: uri may not carry parameters (the controller sets them from the "
                     "Secret)");
  }
  const std::string host = HostOfUrl(uri);
  if (host.empty() || host.starts_with(":")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "libvirt: uri '" + std::string(uri) + "' names no host");
  }
  const auto path_start = uri.find('/', sep + 3);
  const std::string authority(uri.substr(sep + 3, path_start == std::string_view::npos
                                                      ? std::string_view::npos
                                                      : path_start - sep - 3));
  const auto at = authority.rfind('@');
  const std::string user = at == std::string::npos ? "" : authority.substr(0, at);
  const std::string path =
      path_start == std::string_view::npos ? "" : std::string(uri.substr(path_start));
  if (path != "/system" && path != "/session") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "libvirt: uri '" + std::string(uri) + "' must end in /system or /session");
  }
  const std::string transport = scheme == "qemu+libssh" ? "ssh" : scheme.substr(5);
  if (!user.empty() && transport != "ssh") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "libvirt: uri '" + std::string(uri) +
                         "' names a user: only ssh takes one (SASL's is in the Secret)");
  }
  return ParsedUri{transport, host, user, path};
}

core::Result<ConnectPtr> Connect(std::stop_token stop, const SourceConfig& config,
                                 const ConnectOptions& options) {
  InitLibvirtOnce();
  auto parsed = ParseUri(config.endpoint);
  if (!parsed) {
    return MakeError(parsed.error());
  }
  const std::string secret = SecretName(config);
  auto creds = std::make_shared<const Credentials>(
      Credentials{SecretValue(config, "username"), SecretValue(config, "password")});
  if (parsed->transport != "ssh" && (creds->username.empty() || creds->password.empty())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     secret + ": libvirt needs 'username' and 'password' (SASL)");
  }
  auto tls = TlsFromSecret(config.secret);  // checks insecureSkipVerify's value
  if (!tls) {
    return MakeError(tls.error());
  }
  std::string uri = config.endpoint;
  std::shared_ptr<PkiDir> pki;
  if (parsed->transport == "tls") {
    std::string ca;
    for (const char* key : kCaKeys) {
      ca = SecretValue(config, key);
      if (!ca.empty()) {
        break;
      }
    }
    const std::string cert = SecretValue(config, kTlsCertKey);
    const std::string key = SecretValue(config, kTlsKeyKey);
    if (cert.empty() || key.empty() || (ca.empty() && !tls->insecure_skip_verify)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       secret +
                           ": qemu+tls needs 'tls.crt' and 'tls.key' (the client "
                           "certificate libvirtd requires) and 'ca.crt'");
    }
    auto dir = PkiDir::Create();
    if (!dir) {
      return MakeError(dir.error());
    }
    pki = std::make_shared<PkiDir>(std::move(*dir));
    for (const auto& [name, data] :
         {std::pair<const char*, const std::string&>{"clientcert.pem", cert},
          {"clientkey.pem", key},
          {"cacert.pem", ca}}) {
      if (data.empty()) {
        continue;
      }
      if (auto w = pki->Write(name, data); !w) {
        return MakeError(w.error());
      }
    }
    uri += "?pkipath=" + pki->path();
    if (tls->insecure_skip_verify) {
      uri += "&no_verify=1";
    }
  }
  if (parsed->transport == "ssh") {
    const std::string key = SecretValue(config, kSshKeyKey);
    const std::string known_hosts = SecretValue(config, kKnownHostsKey);
    if (key.empty() || (known_hosts.empty() && !tls->insecure_skip_verify)) {
      return MakeError(ErrorCode::kInvalidArgument, secret + ": qemu+ssh needs '" + kSshKeyKey +
                                                        "' (the private key) and '" +
                                                        kKnownHostsKey + "' (the host's key)");
    }
    auto dir = PkiDir::Create();
    if (!dir) {
      return MakeError(dir.error());
    }
    pki = std::make_shared<PkiDir>(std::move(*dir));
    // An OpenSSH key must end in a newline; a Secret's value may not.
    const std::string key_file = key.ends_with('\n') ? key : key + "\n";
    if (auto w = pki->Write("id", key_file); !w) {
      return MakeError(w.error());
    }
    if (auto w = pki->Write("known_hosts", known_hosts + "\n"); !w) {
      return MakeError(w.error());
    }
    std::string user = parsed->user;
    if (user.empty()) {
      user = creds->username.empty() ? "root" : creds->username;
    }
    uri = "qemu+libssh2://" + user + "@" + parsed->host + parsed->path + "?keyfile=" + pki->path() +
          "/id&known_hosts=" + pki->path() +
          "/known_hosts&known_hosts_verify=" + (tls->insecure_skip_verify ? "ignore" : "normal") +
          "&sshauth=privkey";
  }
  // The open runs on a thread of its own; the key files go when it returns.
  const std::string host = parsed->host;
  return RunBounded<ConnectPtr>(
      stop, options.timeout, host, "connect to " + host,
      [uri, creds, pki, host, options]() -> core::Result<ConnectPtr> {
        int cred_types[] = {VIR_CRED_AUTHNAME, VIR_CRED_USERNAME, VIR_CRED_PASSPHRASE};
        virConnectAuth auth{cred_types, 3, AuthCallback,
                            const_cast<Credentials*>(creds.get())};  // NOLINT: libvirt's void*
        virConnectPtr conn = virConnectOpenAuth(uri.c_str(), &auth, 0);
        if (conn == nullptr) {
          return MakeError(LastError("connect to " + host));  // no scheme: "tls:" means TLS
        }
        ConnectPtr owned(conn);
        // 1: the peer does not speak keepalive (libvirt before 0.9.8): it runs without.
        if (virConnectSetKeepAlive(conn, options.keepalive_interval, options.keepalive_count) < 0) {
          return MakeError(LastError("keepalive of the connection to " + host));
        }
        return owned;
      });
}

}  // namespace vmimport::source::libvirt
