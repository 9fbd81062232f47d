#pragma once

// A real HTTP server (cpp-httplib) on 127.0.0.1, port 0, running on its own thread for one test:
// the peer of the unit tests of the HTTP client and of what streams through it.

#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>

namespace vmimport::testing {

class LocalServer {
 public:
  LocalServer() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::jthread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~LocalServer() { server_.stop(); }
  LocalServer(const LocalServer&) = delete;
  LocalServer& operator=(const LocalServer&) = delete;

  httplib::Server& server() { return server_; }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::jthread thread_;
};

//! Under ThreadSanitizer, makes one request to a throwaway server before any test runs. Debian's
//! cpp-httplib is a shared library built without TSan, and its first request initialises
//! function-local statics (the set of HTTP methods in the request-line parser, the Range regex).
//! The initialisation is thread-safe, but the guard's fast path runs in uninstrumented code, so
//! TSan cannot see it and reports the first two concurrent requests of a process as a race. Done
//! here, on a server whose threads are joined before any test starts, the initialisation
//! happens-before every later thread. A no-op in other builds.
inline void InitHttplibStaticsForTsan() {
#if defined(__SANITIZE_THREAD__)
  LocalServer local;
  local.server().Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("x", "text/plain");
  });
  httplib::Client client(local.Url(""));
  (void)client.Get("/", {{"Range", "bytes=0-0"}});
#endif
}

}  // namespace vmimport::testing
