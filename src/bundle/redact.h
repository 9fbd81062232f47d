#pragma once

// Redaction for the support bundle (issue 23, `kubectl vmimport bundle`): what leaves the cluster
// in a bundle must hold no credential. Two layers, both applied to every text:
//  - by shape: URL userinfo (https://user:pass@host), credential query parameters (token,
//    access_token, password, sig, signature, X-Amz-*), our image server's capability paths
//    (/disks/<64 hex>), Authorization headers and Bearer/Basic values, key=value and
//    "key": "value" pairs whose key names a credential (password, token, secret, apikey,
//    privatekey, authorization, ...), PEM private keys;
//  - by value: every credential the caller knows (the Secrets the sources reference, the
//    kubeconfig's token and client key) wherever it appears, whatever its shape.
// Each is replaced by the word REDACTED. Pure; a Redactor is safe to use from several threads
// once built (AddKnownSecret is not).

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace vmimport::bundle {

inline constexpr std::string_view kRedacted = "REDACTED";

class Redactor {
 public:
  //! Any later occurrence of `value` is redacted. Values shorter than 4 characters are ignored
  //! (they would redact ordinary words); repeating a value is harmless.
  void AddKnownSecret(std::string_view value);

  //! `text` with every credential, by shape and by value, replaced by REDACTED.
  std::string Text(std::string_view text) const;

  //! A log (up to a few MiB) made safe to share: the same as Text, but the shapes are matched
  //! line by line, so time and stack stay bounded by the longest line rather than the log; a PEM
  //! private key block over several lines becomes one REDACTED line (one never ended: the rest of
  //! the log); a line longer than
  //! kMaxLogLine (no log line of ours is) is replaced by a note of its length, not matched.
  std::string Log(std::string_view text) const;
  static constexpr size_t kMaxLogLine = size_t{64} * 1024;

  //! A Kubernetes object (or any JSON) made safe to share: metadata.managedFields dropped; a
  //! Secret keeps only its name, namespace, type and the names of its keys; the value of any
  //! member whose name says credential is REDACTED (strings, numbers, objects alike); every
  //! other string goes through Text().
  nlohmann::json Object(const nlohmann::json& object) const;

 private:
  nlohmann::json Walk(const nlohmann::json& j) const;
  std::string KnownValues(std::string_view text) const;  //!< UTF-8 sanitised, known values gone
  std::vector<std::string> known_;
};

//! True when a member named `key` holds a credential ("password", "apiKey", "token",
//! "client-key-data", "Authorization"...), false for names that only point at one
//! ("secretRef", "secretName", "credentials", "tokenTTL"...).
bool CredentialKey(std::string_view key);

}  // namespace vmimport::bundle
