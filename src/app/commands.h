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
  std::vector<std::string> controller_logs;  //!< files to include (redacted)
  std::string metrics_url;                   //!< the controller's /metrics, if reachable
};

//! kubectl vmimport bundle [-o FILE] [-A] [--controller-log PATH]... [--metrics-url URL]
int Bundle(kube::Client& client, const std::string& ns, const BundleOptions& options);

}  // namespace vmimport::cli
