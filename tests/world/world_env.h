#pragma once

// Access to the running test world: the variables tools/world.sh up writes to
// $WORLD_DIR/env.sh (default <repo>/.world/env.sh), read from that file first and from the
// process environment second. A missing variable fails the test: world tests never skip.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace vmimport::testing {

//! The value of `name`, or "" after recording a test failure that says how to start the world.
std::string WorldVar(const char* name);

//! The value of `name` in the env file of a peer with a fixture of its own
//! ($WORLD_DIR/<peer>/env.sh, e.g. "libvirt"), or "" after recording a test failure.
std::string PeerVar(const char* peer, const char* name);

//! One line of the vcsim seed manifest, split on tabs.
struct ManifestRow {
  std::vector<std::string> fields;
  const std::string& operator[](size_t i) const { return fields.at(i); }
};
//! Rows of $VCSIM_MANIFEST whose first field is `kind` ("vm", "disk", "nic").
std::vector<ManifestRow> ManifestRows(const std::string& kind);

//! Runs a shell command; returns its exit status and stdout.
int RunCommand(const std::string& command, std::string* out = nullptr);

//! A file's bytes; "" if unreadable.
std::string ReadFile(const std::filesystem::path& path);

//! Polls `pred` every `poll` until it holds or `limit` has passed; returns its last value.
bool Eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = std::chrono::seconds(90),
                std::chrono::milliseconds poll = std::chrono::milliseconds(200));

//! What every harvester-sim started in the world needs besides its kubeconfig: Longhorn's
//! backing-image-manager (VMIMPORT_BIM_BINARY, from tests/world/target/longhorn/longhorn-world.sh)
//! and `dir`/longhorn for the roots of its data sources.
std::vector<std::string> HarvesterSimWorldArgs(const std::filesystem::path& dir);

//! sha256 of a file's bytes, lower-case hex; "" if unreadable.
//! With `padded_size` beyond the file's size: the digest of the file followed by zeros up to
//! that size (a volume made from a smaller image reads as zeros after it).
std::string Sha256File(const std::string& path, uint64_t padded_size = 0);

//! The file that holds a Cinder volume's bytes on the OpenStack peer's NFS share
//! (OPENSTACK_NFS_MOUNTPOINT): the active file its .info names (after a snapshot), else
//! volume-<id>.
std::string CinderBackingFile(const std::string& volume_id);

}  // namespace vmimport::testing
