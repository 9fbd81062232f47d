#include "world/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

namespace vmimport::testing {
namespace {

int ConnectTo(const std::string& host, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

TcpProxy::TcpProxy(std::string target_host, int target_port)
    : target_host_(std::move(target_host)), target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(listen_fd_, 64);
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::jthread([this](std::stop_token stop) { AcceptLoop(stop); });
}

TcpProxy::~TcpProxy() {
  acceptor_.request_stop();
  acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (auto& p : pumps_) {
      p.request_stop();
    }
    pumps_.clear();  // joins
  }
  close(listen_fd_);
}

void TcpProxy::Cut() {
  cut_ = true;
  generation_++;
}

void TcpProxy::Restore() { cut_ = false; }

void TcpProxy::CutAfter(uint64_t bytes, int times) {
  cut_after_bytes_ = bytes;
  cuts_armed_ = times;
}

void TcpProxy::LimitRate(double bytes_per_second) { rate_ = bytes_per_second; }

void TcpProxy::AcceptLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) {
      continue;
    }
    const int client = accept(listen_fd_, nullptr, nullptr);
    if (client < 0) {
      continue;
    }
    if (cut_) {
      close(client);  // refused while cut
      continue;
    }
    accepted_++;
    std::lock_guard lock(mu_);
    pumps_.emplace_back([this, client](std::stop_token s) { Pump(s, client); });
  }
}

void TcpProxy::Pump(std::stop_token stop, int client_fd) {
  const int gen = generation_.load();
  const int upstream = ConnectTo(target_host_, target_port_);
  if (upstream < 0) {
    close(client_fd);
    return;
  }
  std::array<char, 64 * 1024> buf{};
  pollfd fds[2] = {{client_fd, POLLIN, 0}, {upstream, POLLIN, 0}};
  uint64_t downstream = 0;  // bytes from the target to the client on this connection
  const auto started = std::chrono::steady_clock::now();
  while (!stop.stop_requested() && generation_.load() == gen) {
    if (poll(fds, 2, 50) <= 0) {
      continue;
    }
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        continue;
      }
      ssize_t n = read(fds[i].fd, buf.data(), buf.size());
      if (n <= 0) {
        done = true;
        break;
      }
      if (i == 1) {
        const uint64_t limit = cut_after_bytes_.load();
        if (cuts_armed_.load() > 0 && downstream + static_cast<uint64_t>(n) > limit) {
          int armed = cuts_armed_.load();
          while (armed > 0 && !cuts_armed_.compare_exchange_weak(armed, armed - 1)) {
          }
          if (armed > 0) {  // this connection is cut: forward up to the limit, then close
            n = downstream >= limit ? 0 : static_cast<ssize_t>(limit - downstream);
            done = true;
            cuts_done_++;
          }
        }
        downstream += static_cast<uint64_t>(n);
      }
      const int out = fds[1 - i].fd;
      ssize_t off = 0;
      while (off < n) {
        const ssize_t w = write(out, buf.data() + off, static_cast<size_t>(n - off));
        if (w <= 0) {
          done = true;
          break;
        }
        off += w;
      }
      if (i == 1 && !done) {
        Throttle(stop, gen, started, downstream);
      }
    }
    if (done) {
      break;
    }
  }
  close(upstream);
  close(client_fd);
}

// Sleeps until `bytes` are due at the configured rate, in slices that notice a stop or a Cut.
void TcpProxy::Throttle(const std::stop_token& stop, int gen,
                        std::chrono::steady_clock::time_point started, uint64_t bytes) {
  const double rate = rate_.load();
  if (rate <= 0) {
    return;
  }
  const auto due = started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(static_cast<double>(bytes) / rate));
  while (!stop.stop_requested() && generation_.load() == gen) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= due) {
      return;
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(due - now, std::chrono::milliseconds(50)));
  }
}

}  // namespace vmimport::testing
