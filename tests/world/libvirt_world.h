#pragma once

// What the libvirt world tests share: the peer's variables ($WORLD_DIR/libvirt/env.sh, written
// by tests/world/libvirt/libvirt-world.sh up), its credentials as a SourceConfig, virsh against
// it, and the seed manifest.

#include <map>
#include <string>
#include <vector>

#include "source/provider.h"

namespace vmimport::testing {

//! A variable of the libvirt peer's env file; "" after a test failure.
std::string LvVar(const char* name);

//! The world's libvirt source: its URI, SASL user and password, CA and client certificate.
source::SourceConfig LvConfig();

//! The Secret's keys LvConfig holds (to put into a Kubernetes Secret).
std::map<std::string, std::string> LvSecret();

//! virsh `args` against the peer (TLS + SASL, the world's auth file); its exit status, stdout.
int Virsh(const std::string& args, std::string* out = nullptr);

//! The domain's state as `virsh domstate` prints it ("running", "shut off").
std::string DomState(const std::string& domain);

//! Starts the domain unless it runs (a test that powered it off leaves it so).
void EnsureRunning(const std::string& domain);

//! Stalls the world's libvirtd (SIGSTOP: it keeps its sockets, the kernel still accepts TCP,
//! nothing answers) for the life of this object; SIGCONT when it ends, also on a test failure.
class LibvirtdStalled {
 public:
  LibvirtdStalled();
  ~LibvirtdStalled();
  LibvirtdStalled(const LibvirtdStalled&) = delete;
  LibvirtdStalled& operator=(const LibvirtdStalled&) = delete;
  //! SIGCONT now (the destructor then does nothing).
  void Resume();

 private:
  int pid_ = 0;
};

//! sha256 of each seeded disk of `domain` in disk order (its raw data), from the manifest.
std::vector<std::string> LvDiskSha256(const std::string& domain);

//! The manifest's UUID of `domain`.
std::string LvUuid(const std::string& domain);

}  // namespace vmimport::testing
