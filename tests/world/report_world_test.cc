// `kubectl vmimport report` and `kubectl vmimport bundle` (issue 23) against the real world: the
// world's kube-apiserver and vcsim, the controller and the Harvester simulator.
//
// Report: a plan of two VMs (one of them powered on, so the import powers it off and the report
// has a downtime) runs to its end; the report of the plan is opened in a real headless Chromium
// (Debian's package, file:// URL, nothing bound) and checked as rendered: the DOM after parsing
// (every import, the plan's summary, digests and verifiers, MACs side by side, a hostile Event
// message as text and not as elements) and the pixels of a screenshot (each phase's bar in its
// colour, at the x and width the phase's times give, in order).
//
// Bundle: an import, an OpenStack-like and an OVA source with credentials in their Secrets and
// URLs; the bundle is extracted and grepped for every secret the world knows (vcsim's password,
// the OpenStack Secret's values, the OVA URL's password and query token, the image server tokens
// of the disk URLs, the kube client key) and holds none; the expected objects are in it.

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "build_paths.h"
#include "core/json.h"
#include "core/strings.h"
#include "world/import_fixture.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::RunCommand;
using testing::WorldVar;
namespace fs = std::filesystem;

const Resource kPlans{"migration.harvesterhci.io", "v1beta1", "importplans", true};
constexpr const char* kRunningVm = "/DC0/vm/team-b/vmi-dup";  // seeded powered on
constexpr const char* kHostile = "<script>alert(1)</script><img id=\"pwned\" src=\"x\">";

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// --- a PNG reader for Chromium's screenshots (8-bit RGB or RGBA, not interlaced) ---------------
struct Image {
  uint32_t width = 0;
  uint32_t height = 0;
  std::vector<std::array<uint8_t, 3>> pixels;  // row-major
  std::array<uint8_t, 3> At(uint32_t x, uint32_t y) const { return pixels[y * width + x]; }
};

uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

std::optional<Image> ReadPng(const std::string& file) {
  const std::string d = Slurp(file);
  if (d.size() < 8 || d.compare(1, 3, "PNG") != 0) {
    return std::nullopt;
  }
  Image img;
  int channels = 0;
  std::string idat;
  for (size_t pos = 8; pos + 12 <= d.size();) {
    const uint32_t n = Be32(d, pos);
    const std::string type = d.substr(pos + 4, 4);
    if (type == "IHDR") {
      img.width = Be32(d, pos + 8);
      img.height = Be32(d, pos + 12);
      const int depth = d[pos + 16];
      const int colour = d[pos + 17];
      const int interlace = d[pos + 20];
      if (depth != 8 || interlace != 0 || (colour != 2 && colour != 6)) {
        return std::nullopt;
      }
      channels = colour == 2 ? 3 : 4;
    } else if (type == "IDAT") {
      idat.append(d, pos + 8, n);
    }
    pos += 12 + n;
  }
  const size_t stride = size_t{img.width} * static_cast<size_t>(channels);
  std::vector<uint8_t> raw((stride + 1) * img.height);
  uLongf raw_size = raw.size();
  if (channels == 0 ||
      uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_size != raw.size()) {
    return std::nullopt;
  }
  std::vector<uint8_t> prev(stride, 0);
  std::vector<uint8_t> line(stride);
  const size_t bpp = static_cast<size_t>(channels);
  for (uint32_t y = 0; y < img.height; ++y) {
    const uint8_t* in = &raw[y * (stride + 1)];
    const int filter = in[0];
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= bpp ? line[x - bpp] : 0;
      const int b = prev[x];
      const int c = x >= bpp ? prev[x - bpp] : 0;
      int pred = 0;
      switch (filter) {
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) / 2; break;
        case 4: {
          const int p = a + b - c;
          const int pa = std::abs(p - a);
          const int pb = std::abs(p - b);
          const int pc = std::abs(p - c);
          pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default: pred = 0;
      }
      line[x] = static_cast<uint8_t>(in[1 + x] + pred);
    }
    for (uint32_t x = 0; x < img.width; ++x) {
      img.pixels.push_back({line[x * bpp], line[x * bpp + 1], line[x * bpp + 2]});
    }
    prev = line;
  }
  return img;
}

