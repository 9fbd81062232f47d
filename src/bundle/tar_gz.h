#pragma once

// A gzip-compressed tar archive written to a file, entry by entry (the support bundle's format:
// `tar xzf` and every archive tool read it). POSIX ustar headers; names up to 100 bytes, or up
// to 255 split at a '/' into the prefix field; regular files only, mode 0644, owner 0/0.
//
//   ustar header, 512 bytes (POSIX.1-1988 "ustar Interchange Format"):
//      0 name[100]   100 mode[8]   108 uid[8]   116 gid[8]   124 size[12] (octal)
//    136 mtime[12]   148 chksum[8] 156 typeflag  157 linkname[100]
//    257 "ustar\0"   263 "00"      265 uname[32] 297 gname[32] 329 devmajor[8] 337 devminor[8]
//    345 prefix[155] 500 pad[12]
// then the data padded to 512 bytes; the archive ends with two zero blocks.
//
// Not thread-safe; one writer per file.

#include <zlib.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"

namespace vmimport::bundle {

class TarGzWriter {
 public:
  //! Creates (truncates) `path`. kUnavailable naming the path if it cannot be opened.
  [[nodiscard]] static core::Result<std::unique_ptr<TarGzWriter>> Create(const std::string& path);
  ~TarGzWriter();  // closes without the end blocks if Close() was not called
  TarGzWriter(const TarGzWriter&) = delete;
  TarGzWriter& operator=(const TarGzWriter&) = delete;

  //! Adds the file `name` ("dir/file.json") holding `data`. kInvalidArgument for a name that
  //! does not fit ustar, is absolute or climbs out ("..").
  [[nodiscard]] core::Status Add(std::string_view name, std::string_view data,
                                 std::chrono::system_clock::time_point mtime);
  //! Writes the end-of-archive blocks and the gzip trailer. Safe to call once.
  [[nodiscard]] core::Status Close();

 private:
  explicit TarGzWriter(gzFile file, std::string path) : file_(file), path_(std::move(path)) {}
  core::Status Write(const void* data, size_t size);

  gzFile file_;
  std::string path_;
};

}  // namespace vmimport::bundle
