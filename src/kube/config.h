#pragma once

// Where the API server is and how to authenticate: from a kubeconfig file or from inside a pod.

#include <map>
#include <string>

#include "core/result.h"
#include "http/client.h"

namespace vmimport::kube {

using core::Result;

struct Config {
  std::string server;        //!< https://host:port, no trailing slash
  http::TlsConfig tls;       //!< CA and client certificate
  std::string bearer_token;  //!< static token, or empty
  std::string token_file;    //!< re-read on every request when set (service-account rotation)
  std::string namespace_;    //!< the context's namespace, or the pod's; may be empty
  std::string origin;        //!< where it came from, for log lines ("kubeconfig /x, context y")
};

//! Reads a kubeconfig file; `context` empty means current-context. Relative certificate paths are
//! resolved against the file's folder. Errors: kInvalidArgument naming the file and what is wrong.
Result<Config> LoadKubeconfig(const std::string& path, const std::string& context = "");

//! Reads the in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT and the service-account files
//! under `sa_dir` (default /var/run/secrets/kubernetes.io/serviceaccount).
Result<Config> LoadInCluster(
    const std::map<std::string, std::string>& env,
    const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

//! The usual order: `explicit_path` (a --kubeconfig flag), then $KUBECONFIG (first entry), then
//! in-cluster when KUBERNETES_SERVICE_HOST is set, then ~/.kube/config.
Result<Config> LoadDefault(const std::string& explicit_path, const std::string& context,
                           const std::map<std::string, std::string>& env);

//! The process environment as a map (for LoadDefault/LoadInCluster).
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace vmimport::kube
