#pragma once

// A TCP proxy on 127.0.0.1 (port 0) for fault injection in world tests: it forwards bytes to a
// target until Cut() closes every connection and makes new ones fail at once; Restore() lets
// them through again. CutAfter(n, times) drops the next `times` connections that carry more than
// n bytes from the target, exactly at byte n (a download cut mid-body). LimitRate(b) caps what
// each connection carries from the target at b bytes per second (a slow consumer). TLS passes
// through untouched. Also linked into harvester-sim, as the relay in front of Longhorn's
// downloader (--rate, --disconnect-after).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vmimport::testing {

class TcpProxy {
 public:
  TcpProxy(std::string target_host, int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  void Cut();
  void Restore();
  //! Arms `times` cuts: each of the next connections to carry more than `bytes` bytes from the
  //! target to the client gets exactly `bytes` of them, then both sides are closed.
  void CutAfter(uint64_t bytes, int times);
  //! Caps each connection's bytes from the target at `bytes_per_second` from its start (0: no
  //! cap). Applies to connections accepted afterwards and to those already open.
  void LimitRate(double bytes_per_second);
  int connections_accepted() const { return accepted_.load(); }
  //! Connections dropped by CutAfter so far.
  int cuts_done() const { return cuts_done_.load(); }

 private:
  void AcceptLoop(std::stop_token stop);
  void Pump(std::stop_token stop, int client_fd);
  void Throttle(const std::stop_token& stop, int gen, std::chrono::steady_clock::time_point started,
                uint64_t bytes);

  std::string target_host_;
  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> cut_{false};
  std::atomic<int> generation_{0};  // bumped by Cut: pumps of older generations close
  std::atomic<int> accepted_{0};
  std::atomic<uint64_t> cut_after_bytes_{0};
  std::atomic<int> cuts_armed_{0};
  std::atomic<int> cuts_done_{0};
  std::atomic<double> rate_{0};
  std::mutex mu_;  // guards pumps_
  std::vector<std::jthread> pumps_;
  std::jthread acceptor_;
};

}  // namespace vmimport::testing
