#pragma once

// ObjectReader: reads the known keys of one JSON object into typed fields and keeps the rest.
// It never throws (nlohmann's get<> would): a known key of the wrong type records the first error,
// with its JSON path, and later reads are skipped. null counts as absent (wrangler's CRDs make
// every string, array and map nullable).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "core/result.h"

namespace vmimport::api {

class ObjectReader {
 public:
  //! `path` names `object` in error messages ("spec", "status.diskImportStatus[2]").
  ObjectReader(const nlohmann::json& object, std::string path);

  void String(std::string_view key, std::string& out);
  void OptString(std::string_view key, std::optional<std::string>& out);
  void OptBool(std::string_view key, std::optional<bool>& out);
  void Int32(std::string_view key, int32_t& out);
  void Int64(std::string_view key, int64_t& out);
  void Uint64(std::string_view key, uint64_t& out);
  //! Any JSON number.
  void OptDouble(std::string_view key, std::optional<double>& out);
  //! The value of `key` when it is present, not null and of `type`; nullptr otherwise (a wrong
  //! type records an error). The key counts as known.
  const nlohmann::json* Child(std::string_view key, nlohmann::json::value_t type);

  //! The path of a child: "spec.networkMapping[1]".
  std::string PathOf(std::string_view key) const;
  //! Every key not read by the methods above, as an object (empty when there are none).
  nlohmann::json Unknown() const;
  //! The first error, if any.
  [[nodiscard]] core::Status Finish() const;

 private:
  const nlohmann::json* Lookup(std::string_view key);
  void Fail(std::string_view key, std::string_view expected);

  const nlohmann::json& object_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
  std::optional<core::Error> error_;
};

//! Validates that `j` is an object; `path` names it in the error.
[[nodiscard]] core::Status ExpectObject(const nlohmann::json& j, std::string_view path);

//! Copies every key of `extra` that `out` does not have yet (known fields win).
void MergeUnknown(nlohmann::json& out, const nlohmann::json& extra);

}  // namespace vmimport::api