std::array<uint8_t, 3> Rgb(const std::string& hex) {
  return {static_cast<uint8_t>(std::stoi(hex.substr(1, 2), nullptr, 16)),
          static_cast<uint8_t>(std::stoi(hex.substr(3, 2), nullptr, 16)),
          static_cast<uint8_t>(std::stoi(hex.substr(5, 2), nullptr, 16))};
}

//! A solid rectangle of one colour found in the screenshot.
struct Bar {
  std::string colour;
  uint32_t x = 0;
  uint32_t width = 0;
  uint32_t y = 0;
  uint32_t height = 0;
};

//! Every run of one of `colours` on a row, merged with the same run on the rows below it: the
//! bars, top to bottom.
std::vector<Bar> FindBars(const Image& img, const std::vector<std::string>& colours) {
  std::vector<Bar> done;
  std::vector<Bar> open;
  for (uint32_t y = 0; y < img.height; ++y) {
    std::vector<Bar> row;
    for (uint32_t x = 0; x < img.width;) {
      std::string hit;
      for (const std::string& c : colours) {
        if (img.At(x, y) == Rgb(c)) {
          hit = c;
        }
      }
      if (hit.empty()) {
        ++x;
        continue;
      }
      uint32_t end = x;
      while (end < img.width && img.At(end, y) == Rgb(hit)) {
        ++end;
      }
      row.push_back({hit, x, end - x, y, 1});
      x = end;
    }
    std::vector<Bar> still;
    for (Bar& r : row) {
      auto it = std::find_if(open.begin(), open.end(), [&](const Bar& o) {
        return o.colour == r.colour && o.x == r.x && o.width == r.width;
      });
      if (it != open.end()) {
        it->height++;
        still.push_back(*it);
        open.erase(it);
      } else {
        still.push_back(r);
      }
    }
    done.insert(done.end(), open.begin(), open.end());
    open = std::move(still);
  }
  done.insert(done.end(), open.begin(), open.end());
  std::sort(done.begin(), done.end(), [](const Bar& a, const Bar& b) { return a.y < b.y; });
  return done;
}

// The colours and geometry the page promises (report/html.h).
const std::map<std::string, std::string> kPhaseColours = {{"pending", "#8c8c8c"},
                                                          {"virtualMachineImportValid", "#6a5acd"},
                                                          {"sourceReady", "#e6a100"},
                                                          {"disksExported", "#2e8bd8"},
                                                          {"diskImageSubmitted", "#17a589"},
                                                          {"diskImagesReady", "#8e44ad"},
                                                          {"virtualMachineCreated", "#d35400"}};
constexpr int kBarX = 280;
constexpr int kBarWidth = 600;

class ReportWorldTest : public ImportFixture {
 protected:
  ReportWorldTest() : ImportFixture("report") {}

  void TearDown() override {
    if (restore_power_) {
      PowerOn(kRunningVm);  // the seeded state, for the tests that follow
    }
    ImportFixture::TearDown();
  }

  bool restore_power_ = false;

  int Cli(const std::string& args, std::string* out) {
    return RunCommand(std::string("'") + vmimport::build_paths::CliBinary() + "' --kubeconfig '" +
                          kubeconfig_ + "' -n " + ns_ + " " + args + " 2>&1",
                      out);
  }

  //! Chromium from Debian, headless, on a file:// URL (it binds nothing); root needs
  //! --no-sandbox. Returns the DOM after parsing; the screenshot goes to `png`.
  std::string Chromium(const fs::path& html, const fs::path& png, std::string* log) {
    const fs::path dom = dir_ / "dom.html";
    const std::string cmd =
        "chromium --headless" + std::string(::geteuid() == 0 ? " --no-sandbox" : "") +
        " --disable-gpu --no-first-run --disable-background-networking --disable-extensions "
        "--disable-sync --hide-scrollbars --force-device-scale-factor=1 --window-size=1280,7000 "
        "--user-data-dir='" +
        (dir_ / "chromium").string() + "' --screenshot='" + png.string() + "' --dump-dom 'file://" +
        html.string() + "' > '" + dom.string() + "' 2>'" + (dir_ / "chromium.log").string() + "'";
    const int rc = RunCommand(cmd);
    *log = "rc=" + std::to_string(rc) + "\n" + Slurp(dir_ / "chromium.log");
    return Slurp(dom);
  }

