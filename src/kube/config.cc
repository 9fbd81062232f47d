#include "kube/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/strings.h"

extern char** environ;  // NOLINT: POSIX

namespace vmimport::kube {
namespace {

using core::ErrorCode;
using core::MakeError;

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Finds the entry named `name` in a kubeconfig list such as `clusters:` and returns its `key`
// map (`cluster:`), or an undefined node.
YAML::Node FindNamed(const YAML::Node& list, const std::string& name, const char* key) {
  if (!list || !list.IsSequence()) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  for (const auto& item : list) {
    if (item["name"] && item["name"].as<std::string>() == name) {
      return item[key];
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string Str(const YAML::Node& node, const char* key) {
  if (!node || !node.IsMap() || !node[key] || !node[key].IsScalar()) {
    return "";
  }
  return node[key].as<std::string>();
}

std::string Resolve(const std::filesystem::path& base, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) {
    return path;
  }
  return (base / path).string();
}

Result<std::string> DecodeData(const std::string& b64, const std::string& what,
                               const std::string& file) {
  auto decoded = core::Base64Decode(b64);
  if (!decoded) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "kubeconfig " + file + ": " + what + " is not valid base64");
  }
  return *decoded;
}

Result<Config> ParseKubeconfig(const std::string& text, const std::string& path,
                               const std::string& context_name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "kubeconfig " + path + ": not valid YAML: " + e.what());
  }
  if (!root || !root.IsMap()) {
    return MakeError(ErrorCode::kInvalidArgument, "kubeconfig " + path + ": not a YAML map");
  }
  try {
    std::string ctx = context_name;
    if (ctx.empty()) {
      ctx = Str(root, "current-context");
    }
    if (ctx.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "kubeconfig " + path + ": no current-context and no --context given");
    }
    const YAML::Node context = FindNamed(root["contexts"], ctx, "context");
    if (!context) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "kubeconfig " + path + ": context \"" + ctx + "\" not found");
    }
    const std::string cluster_name = Str(context, "cluster");
    const std::string user_name = Str(context, "user");
    const YAML::Node cluster = FindNamed(root["clusters"], cluster_name, "cluster");
    if (!cluster) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "kubeconfig " + path + ": cluster \"" + cluster_name + "\" not found");
    }
    const std::filesystem::path base = std::filesystem::path(path).parent_path();
    Config config;
    config.origin = "kubeconfig " + path + ", context " + ctx;
    config.namespace_ = Str(context, "namespace");
    config.server = Str(cluster, "server");
    while (!config.server.empty() && config.server.back() == '/') {
      config.server.pop_back();
    }
    if (config.server.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "kubeconfig " + path + ": cluster \"" + cluster_name + "\" has no server");
    }
    if (const std::string ca = Str(cluster, "certificate-authority-data"); !ca.empty()) {
      auto pem = DecodeData(ca, "certificate-authority-data", path);
      if (!pem) {
        return MakeError(pem.error());
      }
      config.tls.ca_pem = *pem;
    }
    config.tls.ca_file = Resolve(base, Str(cluster, "certificate-authority"));
    config.tls.insecure_skip_verify = Str(cluster, "insecure-skip-tls-verify") == "true";

    if (!user_name.empty()) {
      const YAML::Node user = FindNamed(root["users"], user_name, "user");
      if (!user) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "kubeconfig " + path + ": user \"" + user_name + "\" not found");
      }
      if (const std::string d = Str(user, "client-certificate-data"); !d.empty()) {
        auto pem = DecodeData(d, "client-certificate-data", path);
        if (!pem) {
          return MakeError(pem.error());
        }
        config.tls.client_cert_pem = *pem;
      }
      if (const std::string d = Str(user, "client-key-data"); !d.empty()) {
        auto pem = DecodeData(d, "client-key-data", path);
        if (!pem) {
          return MakeError(pem.error());
        }
        config.tls.client_key_pem = *pem;
      }
      config.tls.client_cert_file = Resolve(base, Str(user, "client-certificate"));
      config.tls.client_key_file = Resolve(base, Str(user, "client-key"));
      config.bearer_token = Str(user, "token");
      config.token_file = Resolve(base, Str(user, "tokenFile"));
      if (user["exec"] || user["auth-provider"]) {
        return MakeError(ErrorCode::kUnsupported,
                         "kubeconfig " + path + ": user \"" + user_name +
                             "\" uses exec or auth-provider credentials, which are not supported");
      }
    }
    return config;
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "kubeconfig " + path + ": unexpected structure: " + e.what());
  }
}

}  // namespace

Result<Config> LoadKubeconfig(const std::string& path, const std::string& context) {
  auto text = ReadFile(path);
  if (!text) {
    return MakeError(ErrorCode::kInvalidArgument, "kubeconfig: cannot read " + path);
  }
  return ParseKubeconfig(*text, path, context);
}

Result<Config> LoadInCluster(const std::map<std::string, std::string>& env,
                             const std::string& sa_dir) {
  const auto host = env.find("KUBERNETES_SERVICE_HOST");
  const auto port = env.find("KUBERNETES_SERVICE_PORT");
  if (host == env.end() || port == env.end() || host->second.empty() || port->second.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must "
                     "be set");
  }
  Config config;
  const bool ipv6 = host->second.find(':') != std::string::npos;
  config.server =
      "https://" + (ipv6 ? "[" + host->second + "]" : host->second) + ":" + port->second;
  config.token_file = sa_dir + "/token";
  config.tls.ca_file = sa_dir + "/ca.crt";
  config.origin = "in-cluster service account";
  std::error_code ec;
  if (!std::filesystem::exists(config.token_file, ec)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "in-cluster config: no service-account token at " + config.token_file);
  }
  if (auto ns = ReadFile(sa_dir + "/namespace")) {
    config.namespace_ = std::string(core::TrimSpace(*ns));
  }
  return config;
}

Result<Config> LoadDefault(const std::string& explicit_path, const std::string& context,
                           const std::map<std::string, std::string>& env) {
  if (!explicit_path.empty()) {
    return LoadKubeconfig(explicit_path, context);
  }
  if (auto it = env.find("KUBECONFIG"); it != env.end() && !it->second.empty()) {
    const auto first = core::Split(it->second, ':').front();
    return LoadKubeconfig(std::string(first), context);
  }
  if (auto it = env.find("KUBERNETES_SERVICE_HOST"); it != env.end() && !it->second.empty()) {
    return LoadInCluster(env);
  }
  if (auto it = env.find("HOME"); it != env.end()) {
    return LoadKubeconfig(it->second + "/.kube/config", context);
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "no kubeconfig: pass --kubeconfig, set KUBECONFIG or run in a cluster");
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
    }
  }
  return env;
}

}  // namespace vmimport::kube
