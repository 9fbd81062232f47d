#include "world/argv.h"

#include "build_paths.h"
#include "world/world_env.h"

namespace vmimport::testing {

std::vector<std::string> ControllerArgv(const std::string& kubeconfig, const std::string& ns,
                                        const std::string& image_server_address) {
  return {build_paths::ControllerBinary(),
          "--kubeconfig",
          kubeconfig,
          "--namespace",
          ns,
          "--leader-elect=false",
          "--image-server-address",
          image_server_address,
          "--health-address",
          "127.0.0.1:0",
          "--source-retry-interval",
          "1"};
}

std::vector<std::string> HarvesterSimArgv(const std::string& kubeconfig,
                                          const std::filesystem::path& dir,
                                          const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {build_paths::HarvesterSimBinary(), "--kubeconfig", kubeconfig};
  const auto world_args = HarvesterSimWorldArgs(dir);
  argv.insert(argv.end(), world_args.begin(), world_args.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

}  // namespace vmimport::testing