  void CreatePlan(const std::string& name, const Json& spec) {
    auto r = client_->Create({}, kPlans, ns_,
                             {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                              {"kind", "ImportPlan"},
                              {"metadata", {{"name", name}}},
                              {"spec", spec}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  std::string PlanPhase(const std::string& name) {
    auto p = client_->Get({}, kPlans, ns_, name);
    return p ? core::JsonString(core::JsonObject(*p, "status"), "phase") : "";
  }

  //! An Event on the import `name` with `message`, as another component could write one.
  void AddEvent(const std::string& name, const std::string& message) {
    const Json imp = GetImport(name);
    auto r =
        client_->Create({}, kEvents, ns_,
                        {{"apiVersion", "v1"},
                         {"kind", "Event"},
                         {"metadata", {{"name", name + ".hostile"}, {"namespace", ns_}}},
                         {"involvedObject",
                          {{"kind", "VirtualMachineImport"},
                           {"apiVersion", "migration.harvesterhci.io/v1beta1"},
                           {"name", name},
                           {"namespace", ns_},
                           {"uid", imp["metadata"]["uid"]}}},
                         {"type", "Warning"},
                         {"reason", "HostileText"},
                         {"message", message},
                         {"count", 1},
                         {"firstTimestamp", core::JsonString(imp["metadata"], "creationTimestamp")},
                         {"lastTimestamp", core::JsonString(imp["metadata"], "creationTimestamp")},
                         {"source", {{"component", "report-world-test"}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }
};

TEST_F(ReportWorldTest, APlanReportRendersInChromiumWithItsBarsAndFacts) {
  const auto t0 = Clock::now();
  restore_power_ = true;
  PowerOn(kRunningVm);  // seeded on; forcePowerOff below powers it off
  CreateSecret("vsphere");
  CreateSource();
  CreateNad("vlan10", "{}");
  StartWorld({"--rate", "20000000"});
  // A plan made before its source is ready waits out the plan's requeue (seconds): wait here.
  ASSERT_TRUE(Eventually([&] {
    auto src = client_->Get({}, kVmwareSources, ns_, "vcsim");
    return src && core::JsonString(core::JsonObject(*src, "status"), "status") == "clusterReady";
  }));
  CreatePlan("rep", {{"sourceCluster", SourceRef("vcsim")},
                     {"selector", {{"names", {kRunningVm, "/DC0/vm/vmi-CamelCase"}}}},
                     {"template",
                      {{"forcePowerOff", true},
                       {"networkMapping",
                        {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}}}}}},
                     {"schedule", {{"maxConcurrentImports", 2}}}});
  ASSERT_TRUE(Eventually(
      [&] { return PlanPhase("rep") == "Succeeded" || PlanPhase("rep") == "Failed"; }, 240s, 300ms))
      << PlanPhase("rep") << ControllerLog();
  ASSERT_EQ(PlanPhase("rep"), "Succeeded") << ControllerLog();
  const auto imported = Clock::now();
  AddEvent("rep-vmi-camelcase", kHostile);

  std::string out;
  const fs::path prefix = dir_ / "report";
  const auto r0 = Clock::now();
  ASSERT_EQ(Cli("report rep -o '" + prefix.string() + "'", &out), 0) << out;
  std::cerr << "kubectl vmimport report took "
            << std::chrono::duration<double>(Clock::now() - r0).count() << " s\n";
  const auto facts = core::ParseJson(Slurp(prefix.string() + ".json"));
  ASSERT_TRUE(facts) << out;
  const Json& plan = (*facts)["plans"][0];
  EXPECT_EQ(plan["phase"], "Succeeded");
  EXPECT_EQ(plan["summary"]["succeeded"], 2);
  EXPECT_EQ(plan["bytesDone"], 8388608u + 4194304u);
  EXPECT_GT(plan.value("bytesPerSecond", 0.0), 0);
  const Json& imports = (*facts)["imports"];
  ASSERT_EQ(imports.size(), 2u) << facts->dump(2);
  EXPECT_EQ(imports[0]["name"], "rep-vmi-camelcase");
  EXPECT_EQ(imports[1]["name"], "rep-vmi-dup");
  for (const Json& imp : imports) {
    SCOPED_TRACE(imp["name"].get<std::string>());
    EXPECT_EQ(imp["phase"], "virtualMachineRunning");
    EXPECT_FALSE(imp["timeline"].value("ongoing", true)) << imp["timeline"].dump(2);
    EXPECT_GE(imp["timeline"]["phases"].size(), 6u) << imp["timeline"].dump(2);
    EXPECT_GT(imp.value("throughputBytesPerSecond", 0.0), 0);
    ASSERT_EQ(imp["disks"].size(), 1u);
    ASSERT_FALSE(imp["disks"][0]["verification"].empty()) << imp["disks"].dump(2);
    EXPECT_EQ(imp["disks"][0]["verification"][0]["result"], "verified");
    const Json& src = imp["hardware"]["source"];
    const Json& dst = imp["hardware"]["target"];
    ASSERT_TRUE(src.is_object() && dst.is_object()) << imp["hardware"].dump(2);
    EXPECT_EQ(src["nics"][0]["mac"], dst["nics"][0]["mac"]);
    EXPECT_EQ(dst["disks"][0]["bus"], imp["disks"][0]["bus"]);
  }
  // team-b/vmi-dup was on: the import powered it off; vmi-CamelCase was off already.
  EXPECT_GT(imports[1]["downtime"].value("seconds", 0.0), 0) << imports[1]["downtime"].dump();
  // The power-off Event has whole seconds: up to 1 s earlier than the power-off was.
  EXPECT_LT(imports[1]["downtime"].value("seconds", 1e9),
            std::chrono::duration<double>(imported - t0).count() + 1.0);
  EXPECT_FALSE(imports[0]["downtime"].contains("seconds"));
  EXPECT_EQ(imports[0]["hardware"]["target"]["nics"][0]["network"], ns_ + "/vlan10");
  EXPECT_EQ(imports[1]["hardware"]["target"]["nics"][0]["network"], "pod network");
  EXPECT_EQ(SourcePower(kRunningVm), model::PowerState::kOff);

  // The page, as Chromium renders it.
  const auto c0 = Clock::now();
  const fs::path png = dir_ / "report.png";
  std::string log;
  const std::string dom = Chromium(prefix.string() + ".html", png, &log);
  const double chromium_s = std::chrono::duration<double>(Clock::now() - c0).count();
  std::cerr << "chromium took " << chromium_s << " s\n";
  ASSERT_FALSE(dom.empty()) << log;
  for (const std::string& want :
       {std::string("Plan rep"), std::string("id=\"import-rep-vmi-dup\""),
        std::string("id=\"import-rep-vmi-camelcase\""), std::string("vsphere-manifest"),
        std::string("00:0c:29:32:36:32"), std::string("00:0c:29:35:30:30"),
        std::string("2 (2 succeeded, 0 running, 0 failed, 0 not started)"),
        std::string("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img id=\"pwned\"")}) {
    EXPECT_NE(dom.find(want), std::string::npos) << want;
  }
  // The hostile message stayed text: no element came of it.
  EXPECT_EQ(dom.find("<script"), std::string::npos);
  EXPECT_EQ(dom.find("<img"), std::string::npos);

  const auto shot = ReadPng(png.string());
  ASSERT_TRUE(shot) << log;
  std::vector<std::string> colours;
  for (const auto& [phase, colour] : kPhaseColours) {
    colours.push_back(colour);
  }
  std::vector<Bar> bars;
  for (const Bar& b : FindBars(*shot, colours)) {
    if (b.height == 14) {  // the timeline's bars; the plan's swatches are 10 px
      bars.push_back(b);
    }
  }
  // Expected: each import's phases, in order, where their times put them.
  std::vector<Bar> want;
  for (const Json& imp : imports) {
    const double total = imp["timeline"].value("seconds", 1.0);
    for (const Json& p : imp["timeline"]["phases"]) {
      const auto colour = kPhaseColours.find(p["phase"].get<std::string>());
      ASSERT_NE(colour, kPhaseColours.end()) << p.dump();
      const double off = p["offsetSeconds"].get<double>() / total * kBarWidth;
      const double w = p["seconds"].get<double>() / total * kBarWidth;
      want.push_back({colour->second, static_cast<uint32_t>(kBarX + std::lround(off)),
                      static_cast<uint32_t>(std::max<long>(2, std::lround(w))), 0, 14});
    }
  }
  ASSERT_EQ(bars.size(), want.size()) << log;
  uint32_t widest = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("bar " + std::to_string(i) + " " + want[i].colour);
    EXPECT_EQ(bars[i].colour, want[i].colour);
    // x and width in page pixels: the SVG starts where the layout puts it.
    EXPECT_NEAR(bars[i].width, want[i].width, 1.0);
    widest = std::max(widest, bars[i].width);
    if (i > 0 && bars[i].y - bars[i - 1].y == 20) {  // the next lane of the same import
      EXPECT_NEAR(static_cast<double>(bars[i].x) - bars[i - 1].x,
                  static_cast<double>(want[i].x) - want[i - 1].x, 1.0);
    }
  }
  EXPECT_GT(widest, 100u) << "no phase took a visible part of the import: the check proves little";
  std::cerr << "report test: imports " << std::chrono::duration<double>(imported - t0).count()
            << " s, report + chromium "
            << std::chrono::duration<double>(Clock::now() - imported).count() << " s\n";
}

class BundleWorldTest : public ReportWorldTest {};

TEST_F(BundleWorldTest, TheBundleHoldsTheObjectsAndNoSecretTheWorldKnows) {
  const auto t0 = Clock::now();
  CreateSecret("vsphere");
  CreateSource();
  CreateNad("vlan10", "{}");
  // An OpenStack-like source with the credentials of a Keystone user (no endpoint answers: it
  // stays unready, its Secret and its errors are what matter here).
  const std::string os_password = "os-Passw0rd-" + suffix_;
  const std::string os_app_secret = "app-cred-secret-" + suffix_;
  auto made = client_->Create({}, kSecrets, ns_,
                              {{"apiVersion", "v1"},
                               {"kind", "Secret"},
                               {"metadata", {{"name", "openstack"}, {"namespace", ns_}}},
                               {"stringData",
                                {{"username", "admin"},
                                 {"password", os_password},
                                 {"project_name", "demo"},
                                 {"domain_name", "Default"},
                                 {"application_credential_secret", os_app_secret}}}});
  ASSERT_TRUE(made) << made.error().ToString();
  made = client_->Create({}, kOpenstackSources, ns_,
                         {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                          {"kind", "OpenstackSource"},
                          {"metadata", {{"name", "os"}, {"namespace", ns_}}},
                          {"spec",
                           {{"endpoint", "http://127.0.0.1:9/v3"},
                            {"region", "RegionOne"},
                            {"credentials", {{"name", "openstack"}, {"namespace", ns_}}}}}});
  ASSERT_TRUE(made) << made.error().ToString();
  // An OVA whose URL carries a password and a token (both must go).
  const std::string ova_password = "ova-url-pw-" + suffix_;
  const std::string ova_token = "ovaquerytoken" + suffix_;
  CreateOvaSource("ova",
                  "http://ovauser:" + ova_password + "@127.0.0.1:9/a.ova?token=" + ova_token);
  StartWorld();
  CreateImport("b", {{"virtualMachineName", "vmi-CamelCase"},
                     {"networkMapping",
                      {{{"sourceNetwork", "VM Network"}, {"destinationNetwork", "vlan10"}}}}});
  ASSERT_EQ(WaitImport("b", "virtualMachineRunning"), "virtualMachineRunning") << ControllerLog();
  // The image server's capability URLs, from the images the import made.
  std::vector<std::string> tokens;
  for (const Json& img : Items(kImages)) {
    const std::string url = core::JsonString(core::JsonObject(img, "spec"), "url");
    const auto at = url.find("/disks/");
    if (at != std::string::npos) {
      tokens.push_back(url.substr(at + 7, 64));
    }
  }
  ASSERT_FALSE(tokens.empty()) << "no image with a disk URL: the test proves little";
  // The sources have been looked at (their errors are in the log) before the bundle.
  EXPECT_TRUE(Eventually(
      [&] {
        auto s = client_->Get({}, kOvaSources, ns_, "ova");
        return s && !core::JsonObject(*s, "status").empty();
      },
      20s));

  const std::string log = ControllerLog();
  const auto at = log.find("msg=\"health and metrics listening\" port=");
  ASSERT_NE(at, std::string::npos);
  const int port = std::atoi(log.c_str() + log.find("port=", at) + 5);
  const fs::path archive = dir_ / "bundle.tar.gz";
  const auto b0 = Clock::now();
  std::string out;
  ASSERT_EQ(Cli("bundle -o '" + archive.string() + "' --controller-log '" +
                    (dir_ / "controller.log").string() +
                    "' --metrics-url http://127.0.0.1:" + std::to_string(port) + "/metrics",
                &out),
            0)
      << out;
  const double bundle_s = std::chrono::duration<double>(Clock::now() - b0).count();
  const fs::path x = dir_ / "x";
  fs::create_directories(x);
  ASSERT_EQ(RunCommand("tar -xzf '" + archive.string() + "' -C '" + x.string() + "' 2>&1", &out), 0)
      << out;
  const fs::path root = x / "vmimport-bundle";

  // Every secret the world knows, and none is in any file of the archive.
  std::vector<std::string> secrets = {WorldVar("VCSIM_PASSWORD"), os_password, os_app_secret,
                                      ova_password, ova_token};
  secrets.insert(secrets.end(), tokens.begin(), tokens.end());
  std::istringstream key(Slurp(WorldVar("KUBE_CLIENT_KEY_FILE")));
  for (std::string line; std::getline(key, line);) {
    if (line.size() >= 32 && line.find("-----") == std::string::npos) {
      secrets.push_back(line);  // the kube client key's body, line by line
    }
  }
  // The same values as the Secret's base64 data shows them.
  secrets.push_back(core::Base64Encode(WorldVar("VCSIM_PASSWORD")));
  secrets.push_back(core::Base64Encode(os_password));
  size_t files = 0;
  std::string all;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) {
      continue;
    }
    ++files;
    const std::string text = Slurp(entry.path());
    all += text;
    for (const std::string& s : secrets) {
      EXPECT_EQ(text.find(s), std::string::npos)
          << "secret " << s.substr(0, 6) << "... in " << entry.path();
    }
  }
  // The log did hold some of them before redaction (else the check above proves little).
  EXPECT_NE(all.find("REDACTED"), std::string::npos);

  // What is in it.
  for (const char* file :
       {"manifest.json", "secrets.json", "events.json", "metrics.txt", "logs/controller-0.log"}) {
    EXPECT_TRUE(fs::exists(root / file)) << file;
  }
  for (const std::string& obj :
       {"vmwaresources/" + ns_ + "/vcsim.json", "openstacksources/" + ns_ + "/os.json",
        "ovasources/" + ns_ + "/ova.json", "virtualmachineimports/" + ns_ + "/b.json",
        "virtualmachines/" + ns_ + "/vmi-camelcase.json"}) {
    EXPECT_TRUE(fs::exists(root / obj)) << obj;
  }
  const auto imp = core::ParseJson(Slurp(root / "virtualmachineimports" / ns_ / "b.json"));
  ASSERT_TRUE(imp);
  EXPECT_EQ(core::JsonString((*imp)["status"], "importStatus"), "virtualMachineRunning");
  const auto ova = core::ParseJson(Slurp(root / "ovasources" / ns_ / "ova.json"));
  ASSERT_TRUE(ova);
  EXPECT_EQ(core::JsonString((*ova)["spec"], "url"),
            "http://REDACTED@127.0.0.1:9/a.ova?token=REDACTED");
  const auto listed = core::ParseJson(Slurp(root / "secrets.json"));
  ASSERT_TRUE(listed);
  EXPECT_NE(listed->dump().find("\"password\""), std::string::npos);  // key names only
  const std::string events = Slurp(root / "events.json");
  EXPECT_NE(events.find("\"VirtualMachineRunning\""), std::string::npos);
  EXPECT_NE(Slurp(root / "metrics.txt").find("vmimport_"), std::string::npos);
  EXPECT_GT(fs::file_size(root / "logs/controller-0.log"), 1000u);
  std::cerr << "bundle test: " << files << " files; import "
            << std::chrono::duration<double>(b0 - t0).count() << " s, bundle " << bundle_s
            << " s\n";
}

}  // namespace
}  // namespace vmimport::kube
