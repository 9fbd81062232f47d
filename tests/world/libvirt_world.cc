#include "world/libvirt_world.h"

#include <gtest/gtest.h>
#include <signal.h>

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

}  // namespace vmimport::testing
