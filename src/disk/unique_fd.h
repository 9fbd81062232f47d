#pragma once

// RAII owner of a POSIX file descriptor: move-only, closes in the destructor.

#include <unistd.h>

#include <utility>

namespace vmimport::disk {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  //! Hands the descriptor out; this object no longer closes it.
  int Release() { return std::exchange(fd_, -1); }
  //! Closes now and returns close(2)'s result (0 when there was nothing to close).
  int Reset() {
    if (fd_ < 0) {
      return 0;
    }
    return ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

}  // namespace vmimport::disk
