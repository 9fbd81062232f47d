#pragma once

// What the libvirt world tests share: the peer's variables ($WORLD_DIR/libvirt/env.sh, written
// by tests/world/libvirt/libvirt-world.sh up), its credentials as a SourceConfig, virsh against
// it, and the seed manifest.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "source/provider.h"

namespace vmimport::testing {

//! A variable of the libvirt peer's env file; "" after a test failure.
std::string LvVar(const char* name);

//! The world's libvirt source: its URI, SASL user and password, CA and client certificate.
source::SourceConfig LvConfig();

//! The Secret's keys LvConfig holds (to put into a Kubernetes Secret).
std::map<std::string, std::string> LvSecret();

//! LvSecret() as a Secret's data, `overrides` on top.
core::Json LvSecretData(const core::Json& overrides = core::Json::object());

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

// Warm migration (issue 22): a running domain of qcow2 disks that a test writes into.

//! A piece of guest data: `length` bytes of `pattern` at `offset`.
struct LvWrite {
  uint64_t offset = 0;
  uint64_t length = 0;
  unsigned pattern = 0;
};

//! Defines and starts a domain `name` (persistent: it can be shut off and started again, its
//! checkpoints with it) with one virtio
//! qcow2 disk per entry of `sizes` (vda, vdb, ...; volumes "<name>-<target>.qcow2" of the world's
//! pool, made fresh), holding `prefill[i]`'s data before it starts (written with qemu-io into
//! the image). No OS: the BIOS finds nothing to boot, qemu keeps running; the disks are real
//! qcow2 images attached through qemu's block layer, as a guest's are. True when it runs.
bool LvStartQcow2Domain(const std::string& name, const std::vector<uint64_t>& sizes,
                        const std::vector<std::vector<LvWrite>>& prefill = {});

//! What a guest write does: `w` written into disk `disk` (0 = vda) of the running domain by
//! qemu's block layer (HMP `qemu-io -d <the virtio device's backend>`), so dirty bitmaps and a
//! running backup's copy-before-write see it. False (with a test failure) if it failed.
bool LvGuestWrite(const std::string& domain, int disk, const LvWrite& w);

//! The path of disk `disk` of a domain LvStartQcow2Domain made.
std::string LvQcow2DiskPath(const std::string& domain, int disk);

//! Stops the domain (SIGTERM: qemu flushes and closes its images), undefines it (with its
//! checkpoint metadata) and removes its volumes unless `keep_volumes`.
void LvDestroyQcow2Domain(const std::string& name, bool keep_volumes = false);

}  // namespace vmimport::testing
