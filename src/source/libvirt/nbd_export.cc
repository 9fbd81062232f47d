#include "source/libvirt/nbd_export.h"

#include <libnbd.h>

#include <algorithm>

namespace vmimport::source::libvirt {

using core::ErrorCode;
using core::MakeError;

namespace {

// libnbd's NBD_NULL_COMPLETION is a C compound literal.
constexpr nbd_completion_callback kNoCompletion{nullptr, nullptr, nullptr};

core::Error NbdError(ErrorCode code, const std::string& what) {
  const char* msg = nbd_get_error();
  return core::Error{code, "nbd: " + what + ": " + (msg != nullptr ? msg : "failed")};
}

struct StatusCall {
  std::vector<warm::ChangedRange>* out = nullptr;
  StatusContext context = StatusContext::kAllocation;
  const std::string* context_name = nullptr;
  uint64_t size = 0;
  uint64_t next = 0;  // where the answer ended
};

int OnExtents(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries,
              size_t nr_entries, int* /*error*/) {
  auto* call = static_cast<StatusCall*>(user_data);
  if (*call->context_name != metacontext) {
    return 0;  // another context (none is asked for; ignore)
  }
  call->next = AddBlockStatus(*call->out, call->context, offset,
                              std::span<const uint32_t>(entries, nr_entries), call->size);
  return 0;
}

}  // namespace

core::Result<std::unique_ptr<NbdExport>> NbdExport::Open(const std::string& socket,
                                                         const std::string& export_name,
                                                         StatusContext context,
                                                         const std::string& context_name,
                                                         Options options) {
  nbd_handle* h = nbd_create();
  if (h == nullptr) {
    return MakeError(NbdError(ErrorCode::kInternal, "create a handle"));
  }
  std::unique_ptr<nbd_handle, int (*)(nbd_handle*)> guard(h, [](nbd_handle* p) {
    nbd_close(p);
    return 0;
  });
  const std::string what = "export " + export_name + " on " + socket;
  if (nbd_set_export_name(h, export_name.c_str()) < 0 ||
      nbd_add_meta_context(h, context_name.c_str()) < 0) {
    return MakeError(NbdError(ErrorCode::kInternal, what));
  }
  // The connect is local (a unix socket) and quick; libnbd's synchronous call.
  if (nbd_connect_unix(h, socket.c_str()) < 0) {
    return MakeError(NbdError(ErrorCode::kUnavailable, "connect to " + what));
  }
  if (nbd_can_meta_context(h, context_name.c_str()) != 1) {
    return MakeError(ErrorCode::kUnavailable,
                     "nbd: " + what + " does not offer the meta context " + context_name);
  }
  const int64_t size = nbd_get_size(h);
  if (size < 0) {
    return MakeError(NbdError(ErrorCode::kUnavailable, "size of " + what));
  }
  return std::unique_ptr<NbdExport>(new NbdExport(
      guard.release(), export_name, context, context_name, static_cast<uint64_t>(size), options));
}

NbdExport::NbdExport(nbd_handle* h, std::string name, StatusContext context,
                     std::string context_name, uint64_t size, Options options)
    : h_(h),
      name_(std::move(name)),
      context_(context),
      context_name_(std::move(context_name)),
      size_(size),
      options_(options) {}

NbdExport::~NbdExport() {
  if (!broken_) {
    nbd_shutdown(h_, 0);
  }
  nbd_close(h_);
}

core::Status NbdExport::Wait(std::stop_token stop, int64_t cookie, const char* what) {
  if (cookie < 0) {
    broken_ = true;
    return MakeError(NbdError(ErrorCode::kUnavailable, std::string(what) + " of export " + name_));
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  for (;;) {
    const int done = nbd_aio_command_completed(h_, static_cast<uint64_t>(cookie));
    if (done == 1) {
      return {};
    }
    if (done < 0) {
      // A command error (EIO of the server) leaves the connection usable; a dead one does not.
      if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1) {
        broken_ = true;
        return MakeError(
            NbdError(ErrorCode::kUnavailable, std::string(what) + " of export " + name_));
      }
      return MakeError(NbdError(ErrorCode::kInternal, std::string(what) + " of export " + name_));
    }
    if (stop.stop_requested()) {
      broken_ = true;
      return MakeError(ErrorCode::kCancelled,
                       "nbd: " + std::string(what) + " of export " + name_ + " cancelled");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      broken_ = true;
      return MakeError(ErrorCode::kUnavailable,
                       "nbd: " + std::string(what) + " of export " + name_ + " timed out");
    }
    if (nbd_poll(h_, 100) < 0) {
      broken_ = true;
      return MakeError(
          NbdError(ErrorCode::kUnavailable, std::string(what) + " of export " + name_));
    }
  }
}

core::Result<std::vector<warm::ChangedRange>> NbdExport::Ranges(std::stop_token stop) {
  if (broken_) {
    return MakeError(ErrorCode::kUnavailable, "nbd: export " + name_ + " is broken");
  }
  std::vector<warm::ChangedRange> out;
  uint64_t at = 0;
  while (at < size_) {
    StatusCall call{&out, context_, &context_name_, size_, at};
    const uint64_t count = std::min(options_.status_chunk, size_ - at);
    const int64_t cookie = nbd_aio_block_status(
        h_, count, at, nbd_extent_callback{OnExtents, &call, nullptr}, kNoCompletion, 0);
    if (auto w = Wait(stop, cookie, "block status"); !w) {
      return MakeError(w.error());
    }
    if (call.next <= at) {
      return MakeError(ErrorCode::kInternal, "nbd: block status of export " + name_ + " at " +
                                                 std::to_string(at) + " answered no extent");
    }
    at = call.next;
  }
  return out;
}

core::Result<size_t> NbdExport::ReadAt(std::stop_token stop, uint64_t offset,
                                       std::span<std::byte> out) {
  if (broken_) {
    return MakeError(ErrorCode::kUnavailable, "nbd: export " + name_ + " is broken");
  }
  if (offset >= size_) {
    return MakeError(ErrorCode::kInvalidArgument, "nbd: read of export " + name_ + " at " +
                                                      std::to_string(offset) + " past its end " +
                                                      std::to_string(size_));
  }
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>({out.size(), options_.max_read, size_ - offset}));
  if (n == 0) {
    return size_t{0};
  }
  const int64_t cookie = nbd_aio_pread(h_, out.data(), n, offset, kNoCompletion, 0);
  if (auto w = Wait(stop, cookie, "read"); !w) {
    return MakeError(w.error());
  }
  return n;
}

}  // namespace vmimport::source::libvirt
