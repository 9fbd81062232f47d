#pragma once

// The fixtures the world tests share (tests/world/*_world_test.cc):
//  - WorldNamespaceTest: a kube client for the world's kube-apiserver, a namespace of the test's
//    own and a temporary directory for its logs, both removed at the end (the directory is kept,
//    and named on stderr, when the test failed or VMIMPORT_KEEP_LOGS is set);
//  - ImportFixture: on top of it, the controller binary and the Harvester simulator as child
//    processes, and the vSphere import's objects (Secret, VmwareSource, VirtualMachineImport)
//    with the checks every import test makes (its status, its disks against the seed, the
//    source VM's power state in vcsim).

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kube/client.h"
#include "model/vm.h"
#include "world/process.h"

namespace vmimport::kube {

inline const Resource kNamespaces{"", "v1", "namespaces", false};
inline const Resource kSecrets{"", "v1", "secrets", true};
inline const Resource kEvents{"", "v1", "events", true};
inline const Resource kPvcs{"", "v1", "persistentvolumeclaims", true};
inline const Resource kVmwareSources{"migration.harvesterhci.io", "v1beta1", "vmwaresources", true};
inline const Resource kImports{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports",
                               true};
inline const Resource kImages{"harvesterhci.io", "v1beta1", "virtualmachineimages", true};
inline const Resource kBackingImages{"longhorn.io", "v1beta2", "backingimages", true};
inline const Resource kVms{"kubevirt.io", "v1", "virtualmachines", true};
inline const Resource kOvaSources{"migration.harvesterhci.io", "v1beta1", "ovasources", true};
inline const Resource kOpenstackSources{"migration.harvesterhci.io", "v1beta1", "openstacksources",
                                        true};
inline const Resource kLibvirtSources{"migration.harvesterhci.io", "v1beta1", "libvirtsources",
                                      true};
inline const Resource kNads{"k8s.cni.cncf.io", "v1", "network-attachment-definitions", true};

//! The annotation in which the Harvester simulator records the sha256 of the bytes it received.
inline constexpr const char* kSha256Annotation = "harvester-sim.vm-import.test/sha256";
inline constexpr const char* kSha512Annotation = "harvester-sim.vm-import.test/sha512";

//! Whether an import's status.importStatus is one it ends in.
bool FinalImportStatus(const std::string& status);

//! Bytes of a Kubernetes binary-suffix quantity ("2048Mi", "2Gi", "512Ki", "1024"); -1 when it
//! is not one. KubeVirt's controllers write objects back through Go types, which re-serialise a
//! quantity in canonical form ("2048Mi" becomes "2Gi"): compare values, not strings.
long long QuantityBytes(const std::string& quantity);

//! sha256 of each seeded disk of the VM at `path` (the vcsim seed manifest), in disk order.
std::vector<std::string> SeededDiskSha256(const std::string& path);

//! A test in a namespace of its own, "<prefix>-<random>", with the temporary directory
//! "vmimport-<prefix>-<random>". SetUp fails the test (fatally) when the world is not reachable.
class WorldNamespaceTest : public ::testing::Test {
 protected:
  explicit WorldNamespaceTest(std::string prefix) : prefix_(std::move(prefix)) {}

  void SetUp() override;
  //! Deletes the namespace (and so what the test made in it); removes dir_ unless kept.
  void TearDown() override;

  std::string kubeconfig_;
  std::unique_ptr<Client> client_;  // null when SetUp failed before it existed
  std::string suffix_;              // the random part of the names
  std::string ns_;
  std::filesystem::path dir_;  // logs and scratch files

 private:
  std::string prefix_;
};

//! The controller and the Harvester simulator against the world, and a vSphere import's objects.
class ImportFixture : public WorldNamespaceTest {
 protected:
  using Clock = std::chrono::steady_clock;
  using WorldNamespaceTest::WorldNamespaceTest;

  //! Stops the controller and the simulator (SIGKILL), then WorldNamespaceTest::TearDown.
  void TearDown() override;

  // --- the processes ------------------------------------------------------------------------

