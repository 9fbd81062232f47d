// The report's facts (report/report.h) and its page (report/html.h) from objects written here:
// the timeline from status.phaseTransitions, bytes, throughput, downtime, digests and who
// verified them, hardware side by side, warnings, a plan's summary; the page escapes every text
// from the cluster (a VM named <script>alert(1)</script> is text) and loads nothing.

#include "report/report.h"

#include <gtest/gtest.h>

#include "report/html.h"

namespace vmimport::report {
namespace {

constexpr const char* kHostile = "<script>alert(1)</script>";

Json Import(const std::string& name, const std::string& vm_name) {
  return {{"kind", "VirtualMachineImport"},
          {"metadata",
           {{"name", name},
            {"namespace", "ns"},
            {"uid", "u-" + name},
            {"creationTimestamp", "2026-12-05T10:00:00Z"},
            {"labels", {{"migration.harvesterhci.io/import-plan", "wave"}}}}},
          {"spec", {{"virtualMachineName", vm_name}}},
          {"status",
           {{"importStatus", "virtualMachineRunning"},
            {"importedVirtualMachineName", "web"},
            {"phaseTransitions",
             {{{"phase", "virtualMachineImportValid"}, {"time", "2026-12-05T10:00:01.000000Z"}},
              {{"phase", "sourceReady"}, {"time", "2026-12-05T10:00:02.000000Z"}},
              {{"phase", "disksExported"}, {"time", "2026-12-05T10:00:04.000000Z"}},
              {{"phase", "diskImageSubmitted"}, {"time", "2026-12-05T10:00:04.500000Z"}},
              {{"phase", "diskImagesReady"}, {"time", "2026-12-05T10:00:08.500000Z"}},
              {{"phase", "virtualMachineCreated"}, {"time", "2026-12-05T10:00:09.000000Z"}},
              {{"phase", "virtualMachineRunning"}, {"time", "2026-12-05T10:00:10.000000Z"}}}},
            {"importConditions",
             {{{"type", "VMPoweringOff"},
               {"status", "True"},
               {"lastTransitionTime", "2026-12-05T10:00:01Z"}},
              {{"type", "VMPoweredOff"},
               {"status", "True"},
               {"lastTransitionTime", "2026-12-05T10:00:02Z"}}}},
            {"sourceVirtualMachine",
             {{"name", vm_name},
              {"inventoryPath", "/DC0/vm/" + vm_name},
              {"cpus", 4},
              {"coresPerSocket", 2},
              {"memoryMiB", 2048},
              {"firmware", "efi"},
              {"secureBoot", true},
              {"disks",
               {{{"name", "Hard disk 1"},
                 {"capacityBytes", 8388608},
                 {"bus", "scsi"},
                 {"storage", "datastore1"}}}},
              {"nics",
               {{{"mac", "00:50:56:aa:bb:cc"}, {"network", "VM Network"}, {"model", "vmxnet3"}}}}}},
            {"diskImportStatus",
             {{{"diskName", "web-disk-0.img"},
               {"diskSize", 8388608},
               {"bytesDone", 8388608},
               {"busType", "virtio"},
               {"storageClass", "fast"},
               {"sha512", "abc512"},
               {"verification",
                {{{"verifier", "vsphere-manifest"},
                  {"algorithm", "sha256"},
                  {"digest", "d256"},
                  {"result", "verified"}},
                 {{"verifier", "longhorn"},
                  {"algorithm", "sha512"},
                  {"digest", "d512"},
                  {"result", "mismatch"},
                  {"message", "stored bytes differ"}}}}}}}}}};
}

Json TargetVm() {
  return {
      {"metadata", {{"name", "web"}, {"namespace", "ns"}}},
      {"status", {{"printableStatus", "Running"}}},
      {"spec",
       {{"template",
         {{"spec",
           {{"domain",
             {{"cpu", {{"sockets", 2}, {"cores", 2}, {"threads", 1}}},
              {"memory", {{"guest", "2Gi"}}},
              {"firmware", {{"bootloader", {{"efi", {{"secureBoot", true}}}}}}},
              {"devices",
               {{"disks", {{{"name", "disk-0"}, {"disk", {{"bus", "virtio"}}}}}},
                {"interfaces",
                 {{{"name", "nic-0"},
                   {"macAddress", "00:50:56:aa:bb:cc"},
                   {"model", "virtio"}}}}}}}},
            {"volumes",
             {{{"name", "disk-0"}, {"persistentVolumeClaim", {{"claimName", "web-disk-0"}}}}}},
            {"networks", {{{"name", "nic-0"}, {"multus", {{"networkName", "ns/vlan10"}}}}}}}}}}}}};
}

Json Event(const std::string& type, const std::string& reason, const std::string& message) {
  return {{"type", type},
          {"reason", reason},
          {"message", message},
          {"count", 1},
          {"lastTimestamp", "2026-12-05T10:00:03Z"}};
}

TEST(Report, TimelineHasOneBarPerPhaseUntilTheTerminalOne) {
  const Json t = BuildTimeline(Import("imp", "web"), "2026-12-05T11:00:00Z");
  EXPECT_EQ(t["start"], "2026-12-05T10:00:00Z");
  EXPECT_EQ(t["end"], "2026-12-05T10:00:10.000000Z");
  EXPECT_FALSE(t["ongoing"].get<bool>());
  EXPECT_DOUBLE_EQ(t["seconds"].get<double>(), 10.0);
  ASSERT_EQ(t["phases"].size(), 7u);  // pending .. virtualMachineCreated
  EXPECT_EQ(t["phases"][0]["phase"], "pending");
  EXPECT_DOUBLE_EQ(t["phases"][0]["seconds"].get<double>(), 1.0);
  EXPECT_EQ(t["phases"][4]["phase"], "diskImageSubmitted");
  EXPECT_DOUBLE_EQ(t["phases"][4]["seconds"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(t["phases"][4]["offsetSeconds"].get<double>(), 4.5);
}

TEST(Report, RunningPhaseEndsNowAndAnOldImportSaysItHasNoTimeline) {
  Json imp = Import("imp", "web");
  imp["status"]["phaseTransitions"].erase(6);
  imp["status"]["importStatus"] = "virtualMachineCreated";
  const Json t = BuildTimeline(imp, "2026-12-05T10:00:12Z");
  EXPECT_TRUE(t["ongoing"].get<bool>());
  EXPECT_DOUBLE_EQ(t["phases"].back()["seconds"].get<double>(), 3.0);
  imp["status"].erase("phaseTransitions");
  const Json old = BuildTimeline(imp, "2026-12-05T10:00:12Z");
  EXPECT_TRUE(old["phases"].empty());
  EXPECT_NE(old["note"].get<std::string>().find("phaseTransitions"), std::string::npos);
}

TEST(Report, ImportFactsBytesThroughputDowntimeDigestsHardwareWarnings) {
  Input in;
  in.generated_at = "2026-12-05T11:00:00Z";
  in.imports.push_back({Import("imp", "web"),
                        TargetVm(),
                        {Event("Normal", "Exported", "disks exported"),
                         Event("Warning", "Readiness", "no VMware tools driver")}});
  const Json r = BuildReport(in);
  ASSERT_EQ(r["imports"].size(), 1u);
  const Json& f = r["imports"][0];
  EXPECT_EQ(f["plan"], "wave");
  EXPECT_EQ(f["bytesDone"], 8388608u);
  // 8 MiB from disksExported (10:00:04) to diskImagesReady (10:00:08.5): 4.5 s.
  EXPECT_DOUBLE_EQ(f["transferSeconds"].get<double>(), 4.5);
  EXPECT_NEAR(f["throughputBytesPerSecond"].get<double>(), 8388608 / 4.5, 1e-6);
  // Powering off began at 10:00:01; the target ran at 10:00:10.
  EXPECT_DOUBLE_EQ(f["downtime"]["seconds"].get<double>(), 9.0);
  EXPECT_EQ(f["disks"][0]["verification"][0]["verifier"], "vsphere-manifest");
  EXPECT_EQ(f["disks"][0]["sha512"], "abc512");
  const Json& src = f["hardware"]["source"];
  const Json& dst = f["hardware"]["target"];
  EXPECT_EQ(src["cpu"], "4 vCPU (2 sockets × 2 cores)");
  EXPECT_EQ(src["firmware"], "efi, secure boot");
  EXPECT_EQ(src["disks"][0]["bus"], "scsi");
  EXPECT_EQ(dst["cpu"], "4 vCPU (2 sockets × 2 cores × 1 threads)");
  EXPECT_EQ(dst["memory"], "2Gi");
  EXPECT_EQ(dst["disks"][0]["storageClass"], "fast");
  EXPECT_EQ(dst["disks"][0]["claim"], "web-disk-0");
  EXPECT_EQ(dst["nics"][0]["network"], "ns/vlan10");
  EXPECT_EQ(dst["nics"][0]["mac"], src["nics"][0]["mac"]);
  ASSERT_EQ(f["warnings"].size(), 2u) << f["warnings"].dump();
  EXPECT_NE(f["warnings"][0].get<std::string>().find("longhorn mismatch"), std::string::npos);
  EXPECT_NE(f["warnings"][1].get<std::string>().find("Readiness"), std::string::npos);
  EXPECT_EQ(f["events"].size(), 2u);
}

TEST(Report, SourceAlreadyOffMeansNoDowntimeOfTheImport) {
  Json imp = Import("imp", "web");
  imp["status"]["importConditions"].erase(0);  // no VMPoweringOff: it was off
  Input in;
  in.imports.push_back({imp, nullptr, {Event("Normal", "AlreadyPoweredOff", "it was off")}});
  const Json f = BuildReport(in)["imports"][0];
  EXPECT_FALSE(f["downtime"].contains("seconds"));
  EXPECT_NE(f["downtime"]["note"].get<std::string>().find("already powered off"),
            std::string::npos);
  EXPECT_TRUE(f["hardware"]["target"].is_null());
  // The controller's power-off Event (firstTimestamp 10:00:03) is when the downtime began.
  Json power_off = Event("Normal", "PowerOff", "powering off (forced)");
  power_off["firstTimestamp"] = "2026-12-05T10:00:03Z";
  in.imports[0].events = {power_off};
  const Json g = BuildReport(in)["imports"][0];
  EXPECT_DOUBLE_EQ(g["downtime"].value("seconds", 0.0), 7.0) << g["downtime"].dump();
}

TEST(Report, PlanSumsUpItsImports) {
  Input in;
  in.generated_at = "2026-12-05T11:00:00Z";
  Json second = Import("b", "db");
  for (Json& t : second["status"]["phaseTransitions"]) {
    const std::string time = t["time"].get<std::string>();  // 10 s later
    t["time"] =
        time.substr(0, 17) + std::to_string(std::stoi(time.substr(17, 2)) + 10) + time.substr(19);
  }
  in.imports.push_back({Import("a", "web"), nullptr, {}});
  in.imports.push_back({second, nullptr, {}});
  in.plans.push_back({{{"metadata", {{"name", "wave"}, {"namespace", "ns"}}},
                       {"status",
                        {{"phase", "Succeeded"},
                         {"summary", {{"total", 2}, {"succeeded", 2}}},
                         {"conditions", {{{"reason", "AllVmsRunning"}, {"message", "2 of 2"}}}}}}},
                      {},
                      {"a", "b"}});
  const Json p = BuildReport(in)["plans"][0];
  EXPECT_EQ(p["reason"], "AllVmsRunning");
  EXPECT_EQ(p["bytesDone"], 2u * 8388608u);
  EXPECT_EQ(p["startedAt"], "2026-12-05T10:00:00Z");
  EXPECT_DOUBLE_EQ(p["durationSeconds"].get<double>(), 20.0);
  EXPECT_NEAR(p["bytesPerSecond"].get<double>(), 2.0 * 8388608 / 20, 1e-6);
}

TEST(ReportHtml, HostileNamesAreTextAndThePageLoadsNothing) {
  Json imp = Import("imp", kHostile);
  imp["status"]["diskImportStatus"][0]["diskName"] = std::string("\"><img src=x onerror=alert(2)>");
  Input in;
  in.generated_at = "2026-12-05T11:00:00Z";
  in.imports.push_back({imp, TargetVm(), {Event("Warning", "Bad", kHostile)}});
  const std::string html = RenderHtml(BuildReport(in));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&quot;&gt;&lt;img src=x"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find(" src=\""), std::string::npos);  // as an attribute
  EXPECT_EQ(html.find(" href=\"http"), std::string::npos);
  EXPECT_NE(html.find("Content-Security-Policy\" content=\"default-src 'none'"), std::string::npos);
}

TEST(ReportHtml, BarsAreAsWideAsTheirPhases) {
  Input in;
  in.generated_at = "2026-12-05T11:00:00Z";
  in.imports.push_back({Import("imp", "web"), TargetVm(), {}});
  const std::string html = RenderHtml(BuildReport(in));
  // diskImageSubmitted: 4 s of 10 at offset 4.5 s → x = 280 + 270, width 240.
  const std::string bar = "<rect x=\"550\" y=\"83\" width=\"240\" height=\"14\" fill=\"" +
                          std::string(PhaseColour("diskImageSubmitted")) + "\"";
  EXPECT_NE(html.find(bar), std::string::npos) << html;
  // A phase of 0 s still shows, 2 px wide.
  EXPECT_NE(PhaseColour("sourceReady"), PhaseColour("disksExported"));
}

TEST(ReportHtml, InvalidUtf8AndMissingFieldsDoNotThrow) {
  Json imp = Import("imp", std::string("bad\xff\xfe", 5));
  imp["status"]["diskImportStatus"] = "not an array";
  imp["status"]["phaseTransitions"][0]["time"] = 12;
  Input in;
  in.imports.push_back({imp, Json("garbage"), {Json::array()}});
  in.plans.push_back({Json::object(), {}, {}});
  Json r;
  ASSERT_NO_THROW(r = BuildReport(in));
  EXPECT_NO_THROW((void)RenderHtml(r));
  EXPECT_NO_THROW((void)RenderHtml(Json("not a report")));
  EXPECT_EQ(EscapeHtml(std::string("a\xff<", 3)), "a\xef\xbf\xbd&lt;");
}

}  // namespace
}  // namespace vmimport::report
