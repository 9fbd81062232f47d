#pragma once

// The command lines of the two processes every import world test starts: the controller under
// test and the Harvester simulator. One place, so that the vSphere/OVA/libvirt fixture
// (ImportFixture) and the OpenStack one start them alike. Pure functions; any thread.

#include <filesystem>
#include <string>
#include <vector>

namespace vmimport::testing {

//! The controller, watching `ns` only, without leader election, its image server on
//! `image_server_address` and its health server on port 0, re-checking sources every second.
std::vector<std::string> ControllerArgv(const std::string& kubeconfig, const std::string& ns,
                                        const std::string& image_server_address);

//! harvester-sim with `kubeconfig`, the world's arguments (HarvesterSimWorldArgs(`dir`)), then
//! `extra`.
std::vector<std::string> HarvesterSimArgv(const std::string& kubeconfig,
                                          const std::filesystem::path& dir,
                                          const std::vector<std::string>& extra = {});

}  // namespace vmimport::testing
