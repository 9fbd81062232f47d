#pragma once

// A TCP proxy on 127.0.0.1 (port 0) for fault injection in world tests: it forwards bytes to a
// target until Cut() closes every connection and makes new ones fail at once; Restore() lets
// them through again. CutAfter(n, times) drops the next `times` connections that carry more than
// n bytes from the target, exactly at byte n (a download cut mid-body). TLS passes through
// untouched.

#include <atomic>
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
  int connections_accepted() const { return accepted_.load(); }
  //! Connections dropped by CutAfter so far.
  int cuts_done() const { return cuts_done_.load(); }

 private:
  void AcceptLoop(std::stop_token stop);
  void Pump(std::stop_token stop, int client_fd);

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
  std::mutex mu_;  // guards pumps_
  std::vector<std::jthread> pumps_;
  std::jthread acceptor_;
};

}  // namespace vmimport::testing