  //! harvester-sim --kubeconfig ... `sim_args`, logging to dir_/`log_name`.
  void StartSim(const std::vector<std::string>& sim_args = {},
                const std::string& log_name = "harvester-sim.log");
  //! The controller, watching ns_ only, without leader election, on port 0 for its image and
  //! health servers, re-checking sources every second; then `extra`. Logs to dir_/`log_name`.
  void StartController(const std::vector<std::string>& extra = {},
                       const std::string& log_name = "controller.log");
  //! StartController's arguments before `extra`, with the image server on `image_server_address`.
  std::vector<std::string> ControllerArgv(const std::string& image_server_address) const;
  //! StartSim, then StartController.
  void StartWorld(const std::vector<std::string>& sim_args = {},
                  const std::vector<std::string>& controller_args = {});
  std::string ControllerLog();

  // --- objects ------------------------------------------------------------------------------

  //! The NetworkAttachmentDefinition `name` (a bridge unless `config` says otherwise).
  void CreateNad(const std::string& name = "vlan10",
                 const std::string& config = R"({"cniVersion":"0.3.1","type":"bridge"})");
  //! The world's vSphere credentials (username, password, caCert), with `overrides` (a null
  //! value drops the key).
  Json VsphereSecret(const Json& overrides = Json::object());
  //! The Secret `name` of stringData `data`; null (the default) is VsphereSecret().
  void CreateSecret(const std::string& name, const Json& data = nullptr);
  //! A VmwareSource spec: the world's vcsim and datacenter, credentials from Secret `secret`,
  //! then `overrides` (e.g. another endpoint).
  Json VmwareSpec(const std::string& secret, const Json& overrides = Json::object());
  void CreateVmwareSource(const std::string& name, const Json& spec);
  //! The VmwareSource `name` of VmwareSpec(secret, overrides).
  void CreateSource(const std::string& secret = "vsphere", const std::string& name = "vcsim",
                    const Json& overrides = Json::object());
  //! The OvaSource `name` of `url` (30 s HTTP timeout), with the credentials of Secret `secret`
  //! when given.
  void CreateOvaSource(const std::string& name, const std::string& url,
                       const std::string& secret = "");
  //! The LibvirtSource `name` of `uri`, with the credentials of Secret `secret`.
  void CreateLibvirtSource(const std::string& name, const std::string& uri,
                           const std::string& secret);
  //! A spec.sourceCluster naming the source `name` of `kind` in ns_.
  Json SourceRef(const std::string& name, const std::string& kind = "VmwareSource");
  //! An import of `spec`; spec.sourceCluster, unless given, is the VmwareSource `source`.
  void CreateImport(const std::string& name, Json spec, const std::string& source = "vcsim");

  // --- what the controller did --------------------------------------------------------------

  //! The import's status.importStatus; "<gone>" once it is deleted, "<error>" if unreadable.
  std::string ImportStatus(const std::string& name);
  //! Waits for `want` (or any terminal state); returns the last status seen.
  std::string WaitImport(const std::string& name, const std::string& want,
                         std::chrono::seconds limit = std::chrono::seconds(90));
  Json GetImport(const std::string& name);
  //! The objects of `r` in ns_ (or the cluster's), but those being deleted.
  std::vector<Json> Items(const Resource& r);
  //! Each disk of the import: the sha256 the simulator received equals the seeded one, and the
  //! SHA-512 our image server computed (in status; the default policy "verify" computes no
  //! SHA-256) equals the simulator's; on the backingimage backend, equals the status.checksum of
  //! the image's Longhorn BackingImage too (harvester::CompareStoredChecksum).
  void ExpectDisksMatch(const std::string& import_name, const std::string& vm_path);
  //! The same against the sha256 of each source disk in `want` (another source's seed);
  //! `vm_path` names the VM in failures.
  void ExpectDisksMatch(const std::string& import_name, const std::vector<std::string>& want,
                        const std::string& vm_path);

  // --- vSphere ------------------------------------------------------------------------------

  //! The source VM's power state, read from vcsim.
  model::PowerState SourcePower(const std::string& path);
  //! A govc command line of `args` against the world's vcsim (its session cache in dir_).
  std::string Govc(const std::string& args);
  //! Powers a source VM on with govc (unless it is on), so that an import has to power it off.
  void PowerOn(const std::string& path);

  std::unique_ptr<testing::ChildProcess> sim_;
  std::unique_ptr<testing::ChildProcess> controller_;
  //! When each source and import made here was created, by name.
  std::map<std::string, Clock::time_point> created_;
};

}  // namespace vmimport::kube
