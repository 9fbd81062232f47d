#pragma once

// A streaming GET as a disk::ByteSource: the Glance image file under SourceVm::OpenDisk. A
// producer thread runs the transfer into a bounded buffer that Read drains, so a slow reader
// slows the download instead of growing memory. The stream ends with an error, never short.
// (The vSphere provider has its own copy in source/vmware/export.cc, whose errors speak of NFC
// leases; providers may not include each other.)

#include <chrono>
#include <cstddef>
#include <stop_token>
#include <string>

#include "core/result.h"
#include "disk/byte_source.h"
#include "http/client.h"

namespace vmimport::source::openstack {

struct StreamOptions {
  size_t buffer_bytes = 4U << 20;  //!< body bytes held between the network and Read
  std::chrono::seconds stall_timeout{120};
  std::string name = "http stream";  //!< names the stream in errors (never the URL's token)
};

//! Starts `request` on a thread of its own and returns once the response head arrived. Errors
//! before the body: kNotFound (404), kUnauthenticated (401/403), kUnavailable (5xx, transport),
//! kCancelled on stop. A body that ends before its Content-Length is kUnavailable. Destroying
//! the source stops the transfer.
core::Result<disk::ByteSourcePtr> OpenGetStream(std::stop_token stop, http::Client& http,
                                                http::Request request, StreamOptions options);

}  // namespace vmimport::source::openstack
