#include "bundle/redact.h"

#include <algorithm>
#include <regex>

#include "core/strings.h"

namespace vmimport::bundle {
namespace {

using Json = nlohmann::json;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The credential words a key may contain, and the words that make it a pointer instead.
constexpr std::string_view kCredentialWords[] = {
    "password",    "passwd",     "passphrase", "token",      "secret",
    "apikey",      "api_key",    "api-key",    "privatekey", "private_key",
    "private-key", "client-key", "clientkey",  "client_key", "authorization",
    "cookie",      "credential", "accesskey",  "access_key"};
constexpr std::string_view kPointerSuffixes[] = {"ref",  "name", "names",   "namespace", "ttl",
                                                 "file", "path", "seconds", "refs"};

struct Pattern {
  std::regex re;
  std::string replacement;
};

const std::vector<Pattern>& Patterns() {
  static const std::vector<Pattern> patterns = [] {
    const auto icase = std::regex::ECMAScript | std::regex::icase;
    std::vector<Pattern> p;
    // PEM private keys, whole.
    p.push_back({std::regex("-----BEGIN [A-Z ]*PRIVATE KEY-----[\\s\\S]*?-----END [A-Z ]*PRIVATE "
                            "KEY-----"),
                 "REDACTED"});
    // URL userinfo: scheme://user:password@host or scheme://token@host.
    p.push_back({std::regex("([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\\s\"'<>]+@", icase), "$1REDACTED@"});
    // Credential query parameters.
    p.push_back({std::regex("([?&](?:token|access_token|auth|password|passwd|sig|signature|key|"
                            "apikey|api_key|secret|x-amz-signature|x-amz-credential|"
                            "x-amz-security-token|temp_url_sig)=)[^&\\s\"'<>#]*",
                            icase),
                 "$1REDACTED"});
    // Our image server's capability URLs: /disks/<64 hex>.
    p.push_back({std::regex("/disks/[0-9a-f]{64}"), "/disks/REDACTED"});
    // Authorization headers and schemes.
    p.push_back(
        {std::regex(R"((authorization["']?\s*[:=]\s*["']?)(?:bearer |basic )?[^\s"',]+)", icase),
         "$1REDACTED"});
    p.push_back({std::regex("\\b(bearer) [A-Za-z0-9._~+/=-]{8,}", icase), "$1 REDACTED"});
    // "key": "value" (JSON in text) and key=value / key: value (logfmt, YAML) for credential keys.
    const std::string words =
        "(?:[a-z_-]*(?:password|passwd|passphrase|token|secret|apikey|api_key|api-key|"
        "private_key|privatekey|client-key-data|client_key|accesskey|access_key))";
    p.push_back({std::regex(R"re((")re" + words + R"re("\s*:\s*)"(?:[^"\\]|\\.)*")re", icase),
                 "$1\"REDACTED\""});
    p.push_back(
        {std::regex(R"re((\b)re" + words + R"re(\s*[=:]\s*)("(?:[^"\\]|\\.)*"|[^\s,;&]+))re",
                    icase),
         "$1REDACTED"});
    return p;
  }();
  return patterns;
}

}  // namespace

bool CredentialKey(std::string_view key) {
  const std::string k = Lower(key);
  bool word = false;
  for (std::string_view w : kCredentialWords) {
    word = word || k.find(w) != std::string::npos;
  }
  if (!word) {
    return false;
  }
  for (std::string_view s : kPointerSuffixes) {
    if (k.size() > s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0) {
      return false;
    }
  }
  return k != "credentials";  // spec.credentials: {name, namespace} of a Secret
}

void Redactor::AddKnownSecret(std::string_view value) {
  if (value.size() < 4) {
    return;
  }
  std::string v(value);
  if (std::find(known_.begin(), known_.end(), v) == known_.end()) {
    known_.push_back(std::move(v));
    // Longest first, so that a secret containing another is redacted whole.
    std::sort(known_.begin(), known_.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }
}

std::string Redactor::KnownValues(std::string_view text) const {
  std::string out = core::SanitizeUtf8(text);
  for (const std::string& secret : known_) {
    for (size_t pos = out.find(secret); pos != std::string::npos;
         pos = out.find(secret, pos + kRedacted.size())) {
      out.replace(pos, secret.size(), kRedacted);
    }
  }
  return out;
}

std::string Redactor::Log(std::string_view text) const {
  const std::string known = KnownValues(text);
  std::string out;
  out.reserve(known.size());
  bool in_key = false;  // inside a PEM private key block
  for (size_t start = 0; start < known.size();) {
    size_t end = known.find('\n', start);
    end = end == std::string::npos ? known.size() : end + 1;  // with its line break
    const std::string_view line(known.data() + start, end - start);
    start = end;
    const bool begins = line.find("-----BEGIN ") != std::string_view::npos &&
                        line.find("PRIVATE KEY-----") != std::string_view::npos;
    const bool ends = line.find("-----END ") != std::string_view::npos &&
                      line.find("PRIVATE KEY-----") != std::string_view::npos;
    if (begins && !ends) {
      in_key = true;
      out.append(kRedacted).append("\n");
      continue;
    }
    if (in_key) {
      in_key = !ends;
      continue;
    }
    const size_t length = line.size() - (line.ends_with('\n') ? 1 : 0);
    if (length > kMaxLogLine) {
      out.append("[a line of " + std::to_string(length) +
                 " bytes, too long to redact: left out]\n");
      continue;
    }
    std::string redacted(line);
    for (const Pattern& p : Patterns()) {
      redacted = std::regex_replace(redacted, p.re, p.replacement);
    }
    out.append(redacted);
  }
  return out;
}

std::string Redactor::Text(std::string_view text) const {
  std::string out = KnownValues(text);
  for (const Pattern& p : Patterns()) {
    out = std::regex_replace(out, p.re, p.replacement);
  }
  return out;
}

Json Redactor::Walk(const Json& j) const {
  if (j.is_string()) {
    return Text(j.get<std::string>());
  }
  if (j.is_array()) {
    Json out = Json::array();
    for (const Json& item : j) {
      out.push_back(Walk(item));
    }
    return out;
  }
  if (!j.is_object()) {
    return j;
  }
  Json out = Json::object();
  for (const auto& [key, value] : j.items()) {
    out[key] = CredentialKey(key) && !value.is_null() ? Json(kRedacted) : Walk(value);
  }
  return out;
}

Json Redactor::Object(const Json& object) const {
  Json copy = object;
  if (copy.is_object() && copy.contains("metadata") && copy["metadata"].is_object()) {
    copy["metadata"].erase("managedFields");
    if (copy["metadata"].contains("annotations") && copy["metadata"]["annotations"].is_object()) {
      // kubectl apply keeps the whole applied object here, Secrets' data included.
      copy["metadata"]["annotations"].erase("kubectl.kubernetes.io/last-applied-configuration");
    }
  }
  if (copy.is_object() && copy.value("kind", "") == "Secret") {
    Json keys = Json::array();
    for (const char* field : {"data", "stringData"}) {
      if (copy.contains(field) && copy[field].is_object()) {
        for (const auto& [k, v] : copy[field].items()) {
          keys.push_back(k);
        }
      }
      copy.erase(field);
    }
    copy["keys"] = std::move(keys);
  }
  return Walk(copy);
}

}  // namespace vmimport::bundle
