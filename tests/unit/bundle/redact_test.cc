// The support bundle's redaction (bundle/redact.h) and its archive (bundle/tar_gz.h): every
// credential shape we know of becomes REDACTED and ordinary text stays; a Secret keeps only its
// name and key names; GNU tar reads what TarGzWriter wrote, long names included.

#include "bundle/redact.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bundle/tar_gz.h"

namespace vmimport::bundle {
namespace {

using Json = nlohmann::json;

TEST(Redact, CredentialShapesInText) {
  Redactor r;
  const std::string token(64, 'a');
  const std::string text =
      "url=https://admin:s3cr3t-pw@vcenter.example:443/sdk "
      "disk=http://127.0.0.1:9000/disks/" +
      token +
      " "
      "glance=https://glance/v2/images/x?token=tok123&size=4 "
      "s3=https://s3/b/k?X-Amz-Signature=abcdef&X-Amz-Credential=AKIA1 "
      "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig "
      "password=hunter22 secret=\"two words\" api_key=k-1234 "
      "{\"password\": \"pw-in-json\", \"user\": \"bob\"}";
  const std::string out = r.Text(text);
  for (const char* gone : {"s3cr3t-pw", "admin:", "tok123", "abcdef", "AKIA1", "eyJhbGciOiJSUzI1",
                           "hunter22", "two words", "k-1234", "pw-in-json"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in " << out;
  }
  EXPECT_EQ(out.find(token), std::string::npos) << out;
  // What support needs stays.
  for (const char* kept : {"vcenter.example:443/sdk", "/disks/REDACTED", "size=4",
                           "\"user\": \"bob\"", "glance/v2/images/x"}) {
    EXPECT_NE(out.find(kept), std::string::npos) << kept << " not in " << out;
  }
}

TEST(Redact, PemPrivateKeysAndKnownValues) {
  Redactor r;
  r.AddKnownSecret("correct-horse");
  r.AddKnownSecret("ab");  // too short to redact safely: ignored
  const std::string out = r.Text(
      "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\n"
      "login with correct-horse failed; ab stays");
  EXPECT_EQ(out.find("MIIEow"), std::string::npos) << out;
  EXPECT_EQ(out.find("correct-horse"), std::string::npos) << out;
  EXPECT_NE(out.find("ab stays"), std::string::npos) << out;
}

TEST(Redact, LogsLineByLine) {
  Redactor r;
  r.AddKnownSecret("correct-horse");
  r.AddKnownSecret("two\nlines of it");  // a known value over a line break
  const std::string long_line(Redactor::kMaxLogLine + 1, 'x');
  const std::string out = r.Log(
      "level=info msg=\"started\" in-cluster\n"
      "level=error msg=\"get https://u:pw1@vc.example/sdk?token=tk2 failed\" password=pw3\n"
      "login with correct-horse; two\nlines of it\n"
      "key:\n-----BEGIN PRIVATE KEY-----\nMIIEow\nAAAA\n-----END PRIVATE KEY-----\n"
      "after the key\n" +
      long_line + "\nlast line without a break");
  for (const char* gone :
       {"pw1", "tk2", "pw3", "correct-horse", "MIIEow", "AAAA", "lines of it", "xxxxxxxx"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in " << out;
  }
  EXPECT_EQ(out,
            "level=info msg=\"started\" in-cluster\n"
            "level=error msg=\"get https://REDACTED@vc.example/sdk?token=REDACTED failed\" "
            "password=REDACTED\n"
            "login with REDACTED; REDACTED\n"
            "key:\nREDACTED\n"
            "after the key\n"
            "[a line of 65537 bytes, too long to redact: left out]\n"
            "last line without a break");
  // The same shapes as Text finds in one line.
  const std::string one =
      "get https://u:pw1@vc.example/sdk?token=tk2 password=pw3 Bearer abcdefghijk";
  EXPECT_EQ(r.Log(one), r.Text(one));
}

TEST(Redact, ObjectsLoseSecretDataAndCredentialMembers) {
  Redactor r;
  const Json secret = {{"kind", "Secret"},
                       {"metadata", {{"name", "vsphere"}, {"managedFields", Json::array({1})}}},
                       {"type", "Opaque"},
                       {"data", {{"username", "YWRtaW4="}, {"password", "cHc="}}}};
  const Json s = r.Object(secret);
  EXPECT_FALSE(s.contains("data"));
  EXPECT_EQ(s["keys"], Json::array({"password", "username"}));
  EXPECT_FALSE(s["metadata"].contains("managedFields"));
  const Json source = {
      {"kind", "OpenstackSource"},
      {"metadata",
       {{"name", "os"},
        {"annotations", {{"kubectl.kubernetes.io/last-applied-configuration", "{\"x\":1}"}}}}},
      {"spec",
       {{"endpoint", "https://user:pw@keystone:5000/v3"},
        {"credentials", {{"name", "os-secret"}, {"namespace", "ns"}}},
        {"applicationCredentialSecret", "xyz"},
        {"token", Json::object({{"id", "t"}})},
        {"secretRef", "os-secret"}}}};
  const Json o = r.Object(source);
  EXPECT_EQ(o["spec"]["endpoint"], "https://REDACTED@keystone:5000/v3");
  EXPECT_EQ(o["spec"]["credentials"]["name"], "os-secret");
  EXPECT_EQ(o["spec"]["applicationCredentialSecret"], "REDACTED");
  EXPECT_EQ(o["spec"]["token"], "REDACTED");
  EXPECT_EQ(o["spec"]["secretRef"], "os-secret");
  EXPECT_FALSE(
      o["metadata"]["annotations"].contains("kubectl.kubernetes.io/last-applied-configuration"));
}

TEST(Redact, CredentialKeyNamesAndPointers) {
  for (const char* yes : {"password", "Password", "apiKey", "token", "client-key-data",
                          "Authorization", "accessKeyId", "privateKey"}) {
    EXPECT_TRUE(CredentialKey(yes)) << yes;
  }
  for (const char* no : {"secretRef", "secretName", "credentials", "tokenTTL", "username", "caCert",
                         "endpoint", "keyFile"}) {
    EXPECT_FALSE(CredentialKey(no)) << no;
  }
}

TEST(TarGz, GnuTarReadsEveryEntryBack) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("vmimport-tar-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "b.tar.gz").string();
  const std::string long_dir(120, 'd');
  {
    auto w = TarGzWriter::Create(path);
    ASSERT_TRUE(w) << w.error().ToString();
    const auto t = std::chrono::system_clock::now();
    ASSERT_TRUE((*w)->Add("b/manifest.json", "{}\n", t));
    ASSERT_TRUE((*w)->Add("b/" + long_dir + "/x.log", std::string(1000, 'x'), t));
    ASSERT_TRUE((*w)->Add("b/empty", "", t));
    EXPECT_FALSE((*w)->Add("/etc/passwd", "", t));
    EXPECT_FALSE((*w)->Add("b/../../x", "", t));
    EXPECT_FALSE((*w)->Add(std::string(300, 'n'), "", t));
    ASSERT_TRUE((*w)->Close());
  }
  const std::string cmd = "tar -xzf '" + path + "' -C '" + dir.string() + "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(dir / "b" / long_dir / "x.log");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), std::string(1000, 'x'));
  EXPECT_TRUE(std::filesystem::exists(dir / "b" / "empty"));
  EXPECT_EQ(std::filesystem::file_size(dir / "b" / "manifest.json"), 3u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vmimport::bundle
