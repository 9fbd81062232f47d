#include "world/world_env.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "core/json.h"
#include "core/strings.h"

namespace vmimport::testing {

namespace {

// The variables of an env file under the world's folder ($WORLD_DIR, default <repo>/.world):
// lines of the form  export NAME='value'  or  export NAME=value.
std::map<std::string, std::string> ReadEnvFile(const std::string& relative) {
  std::map<std::string, std::string> out;
  const char* dir = std::getenv("WORLD_DIR");
  const std::string path = (dir != nullptr && *dir != '\0'
                                ? std::string(dir)
                                : std::string(vmimport::build_paths::SourceDir()) + "/.world") +
                           "/" + relative;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::string_view l = core::TrimSpace(line);
    if (!l.starts_with("export ")) {
      continue;
    }
    l.remove_prefix(7);
    const size_t eq = l.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    std::string_view value = l.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '\'' || value.front() == '"') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    out[std::string(l.substr(0, eq))] = std::string(value);
  }
  return out;
}

const std::map<std::string, std::string>& EnvFile() {
  static const std::map<std::string, std::string> vars = ReadEnvFile("env.sh");
  return vars;
}

}  // namespace

std::string PeerVar(const char* peer, const char* name) {
  const auto vars = ReadEnvFile(std::string(peer) + "/env.sh");
  if (auto it = vars.find(name); it != vars.end() && !it->second.empty()) {
    return it->second;
  }
  ADD_FAILURE() << name << " is not set: start the " << peer << " peer (tools/world.sh " << peer
                << " up)";
  return "";
}

std::string WorldVar(const char* name) {
  // The world's own file wins over the process environment, so that a KUBECONFIG left in a
  // developer's shell can never point these tests at a real cluster.
  if (auto it = EnvFile().find(name); it != EnvFile().end() && !it->second.empty()) {
    return it->second;
  }
  const char* v = std::getenv(name);
  if (v != nullptr && *v != '\0') {
    return v;
  }
  ADD_FAILURE() << name
                << " is not set: start the test world first (tools/world.sh up), or run "
                   "ctest, whose world.up fixture starts it";
  return "";
}

std::vector<std::string> HarvesterSimWorldArgs(const std::filesystem::path& dir) {
  return {"--bim", WorldVar("VMIMPORT_BIM_BINARY"), "--longhorn-dir", (dir / "longhorn").string()};
}

std::vector<ManifestRow> ManifestRows(const std::string& kind) {
  std::vector<ManifestRow> rows;
  const std::string path = WorldVar("VCSIM_MANIFEST");
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot read the vcsim manifest " << path;
    return rows;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    ManifestRow row;
    for (auto f : core::Split(line, '\t')) {
      row.fields.emplace_back(f);
    }
    if (!row.fields.empty() && row.fields[0] == kind) {
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

int RunCommand(const std::string& command, std::string* out) {
  struct PipeCloser {
    void operator()(FILE* f) const noexcept { pclose(f); }
  };
  FILE* raw = popen(command.c_str(), "r");
  if (raw == nullptr) {
    return -1;
  }
  std::array<char, 4096> buf{};
  std::string collected;
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), raw)) > 0) {
    collected.append(buf.data(), n);
  }
  const int status = pclose(raw);
  if (out != nullptr) {
    *out = std::move(collected);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Sha256File(const std::string& path, uint64_t padded_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return "";
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  uint64_t done = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = in.gcount();
    if (got > 0) {
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(got));
      done += static_cast<uint64_t>(got);
    }
  }
  std::fill(buf.begin(), buf.end(), '\0');
  while (done < padded_size) {
    const uint64_t n = std::min<uint64_t>(buf.size(), padded_size - done);
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
    done += n;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md.data(), &len);
  return core::HexEncode(std::string_view(reinterpret_cast<const char*>(md.data()), len));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit,
                std::chrono::milliseconds poll) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(poll);
  }
  return pred();
}

std::string CinderBackingFile(const std::string& volume_id) {
  const std::filesystem::path dir = PeerVar("openstack", "OPENSTACK_NFS_MOUNTPOINT");
  const std::filesystem::path info = dir / ("volume-" + volume_id + ".info");
  const auto doc = core::ParseJson(ReadFile(info));
  if (doc && doc->is_object()) {
    const std::string active = core::JsonString(*doc, "active");
    if (!active.empty()) {
      return (dir / active).string();
    }
  }
  return (dir / ("volume-" + volume_id)).string();
}

}  // namespace vmimport::testing
