#include "controller/plan_logic.h"

#include <gtest/gtest.h>

#include <set>

#include "api/import_plan.h"

namespace vmimport::controller {
namespace {

using kube::Json;

model::VmDescription Vm(const std::string& path, uint64_t disk_bytes = 1 << 20,
                        const std::string& uuid = "") {
  model::VmDescription vm;
  vm.inventory_path = path;
  vm.name = path.substr(path.rfind('/') + 1);
  vm.id = "vm-" + std::to_string(path.size());
  vm.instance_uuid = uuid;
  model::DiskDescription d;
  d.capacity_bytes = disk_bytes;
  vm.disks.push_back(d);
  return vm;
}

TEST(GlobMatch, StarsQuestionMarksAndClasses) {
  EXPECT_TRUE(api::GlobMatch("web-*", "web-1"));
  EXPECT_TRUE(api::GlobMatch("*", ""));
  EXPECT_TRUE(api::GlobMatch("w?b-[0-9]", "web-7"));
  EXPECT_FALSE(api::GlobMatch("w?b-[0-9]", "web-x"));
  EXPECT_TRUE(api::GlobMatch("db-[!a]*", "db-b1"));
  EXPECT_FALSE(api::GlobMatch("db-[!a]*", "db-a1"));
  EXPECT_TRUE(api::GlobMatch("*-prod-*", "eu-prod-7"));
  EXPECT_FALSE(api::GlobMatch("web-*", "db-1"));
  EXPECT_TRUE(api::GlobMatch("[", "["));  // an unclosed class is literal
}

TEST(ImportNameFor, LowerCasedSanitisedAndCollisionSafe) {
  EXPECT_EQ(ImportNameFor("wave1", "Web_Server 01", "/DC0/vm/a", {}), "wave1-web-server-01");
  const std::string first = ImportNameFor("p", "vmi-dup", "/DC0/vm/team-a/vmi-dup", {});
  const std::string second = ImportNameFor("p", "vmi-dup", "/DC0/vm/team-b/vmi-dup", {first});
  EXPECT_EQ(first, "p-vmi-dup");
  EXPECT_NE(second, first);
  EXPECT_EQ(second.rfind("p-vmi-dup-", 0), 0u) << second;
  // Stable: the same VM always gets the same name.
  EXPECT_EQ(second, ImportNameFor("p", "vmi-dup", "/DC0/vm/team-b/vmi-dup", {first}));
  const std::string long_name = ImportNameFor("plan", std::string(100, 'x'), "/id", {});
  EXPECT_LE(long_name.size(), 63u);
}

TEST(SelectVms, FolderPatternAndNamesMustAllHold) {
  const std::vector<model::VmDescription> listing = {
      Vm("/DC0/vm/apps/web-1"), Vm("/DC0/vm/apps/web-2"), Vm("/DC0/vm/apps/db-1"),
      Vm("/DC0/vm/apps/sub/web-3")};
  api::PlanSelector by_pattern{.folder = "apps", .name_pattern = "web-*", .names = {}};
  Selection s = SelectVms("p", by_pattern, listing, "/DC0/vm");
  ASSERT_EQ(s.vms.size(), 3u);
  EXPECT_EQ(s.vms[0].import_name, "p-web-1");
  EXPECT_EQ(s.vms[0].folder, "apps");
  EXPECT_EQ(s.vms[2].folder, "apps/sub");
  EXPECT_EQ(s.vms[0].disk_bytes, 1u << 20);

  api::PlanSelector by_names{
      .folder = "", .name_pattern = "", .names = {"db-1", "/DC0/vm/apps/web-2", "gone"}};
  s = SelectVms("p", by_names, listing, "/DC0/vm");
  ASSERT_EQ(s.vms.size(), 2u);
  EXPECT_EQ(s.vms[0].name, "web-2");
  EXPECT_EQ(s.vms[1].name, "db-1");
  EXPECT_EQ(s.not_found, std::vector<std::string>{"gone"});
}

TEST(SelectVms, AnAmbiguousNameIsReferencedByUuid) {
  const std::vector<model::VmDescription> listing = {Vm("/DC0/vm/team-a/vmi-dup", 1, "uuid-a"),
                                                     Vm("/DC0/vm/team-a/x/vmi-dup", 1, "uuid-b"),
                                                     Vm("/DC0/vm/team-b/vmi-dup", 1, "uuid-c")};
  Selection s =
      SelectVms("p", {.folder = "", .name_pattern = "vmi-*", .names = {}}, listing, "/DC0/vm");
  ASSERT_EQ(s.vms.size(), 3u);
  EXPECT_EQ(s.vms[0].vm_reference, "uuid-a");  // team-a/x/vmi-dup is under team-a too
  EXPECT_EQ(s.vms[1].vm_reference, "vmi-dup");
  EXPECT_EQ(s.vms[2].vm_reference, "vmi-dup");
  EXPECT_EQ(s.vms[2].folder, "team-b");
  EXPECT_NE(s.vms[0].import_name, s.vms[1].import_name);
  EXPECT_NE(s.vms[1].import_name, s.vms[2].import_name);
}

TEST(ImportObjectFor, TemplateSourceReferenceLabelAndOwner) {
  const Json plan = {{"metadata", {{"name", "wave"}, {"namespace", "ns1"}, {"uid", "u-1"}}}};
  api::ImportPlanSpec spec;
  spec.source_cluster.kind = "VmwareSource";
  spec.source_cluster.name = "vc";
  spec.import_template = {{"storageClass", "fast"}, {"folder", "ignored"}};
  api::PlannedVm vm{.name = "web",
                    .inventory_path = "/DC0/vm/a/web",
                    .id = "vm-1",
                    .import_name = "wave-web",
                    .vm_reference = "web",
                    .folder = "a",
                    .disk_bytes = 0};
  const Json obj = ImportObjectFor(plan, spec, vm);
  EXPECT_EQ(obj["metadata"]["name"], "wave-web");
  EXPECT_EQ(obj["metadata"]["labels"][std::string(api::kPlanLabel)], "wave");
  EXPECT_EQ(obj["metadata"]["ownerReferences"][0]["uid"], "u-1");
  EXPECT_EQ(obj["metadata"]["ownerReferences"][0]["controller"], true);
  EXPECT_EQ(obj["spec"]["storageClass"], "fast");
  EXPECT_EQ(obj["spec"]["folder"], "a");
  EXPECT_EQ(obj["spec"]["virtualMachineName"], "web");
  EXPECT_EQ(obj["spec"]["sourceCluster"]["namespace"], "ns1");
}

Json ImportWith(const std::string& phase, uint64_t done, uint64_t total, uint64_t rate) {
  Json status = {{"importStatus", phase},
                 {"diskImportStatus",
                  {{{"bytesDone", done}, {"bytesTotal", total}, {"bytesPerSecond", rate}}}}};
  if (phase == "VMMigrationFailed") {
    status["importConditions"] = {{{"type", "Failed"},
                                   {"status", "True"},
                                   {"reason", "ExportFailed"},
                                   {"message", "lease error"}}};
  }
  return {{"status", status}};
}

TEST(Summarize, CountsBytesRateEtaAndAttention) {
  std::vector<api::PlannedVm> selection;
  for (const char* n : {"a", "b", "c", "d"}) {
    selection.push_back(api::PlannedVm{.name = n,
                                       .inventory_path = "",
                                       .id = "",
                                       .import_name = std::string("p-") + n,
                                       .vm_reference = n,
                                       .folder = "",
                                       .disk_bytes = 1000});
  }
  std::map<std::string, Json> imports = {{"p-a", ImportWith("virtualMachineRunning", 900, 1000, 0)},
                                         {"p-b", ImportWith("diskImageSubmitted", 400, 1000, 100)},
                                         {"p-c", ImportWith("VMMigrationFailed", 10, 1000, 0)}};
  const PlanSummary s = Summarize(selection, imports);
  EXPECT_EQ(s.total, 4);
  EXPECT_EQ(s.succeeded, 1);
  EXPECT_EQ(s.running, 1);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.not_started, 1);
  EXPECT_EQ(s.by_phase.at("diskImageSubmitted"), 1);
  EXPECT_EQ(s.bytes_total, 4000u);
  EXPECT_EQ(s.bytes_done, 1000u + 400u + 10u);
  EXPECT_EQ(s.bytes_per_second, 100u);
  EXPECT_EQ(s.eta_seconds, (4000 - 1410) / 100);
  ASSERT_EQ(s.attention.size(), 1u);
  EXPECT_EQ(s.attention[0].vm, "c");
  EXPECT_EQ(s.attention[0].reason, "ExportFailed");
  EXPECT_EQ(SummaryToJson(s)["progress"], "35%");
}

TEST(ValidatePlanSpec, SaysWhatIsWrong) {
  auto spec = api::ImportPlanSpecFromJson(
      {{"sourceCluster", {{"kind", "VmwareSource"}, {"name", "vc"}}},
       {"template", {{"virtualMachineName", "x"}, {"defaultDiskBusType", "floppy"}}},
       {"schedule", {{"maxConcurrentImports", -1}, {"notBefore", "tomorrow"}}},
       {"retry", "2"}});
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->retry, "2");
  const auto problems = api::ValidatePlanSpec(*spec);
  const std::string all = [&] {
    std::string s;
    for (const auto& p : problems) {
      s += p + "\n";
    }
    return s;
  }();
  EXPECT_NE(all.find("spec.selector"), std::string::npos) << all;
  EXPECT_NE(all.find("maxConcurrentImports"), std::string::npos) << all;
  EXPECT_NE(all.find("notBefore"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.template.virtualMachineName"), std::string::npos) << all;
  EXPECT_FALSE(api::ImportPlanSpecFromJson({{"selector", {{"names", "web"}}}}));
}

TEST(ImportPlanSpecFromJson, ReadsTagsMetadataHostAndDatastoreLimitsAndTheCap) {
  auto spec = api::ImportPlanSpecFromJson(
      {{"sourceCluster", {{"kind", "VmwareSource"}, {"name", "vc"}}},
       {"selector", {{"tags", {"prod", "tier/web"}}, {"metadata", {{"team", "a"}}}}},
       {"schedule",
        {{"maxConcurrentImports", 5},
         {"maxConcurrentPerHost", 2},
         {"maxConcurrentPerDatastore", 3}}},
       {"bandwidthBytesPerSecond", 4000000}});
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->selector.tags, (std::vector<std::string>{"prod", "tier/web"}));
  EXPECT_EQ(spec->selector.metadata.at("team"), "a");
  EXPECT_EQ(spec->schedule.max_concurrent_per_host, 2);
  EXPECT_EQ(spec->schedule.max_concurrent_per_datastore, 3);
  EXPECT_EQ(spec->bandwidth_bytes_per_second, 4e6);
  EXPECT_TRUE(api::ValidatePlanSpec(*spec).empty());  // tags alone are a selector

  struct Bad {
    Json spec;
    const char* says;
  };
  const std::vector<Bad> bad = {
      {{{"selector", {{"tags", "prod"}}}}, "spec.selector.tags: wrong type"},
      {{{"selector", {{"tags", {1}}}}}, "spec.selector.tags: must be strings"},
      {{{"selector", {{"metadata", {{"team", 1}}}}}}, "spec.selector.metadata.team"},
      {{{"schedule", {{"maxConcurrentPerHost", "2"}}}}, "maxConcurrentPerHost: wrong type"},
      {{{"bandwidthBytesPerSecond", "fast"}}, "bandwidthBytesPerSecond: wrong type"},
  };
  for (const Bad& b : bad) {
    auto parsed = api::ImportPlanSpecFromJson(b.spec);
    ASSERT_FALSE(parsed) << b.spec.dump();
    EXPECT_NE(parsed.error().message.find(b.says), std::string::npos) << parsed.error().message;
  }
  auto negative = api::ImportPlanSpecFromJson(
      {{"sourceCluster", {{"kind", "VmwareSource"}, {"name", "vc"}}},
       {"selector", {{"tags", {"/x", "ok"}}}},
       {"schedule", {{"maxConcurrentPerHost", -1}, {"maxConcurrentPerDatastore", -2}}},
       {"bandwidthBytesPerSecond", -5}});
  ASSERT_TRUE(negative);
  std::string all;
  for (const auto& p : api::ValidatePlanSpec(*negative)) {
    all += p + "\n";
  }
  for (const char* want : {"spec.selector.tags: \"/x\"", "maxConcurrentPerHost: must be 0",
                           "maxConcurrentPerDatastore: must be 0", "bandwidthBytesPerSecond"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
}

TEST(HasTags, EveryWantedTagByNameOrCategoryAndName) {
  struct Case {
    std::vector<std::string> wanted;
    std::vector<std::string> vm;
    bool match;
  };
  const std::vector<Case> cases = {
      {{"prod"}, {"env/prod"}, true},
      {{"env/prod"}, {"env/prod"}, true},
      {{"env/prod"}, {"stage/prod"}, false},
      {{"prod", "tier/web"}, {"env/prod", "tier/web"}, true},
      {{"prod", "tier/web"}, {"env/prod", "tier/db"}, false},
      {{"prod"}, {}, false},
      {{"pro"}, {"env/prod"}, false},
      {{}, {"env/prod"}, true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(HasTags(c.wanted, c.vm), c.match)
        << ::testing::PrintToString(c.wanted) << " on " << ::testing::PrintToString(c.vm);
  }
}

TEST(SelectVms, TagsAndMetadataMustHoldWithTheOtherConditions) {
  std::vector<model::VmDescription> listing = {Vm("/DC0/vm/a/web-1"), Vm("/DC0/vm/a/web-22"),
                                               Vm("/DC0/vm/a/db-333")};
  for (size_t i = 0; i < listing.size(); ++i) {
    listing[i].id = "vm-" + std::to_string(i + 1);  // tags are by provider id
  }
  listing[0].metadata = {{"team", "a"}, {"tier", "web"}};
  listing[1].metadata = {{"team", "b"}};
  listing[2].metadata = {{"team", "a"}};
  listing[0].host = "H0";
  listing[0].disks[0].storage = "ds1";
  const VmTags tags = {{listing[0].id, {"env/prod"}}, {listing[2].id, {"env/prod", "tier/db"}}};
  struct Case {
    api::PlanSelector selector;
    std::vector<std::string> picked;
  };
  const std::vector<Case> cases = {
      {{.tags = {"prod"}}, {"web-1", "db-333"}},
      {{.tags = {"env/prod", "tier/db"}}, {"db-333"}},
      {{.name_pattern = "web-*", .tags = {"prod"}}, {"web-1"}},
      {{.tags = {"staging"}}, {}},
      {{.metadata = {{"team", "a"}}}, {"web-1", "db-333"}},
      {{.metadata = {{"team", "a"}, {"tier", "web"}}}, {"web-1"}},
      {{.metadata = {{"team", "c"}}}, {}},
      {{.tags = {"prod"}, .metadata = {{"team", "a"}}}, {"web-1", "db-333"}},
  };
  for (const Case& c : cases) {
    Selection s = SelectVms("p", c.selector, listing, "/DC0/vm", tags);
    std::vector<std::string> names;
    for (const auto& vm : s.vms) {
      names.push_back(vm.name);
    }
    EXPECT_EQ(names, c.picked) << ::testing::PrintToString(c.selector.tags);
  }
  Selection s = SelectVms("p", {.name_pattern = "web-1"}, listing, "/DC0/vm", tags);
  ASSERT_EQ(s.vms.size(), 1u);
  EXPECT_EQ(s.vms[0].host, "H0");
  EXPECT_EQ(s.vms[0].datastores, std::vector<std::string>{"ds1"});
  const api::PlannedVm back = api::PlannedVmFromJson(api::PlannedVmToJson(s.vms[0]));
  EXPECT_EQ(back.host, "H0");
  EXPECT_EQ(back.datastores, std::vector<std::string>{"ds1"});
}

api::PlannedVm Planned(const std::string& name, const std::string& host,
                       std::vector<std::string> datastores = {}) {
  api::PlannedVm vm;
  vm.name = name;
  vm.import_name = name;
  vm.host = host;
  vm.datastores = std::move(datastores);
  return vm;
}

TEST(Schedule, WavesHostsAndDatastoresTableOfCases) {
  // h0-1..h0-3 on H0, h1-1..h1-2 on H1, x without a known host; ds per VM as named.
  const std::vector<api::PlannedVm> selection = {
      Planned("h0-1", "H0", {"ds1"}), Planned("h0-2", "H0", {"ds1"}),
      Planned("h0-3", "H0", {"ds2"}), Planned("h1-1", "H1", {"ds1", "ds2"}),
      Planned("h1-2", "H1", {"ds2"}), Planned("x", "")};
  struct Case {
    const char* what;
    api::PlanSchedule schedule;
    std::set<std::string> existing;
    std::set<std::string> active;
    std::vector<std::string> start;
    std::map<std::string, std::string> waiting;
  };
  const std::vector<Case> cases = {
      {"no limits: everything starts",
       {},
       {},
       {},
       {"h0-1", "h0-2", "h0-3", "h1-1", "h1-2", "x"},
       {}},
      {"a wave of 2",
       {.max_concurrent_imports = 2},
       {},
       {},
       {"h0-1", "h0-2"},
       {{"h0-3", "wave limit 2 reached"},
        {"h1-1", "wave limit 2 reached"},
        {"h1-2", "wave limit 2 reached"},
        {"x", "wave limit 2 reached"}}},
      {"1 per host: the next host's VM is not held back by H0",
       {.max_concurrent_per_host = 1},
       {},
       {},
       {"h0-1", "h1-1", "x"},
       {{"h0-2", "host H0 at its limit 1"},
        {"h0-3", "host H0 at its limit 1"},
        {"h1-2", "host H1 at its limit 1"}}},
      {"a wave of 3 and 2 per host",
       {.max_concurrent_imports = 3, .max_concurrent_per_host = 2},
       {},
       {},
       {"h0-1", "h0-2", "h1-1"},
       {{"h0-3", "host H0 at its limit 2"},
        {"h1-2", "wave limit 3 reached"},
        {"x", "wave limit 3 reached"}}},
      {"running imports count: H0 full, one slot of the wave left",
       {.max_concurrent_imports = 3, .max_concurrent_per_host = 2},
       {"h0-1", "h0-2"},
       {"h0-1", "h0-2"},
       {"h1-1"},
       {{"h0-3", "host H0 at its limit 2"},
        {"h1-2", "wave limit 3 reached"},
        {"x", "wave limit 3 reached"}}},
      {"ended imports free their slots",
       {.max_concurrent_imports = 3, .max_concurrent_per_host = 2},
       {"h0-1", "h0-2"},
       {},
       {"h0-3", "h1-1", "h1-2"},
       {{"x", "wave limit 3 reached"}}},
      {"1 per datastore: a VM on two datastores needs both free",
       {.max_concurrent_per_datastore = 1},
       {},
       {},
       {"h0-1", "h0-3", "x"},
       {{"h0-2", "datastore ds1 at its limit 1"},
        {"h1-1", "datastore ds1 at its limit 1"},
        {"h1-2", "datastore ds2 at its limit 1"}}},
      {"the host is checked before the datastore",
       {.max_concurrent_per_host = 1, .max_concurrent_per_datastore = 1},
       {"h0-1"},
       {"h0-1"},
       {"h1-2", "x"},
       {{"h0-2", "host H0 at its limit 1"},
        {"h0-3", "host H0 at its limit 1"},
        {"h1-1", "datastore ds1 at its limit 1"}}},
  };
  for (const Case& c : cases) {
    const ScheduleDecision d = Schedule(selection, c.schedule, c.existing, c.active);
    EXPECT_EQ(d.start, c.start) << c.what;
    EXPECT_EQ(d.waiting, c.waiting) << c.what;
  }
}

}  // namespace
}  // namespace vmimport::controller
