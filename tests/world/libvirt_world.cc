#include "world/libvirt_world.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/strings.h"
#include "world/world_env.h"

namespace vmimport::testing {

std::string LvVar(const char* name) { return PeerVar("libvirt", name); }

std::map<std::string, std::string> LvSecret() {
  const std::string pki = LvVar("LIBVIRT_PKI");
  return {{"username", LvVar("LIBVIRT_USER")},
          {"password", LvVar("LIBVIRT_PASSWORD")},
          {"ca.crt", ReadFile(pki + "/cacert.pem")},
          {"tls.crt", ReadFile(pki + "/clientcert.pem")},
          {"tls.key", ReadFile(pki + "/clientkey.pem")}};
}

core::Json LvSecretData(const core::Json& overrides) {
  core::Json data = core::Json::object();
  for (const auto& [k, v] : LvSecret()) {
    data[k] = v;
  }
  for (const auto& [k, v] : overrides.items()) {
    data[k] = v;
  }
  return data;
}

source::SourceConfig LvConfig() {
  source::SourceConfig c;
  c.kind = source::SourceKind::kLibvirt;
  c.endpoint = LvVar("LIBVIRT_URI");
  c.secret = LvSecret();
  c.secret_key = "world/libvirt";
  return c;
}

int Virsh(const std::string& args, std::string* out) {
  const std::string cmd = "LIBVIRT_AUTH_FILE='" + LvVar("LIBVIRT_WORLD_AUTH_FILE") +
                          "' virsh -q -c '" + LvVar("LIBVIRT_URI") +
                          "?pkipath=" + LvVar("LIBVIRT_PKI") + "' " + args + " 2>&1";
  return RunCommand(cmd, out);
}

std::string DomState(const std::string& domain) {
  std::string out;
  Virsh("domstate " + domain, &out);
  return std::string(core::TrimSpace(out));
}

void EnsureRunning(const std::string& domain) {
  if (DomState(domain) == "running") {
    return;
  }
  std::string out;
  EXPECT_EQ(Virsh("start " + domain, &out), 0) << out;
  EXPECT_EQ(DomState(domain), "running");
}

LibvirtdStalled::LibvirtdStalled() : pid_(std::stoi("0" + LvVar("LIBVIRT_WORLD_PID"))) {
  EXPECT_GT(pid_, 0) << "no LIBVIRT_WORLD_PID in the libvirt peer's env file";
  if (pid_ > 0) {
    EXPECT_EQ(kill(pid_, SIGSTOP), 0);
  }
}

LibvirtdStalled::~LibvirtdStalled() { Resume(); }

void LibvirtdStalled::Resume() {
  if (pid_ > 0) {
    kill(pid_, SIGCONT);
    pid_ = 0;
  }
}

namespace {

std::vector<std::vector<std::string>> LvManifestRows(const std::string& kind) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(LvVar("LIBVIRT_MANIFEST"));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string f;
    while (std::getline(ss, f, '\t')) {
      fields.push_back(f);
    }
    if (!fields.empty() && fields[0] == kind) {
      rows.push_back(std::move(fields));
    }
  }
  return rows;
}

}  // namespace

std::vector<std::string> LvDiskSha256(const std::string& domain) {
  std::vector<std::string> out;
  for (const auto& row : LvManifestRows("disk")) {
    if (row.size() >= 4 && row[1] == domain) {
      out.push_back(row[3]);
    }
  }
  return out;
}

std::string LvUuid(const std::string& domain) {
  for (const auto& row : LvManifestRows("vm")) {
    if (row.size() >= 3 && row[1] == domain) {
      return row[2];
    }
  }
  ADD_FAILURE() << "no domain " << domain << " in the libvirt manifest";
  return "";
}

std::string LvQcow2DiskPath(const std::string& domain, int disk) {
  return LvVar("LIBVIRT_POOL_DIR") + "/" + domain + "-vd" + static_cast<char>('a' + disk) +
         ".qcow2";
}

bool LvStartQcow2Domain(const std::string& name, const std::vector<uint64_t>& sizes,
                        const std::vector<std::vector<LvWrite>>& prefill) {
  std::string disks;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string path = LvQcow2DiskPath(name, static_cast<int>(i));
    std::string out;
    std::string cmd = "rm -f '" + path + "' && qemu-img create -q -f qcow2 '" + path + "' " +
                      std::to_string(sizes[i]);
    if (i < prefill.size() && !prefill[i].empty()) {
      cmd += " && qemu-io -f qcow2";
      for (const LvWrite& w : prefill[i]) {
        cmd += " -c 'write -P " + std::to_string(w.pattern) + " " + std::to_string(w.offset) + " " +
               std::to_string(w.length) + "'";
      }
      cmd += " '" + path + "' >/dev/null";
    }
    if (RunCommand(cmd + " 2>&1", &out) != 0) {
      ADD_FAILURE() << cmd << ": " << out;
      return false;
    }
    disks += "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='" +
             path + "'/><target dev='vd" + static_cast<char>('a' + i) + "' bus='virtio'/></disk>";
  }
  // The pool learns of the new files (the source describes and streams disks as pool volumes).
  std::string refreshed;
  if (Virsh("pool-refresh " + LvVar("LIBVIRT_POOL"), &refreshed) != 0) {
    ADD_FAILURE() << "pool-refresh: " << refreshed;
    return false;
  }
  const std::string xml_path = LvVar("LIBVIRT_POOL_DIR") + "/../" + name + ".xml";
  {
    std::ofstream xml(xml_path);
    xml << "<domain type='qemu'><name>" << name
        << "</name><memory unit='MiB'>16</memory><vcpu>1</vcpu><os><type arch='x86_64' "
           "machine='pc'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</"
           "emulator>"
        << disks
        << "<video><model type='none'/></video><memballoon model='none'/></devices></domain>";
  }
  std::string out;
  int rc = Virsh("define '" + xml_path + "'", &out);
  std::filesystem::remove(xml_path);
  EXPECT_EQ(rc, 0) << out;
  if (rc == 0) {
    rc = Virsh("start " + name, &out);
    EXPECT_EQ(rc, 0) << out;
  }
  return rc == 0 && DomState(name) == "running";
}

bool LvGuestWrite(const std::string& domain, int disk, const LvWrite& w) {
  const std::string dev =
      "/machine/peripheral/virtio-disk" + std::to_string(disk) + "/virtio-backend";
  const std::string cmd = "qemu-io -d " + dev + " \\\"write -P " + std::to_string(w.pattern) + " " +
                          std::to_string(w.offset) + " " + std::to_string(w.length) + "\\\"";
  std::string out;
  const int rc = Virsh("qemu-monitor-command --hmp " + domain + " \"" + cmd + "\"", &out);
  // HMP prints nothing on success and the error otherwise (the exit status is 0 either way).
  if (rc != 0 || !std::string(core::TrimSpace(out)).empty()) {
    ADD_FAILURE() << "write " << w.length << " bytes at " << w.offset << " of disk " << disk
                  << " of " << domain << ": " << out;
    return false;
  }
  return true;
}

void LvDestroyQcow2Domain(const std::string& name, bool keep_volumes) {
  std::string out;
  Virsh("destroy --graceful " + name, &out);
  Virsh("undefine --checkpoints-metadata " + name, &out);
  if (!keep_volumes) {
    for (int i = 0; i < 8; ++i) {
      std::filesystem::remove(LvQcow2DiskPath(name, i));
    }
  }
}

}  // namespace vmimport::testing
