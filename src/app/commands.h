#pragma once

// kubectl-vmimport's report and bundle commands (issue 23), split from cli.cc: each reads the
// cluster with the user's kubeconfig, never writes to it, and hands what it read to the pure
// report/ and bundle/ libraries. Both return the process exit code (0 ok, 1 failed, 2 usage)
// and print why on stderr.

#include <string>
#include <vector>

#include "kube/client.h"

namespace vmimport::cli {

struct ReportOptions {
  //! ImportPlan or VirtualMachineImport names, optionally "importplan/NAME" or
  //! "virtualmachineimport/NAME"; a bare name is looked up as a plan first.
  std::vector<std::string> names;
  std::string output = "vmimport-report";  //!< writes OUTPUT.html and OUTPUT.json
};

//! kubectl vmimport report PLAN|IMPORT... [-o PREFIX]
int Report(kube::Client& client, const std::string& ns, const ReportOptions& options);

struct BundleOptions {
  std::string output = "vmimport-bundle.tar.gz";
  bool all_namespaces = false;
  //! Where the controller's Pods run and how to find them (the chart's labels, in the namespace
  //! the chart and deploy/vm-import-controller.yaml install into); their logs are read through
  //! the API (pods/log), the previous container's too when it restarted.
  std::string controller_namespace = "harvester-system";
  std::string controller_selector = "app.kubernetes.io/name=vm-import-controller";
  //! Per container log, the last this many bytes (a note says when a log was longer).
  size_t log_limit_bytes = size_t{10} << 20;
  std::vector<std::string> controller_logs;  //!< files to include (redacted): a controller
                                             //!< outside the cluster
  std::string metrics_url;                   //!< the controller's /metrics, if reachable
};

//! kubectl vmimport bundle [-o FILE] [-A] [--controller-namespace NS] [--controller-selector SEL]
//!                         [--controller-log-limit BYTES] [--controller-log PATH]...
//!                         [--metrics-url URL]
int Bundle(kube::Client& client, const std::string& ns, const BundleOptions& options);

}  // namespace vmimport::cli
