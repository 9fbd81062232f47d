#include "report/report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include "core/clock.h"
#include "core/json.h"

namespace vmimport::report {
namespace {

using core::JsonArray;
using core::JsonObject;
using core::JsonString;

// The phase names importStatus takes (api/virtual_machine_import.h), in the order they happen;
// "" (a new import the controller has not looked at yet) reads as "pending".
constexpr const char* kRunning = "virtualMachineRunning";
constexpr const char* kCreated = "virtualMachineCreated";

// A non-negative integer member, whether it was read as unsigned (from JSON text) or signed.
std::optional<uint64_t> Uint(const Json& j, std::string_view key) {
  if (auto u = core::JsonUint(j, key)) {
    return u;
  }
  if (auto i = core::JsonInt(j, key); i && *i >= 0) {
    return static_cast<uint64_t>(*i);
  }
  return std::nullopt;
}

bool TerminalPhase(const std::string& phase, bool starts_stopped) {
  return phase == kRunning || phase == "virtualMachineImportInvalid" ||
         phase == "VMMigrationFailed" || (starts_stopped && phase == kCreated);
}

// The Event's time: lastTimestamp (core/v1), else eventTime (events.k8s.io written through
// core/v1), else firstTimestamp.
std::string EventTime(const Json& e) {
  for (const char* key : {"lastTimestamp", "eventTime", "firstTimestamp"}) {
    std::string t = JsonString(e, key);
    if (!t.empty()) {
      return t;
    }
  }
  return JsonString(JsonObject(e, "metadata"), "creationTimestamp");
}

Json EventsOf(const std::vector<Json>& events) {
  std::vector<Json> out;
  out.reserve(events.size());
  for (const Json& e : events) {
    out.push_back({{"time", EventTime(e)},
                   {"type", JsonString(e, "type")},
                   {"reason", JsonString(e, "reason")},
                   {"message", JsonString(e, "message")},
                   {"count", core::JsonInt(e, "count").value_or(1)}});
  }
  std::stable_sort(out.begin(), out.end(), [](const Json& a, const Json& b) {
    return a["time"].get<std::string>() < b["time"].get<std::string>();
  });
  Json list = std::move(out);  // (a braced return would make [[...]]: json's initializer list)
  return list;
}

const Json* FindCondition(const Json& status, std::string_view type) {
  for (const Json& c : JsonArray(status, "importConditions")) {
    if (JsonString(c, "type") == type) {
      return &c;
    }
  }
  return nullptr;
}

std::string TimeOfPhase(const Json& timeline, const std::string& phase) {
  for (const Json& p : JsonArray(timeline, "transitions")) {
    if (JsonString(p, "phase") == phase) {
      return JsonString(p, "time");
    }
  }
  return "";
}

// Source powered off → target running. The import powers the source off only when it was on
// (VMShutdownGuest / VMPoweringOff conditions); otherwise there was no downtime of its making.
//
// The controller powers the source off on a task of its own and says so in Events (PowerOff,
// ShutdownGuest, AlreadyPoweredOff, with microsecond eventTime); the conditions
// VMShutdownGuest/VMPoweringOff (the reference's) say it too where a controller writes them.
// Events expire (an hour by default): without them and without those conditions the downtime is
// unknown.
Json Downtime(const Json& status, const Json& timeline, const std::vector<Json>& events) {
  const Json* off = FindCondition(status, "VMPoweredOff");
  std::string from;
  bool already_off = false;
  for (const Json& e : events) {
    const std::string reason = JsonString(e, "reason");
    if (reason == "PowerOff" || reason == "ShutdownGuest") {
      std::string t = JsonString(e, "eventTime");
      if (t.empty()) {
        t = JsonString(e, "firstTimestamp");  // the first power-off, not a repeat
      }
      if (!t.empty() && (from.empty() || t < from)) {
        from = t;
      }
    }
    already_off = already_off || reason == "AlreadyPoweredOff";
  }
  const bool powered_off_by_us = !from.empty() ||
                                 FindCondition(status, "VMShutdownGuest") != nullptr ||
                                 FindCondition(status, "VMPoweringOff") != nullptr;
  if (off == nullptr) {
    return {{"note", "the source has not been powered off (yet)"}};
  }
  if (!powered_off_by_us) {
    return {{"note", already_off ? "the source was already powered off: no downtime caused by "
                                   "the import"
                                 : "unknown: no power-off Event (Events expire) or condition"}};
  }
  // The power-off began with VMShutdownGuest/VMPoweringOff; VMPoweredOff says when it was done.
  for (const char* type : {"VMShutdownGuest", "VMPoweringOff"}) {
    if (const Json* c = FindCondition(status, type); c != nullptr) {
      const std::string t = JsonString(*c, "lastTransitionTime");
      if (!t.empty() && (from.empty() || t < from)) {
        from = t;
      }
    }
  }
  if (from.empty()) {
    from = JsonString(*off, "lastTransitionTime");
  }
  const std::string running = TimeOfPhase(timeline, kRunning);
  Json j = {{"sourcePoweredOffAt", from}};
  if (running.empty()) {
    j["note"] = "the target is not running yet";
    return j;
  }
  j["targetRunningAt"] = running;
  if (auto s = SecondsBetween(from, running)) {
    j["seconds"] = std::max(0.0, *s);
  }
  return j;
}

Json Disks(const Json& status) {
  Json out = Json::array();
  for (const Json& d : JsonArray(status, "diskImportStatus")) {
    Json verification = Json::array();
    for (const Json& v : JsonArray(d, "verification")) {
      verification.push_back({{"verifier", JsonString(v, "verifier")},
                              {"algorithm", JsonString(v, "algorithm")},
                              {"digest", JsonString(v, "digest")},
                              {"result", JsonString(v, "result")},
                              {"message", JsonString(v, "message")}});
    }
    const uint64_t size = Uint(d, "bytesTotal").value_or(Uint(d, "diskSize").value_or(0));
    out.push_back({{"name", JsonString(d, "diskName")},
                   {"sizeBytes", size},
                   {"bytesDone", Uint(d, "bytesDone").value_or(0)},
                   {"bus", JsonString(d, "busType")},
                   {"storageClass", JsonString(d, "storageClass")},
                   {"image", JsonString(d, "VirtualMachineImage")},
                   {"dataVolume", JsonString(d, "dataVolume")},
                   {"sha256", JsonString(d, "sha256")},
                   {"sha512", JsonString(d, "sha512")},
                   {"verification", std::move(verification)}});
  }
  return out;
}

Json SourceHardware(const Json& status) {
  const Json& vm = JsonObject(status, "sourceVirtualMachine");
  if (vm.empty()) {
    return nullptr;
  }
  Json disks = Json::array();
  for (const Json& d : JsonArray(vm, "disks")) {
    disks.push_back({{"name", JsonString(d, "name")},
                     {"sizeBytes", Uint(d, "capacityBytes").value_or(0)},
                     {"bus", JsonString(d, "bus")},
                     {"storage", JsonString(d, "storage")}});
  }
  Json nics = Json::array();
  for (const Json& n : JsonArray(vm, "nics")) {
    nics.push_back({{"mac", JsonString(n, "mac")},
                    {"network", JsonString(n, "network")},
                    {"model", JsonString(n, "model").empty() ? JsonString(n, "adapterType")
                                                             : JsonString(n, "model")}});
  }
  const int64_t cpus = core::JsonInt(vm, "cpus").value_or(0);
  const int64_t per_socket = core::JsonInt(vm, "coresPerSocket").value_or(0);
  std::string cpu = std::to_string(cpus) + " vCPU";
  if (per_socket > 0 && cpus > 0) {
    cpu += " (" + std::to_string(cpus / per_socket) + " sockets × " + std::to_string(per_socket) +
           " cores)";
  }
  std::string firmware = JsonString(vm, "firmware");
  if (core::JsonBool(vm, "secureBoot").value_or(false)) {
    firmware += ", secure boot";
  }
  return {
      {"name", JsonString(vm, "name")},
      {"path", JsonString(vm, "inventoryPath").empty() ? JsonString(vm, "id")
                                                       : JsonString(vm, "inventoryPath")},
      {"cpu", cpu},
      {"memory", std::to_string(Uint(vm, "memoryMiB").value_or(0)) + " MiB"},
      {"firmware", firmware},
      {"guestOS", JsonString(vm, "guestOSFullName").empty() ? JsonString(vm, "guestOS")
                                                            : JsonString(vm, "guestOSFullName")},
      {"disks", std::move(disks)},
      {"nics", std::move(nics)}};
}

// KubeVirt's VirtualMachine as harvester/virtual_machine.cc writes it; the disks' classes from
// the import's status (decided before anything was made), in disk order.
Json TargetHardware(const Json& vm, const Json& status) {
  if (!vm.is_object() || vm.empty()) {
    return nullptr;
  }
  const Json& tspec = JsonObject(JsonObject(JsonObject(vm, "spec"), "template"), "spec");
  const Json& domain = JsonObject(tspec, "domain");
  const Json& cpu = JsonObject(domain, "cpu");
  const int64_t sockets = core::JsonInt(cpu, "sockets").value_or(1);
  const int64_t cores = core::JsonInt(cpu, "cores").value_or(1);
  const int64_t threads = core::JsonInt(cpu, "threads").value_or(1);
  std::string cpu_text = std::to_string(sockets * cores * threads) + " vCPU (" +
                         std::to_string(sockets) + " sockets × " + std::to_string(cores) +
                         " cores × " + std::to_string(threads) + " threads)";
  std::string memory = JsonString(JsonObject(domain, "memory"), "guest");
  if (memory.empty()) {
    memory = JsonString(JsonObject(JsonObject(domain, "resources"), "requests"), "memory");
  }
  const Json& bootloader = JsonObject(JsonObject(domain, "firmware"), "bootloader");
  std::string firmware = "bios";
  if (const Json* efi = core::JsonMember(bootloader, "efi"); efi != nullptr) {
    firmware = "efi";
    if (core::JsonBool(*efi, "secureBoot").value_or(false)) {
      firmware += ", secure boot";
    }
  }
  // volume name → claim / data volume
  std::map<std::string, std::string> claims;
  for (const Json& v : JsonArray(tspec, "volumes")) {
    std::string claim = JsonString(JsonObject(v, "persistentVolumeClaim"), "claimName");
    if (claim.empty()) {
      claim = JsonString(JsonObject(v, "dataVolume"), "name");
    }
    claims[JsonString(v, "name")] = claim;
  }
  const Json& import_disks = JsonArray(status, "diskImportStatus");
  Json disks = Json::array();
  size_t i = 0;
  for (const Json& d : JsonArray(JsonObject(domain, "devices"), "disks")) {
    const std::string name = JsonString(d, "name");
    std::string cls = i < import_disks.size() ? JsonString(import_disks[i], "storageClass") : "";
    disks.push_back({{"name", name},
                     {"bus", JsonString(JsonObject(d, "disk"), "bus")},
                     {"claim", claims[name]},
                     {"storageClass", cls.empty() ? "(cluster default)" : cls}});
    ++i;
  }
  std::map<std::string, std::string> networks;
  for (const Json& n : JsonArray(tspec, "networks")) {
    const Json* multus = core::JsonMember(n, "multus");
    networks[JsonString(n, "name")] =
        multus != nullptr ? JsonString(*multus, "networkName") : "pod network";
  }
  Json nics = Json::array();
  for (const Json& n : JsonArray(JsonObject(domain, "devices"), "interfaces")) {
    nics.push_back({{"mac", JsonString(n, "macAddress")},
                    {"network", networks[JsonString(n, "name")]},
                    {"model", JsonString(n, "model")}});
  }
  const Json& md = JsonObject(vm, "metadata");
  return {{"name", JsonString(md, "namespace") + "/" + JsonString(md, "name")},
          {"status", JsonString(JsonObject(vm, "status"), "printableStatus")},
          {"cpu", cpu_text},
          {"memory", memory},
          {"firmware", firmware},
          {"disks", std::move(disks)},
          {"nics", std::move(nics)}};
}

Json Warnings(const Json& status, const Json& disks, const Json& events) {
  Json out = Json::array();
  for (const Json& c : JsonArray(status, "importConditions")) {
    if (JsonString(c, "type") == "Failed" && JsonString(c, "status") == "True") {
      out.push_back("failed: " + JsonString(c, "reason") + ": " + JsonString(c, "message"));
    }
  }
  for (const Json& d : disks) {
    for (const Json& v : JsonArray(d, "verification")) {
      if (JsonString(v, "result") != "verified") {
        out.push_back(JsonString(d, "name") + ": " + JsonString(v, "verifier") + " " +
                      JsonString(v, "result") + ": " + JsonString(v, "message"));
      }
    }
  }
  for (const Json& e : events) {
    if (JsonString(e, "type") == "Warning") {
      out.push_back(JsonString(e, "reason") + ": " + JsonString(e, "message"));
    }
  }
  return out;
}

Json ImportFacts(const ImportInput& in, const std::string& now) {
  const Json& md = JsonObject(in.vm_import, "metadata");
  const Json& spec = JsonObject(in.vm_import, "spec");
  const Json& status = JsonObject(in.vm_import, "status");
  Json timeline = BuildTimeline(in.vm_import, now);
  Json disks = Disks(status);
  uint64_t done = 0;
  uint64_t total = 0;
  for (const Json& d : disks) {
    total += d["sizeBytes"].get<uint64_t>();
    done += std::min(d["bytesDone"].get<uint64_t>(), d["sizeBytes"].get<uint64_t>());
  }
  const std::string phase = JsonString(status, "importStatus");
  if (phase == kRunning || phase == kCreated || phase == "diskImagesReady") {
    done = total;  // every disk is in the cluster (an image import may not count its bytes)
  }
  Json events = EventsOf(in.events);
  std::string target = JsonString(status, "importedVirtualMachineName");
  Json j = {{"name", JsonString(md, "name")},
            {"namespace", JsonString(md, "namespace")},
            {"plan", JsonString(JsonObject(md, "labels"), "migration.harvesterhci.io/import-plan")},
            {"phase", phase.empty() ? "pending" : phase},
            {"sourceVm", JsonString(spec, "virtualMachineName")},
            {"targetVm", target},
            {"createdAt", JsonString(md, "creationTimestamp")},
            {"bytesDone", done},
            {"bytesTotal", total},
            {"disks", disks},
            {"downtime", Downtime(status, timeline, in.events)},
            {"hardware",
             {{"source", SourceHardware(status)},
              {"target", TargetHardware(in.virtual_machine, status)}}},
            {"warnings", Warnings(status, disks, events)},
            {"events", std::move(events)}};
  // Throughput: the bytes over the time they moved (disks published → images ready).
  std::string from = TimeOfPhase(timeline, "disksExported");
  std::string to = TimeOfPhase(timeline, "diskImagesReady");
  if (from.empty()) {
    from = TimeOfPhase(timeline, "sourceReady");
  }
  if (auto s = SecondsBetween(from, to); s && *s > 0) {
    j["transferSeconds"] = *s;
    j["throughputBytesPerSecond"] = static_cast<double>(done) / *s;
  }
  timeline.erase("transitions");
  j["timeline"] = std::move(timeline);
  return j;
}

Json PlanFacts(const PlanInput& in, const Json& imports) {
  const Json& md = JsonObject(in.plan, "metadata");
  const Json& status = JsonObject(in.plan, "status");
  const Json* ready = nullptr;
  for (const Json& c : JsonArray(status, "conditions")) {
    ready = &c;  // the last (the plan keeps one Ready-like condition)
  }
  Json j = {{"name", JsonString(md, "name")},
            {"namespace", JsonString(md, "namespace")},
            {"phase", JsonString(status, "phase")},
            {"reason", ready != nullptr ? JsonString(*ready, "reason") : ""},
            {"message", ready != nullptr ? JsonString(*ready, "message") : ""},
            {"summary", JsonObject(status, "summary")},
            {"attention", JsonArray(status, "attention")},
            {"imports", in.import_names},
            {"events", EventsOf(in.events)}};
  // The plan's span: its first import's start to its last import's end; the rate over it.
  std::string start;
  std::string end;
  uint64_t bytes = 0;
  for (const Json& imp : imports) {
    if (std::find(in.import_names.begin(), in.import_names.end(), JsonString(imp, "name")) ==
        in.import_names.end()) {
      continue;
    }
    bytes += Uint(imp, "bytesDone").value_or(0);
    const Json& t = JsonObject(imp, "timeline");
    const std::string s = JsonString(t, "start");
    const std::string e = JsonString(t, "end");
    if (!s.empty() && (start.empty() || s < start)) {
      start = s;
    }
    if (!e.empty() && e > end) {
      end = e;
    }
  }
  j["bytesDone"] = bytes;
  if (!start.empty()) {
    j["startedAt"] = start;
    j["endedAt"] = end;
    if (auto s = SecondsBetween(start, end); s && *s > 0) {
      j["durationSeconds"] = *s;
      j["bytesPerSecond"] = static_cast<double>(bytes) / *s;
    }
  }
  return j;
}

}  // namespace

std::optional<double> SecondsBetween(const std::string& from, const std::string& to) {
  std::chrono::system_clock::time_point a;
  std::chrono::system_clock::time_point b;
  if (!core::ParseRfc3339(from, a) || !core::ParseRfc3339(to, b)) {
    return std::nullopt;
  }
  return std::chrono::duration<double>(b - a).count();
}

Json BuildTimeline(const Json& vm_import, const std::string& now) {
  const Json& md = JsonObject(vm_import, "metadata");
  const Json& status = JsonObject(vm_import, "status");
  const bool starts_stopped = JsonString(JsonObject(vm_import, "spec"), "runStrategy") == "stopped";
  // The import was made at creationTimestamp, in phase "pending" until the first transition.
  Json transitions = Json::array();
  const std::string created = JsonString(md, "creationTimestamp");
  if (!created.empty()) {
    transitions.push_back({{"phase", "pending"}, {"time", created}});
  }
  for (const Json& t : JsonArray(status, "phaseTransitions")) {
    const std::string phase = JsonString(t, "phase");
    const std::string time = JsonString(t, "time");
    if (time.empty()) {
      continue;
    }
    transitions.push_back({{"phase", phase.empty() ? "pending" : phase}, {"time", time}});
  }
  Json j = {{"transitions", transitions}};
  if (JsonArray(status, "phaseTransitions").empty()) {
    j["note"] =
        "no status.phaseTransitions: this import was made by a controller that did not record "
        "them";
    j["phases"] = Json::array();
    return j;
  }
  const std::string start = JsonString(transitions.front(), "time");
  Json phases = Json::array();
  bool ongoing = true;
  std::string end = now;
  for (size_t i = 0; i < transitions.size(); ++i) {
    const std::string phase = JsonString(transitions[i], "phase");
    const std::string from = JsonString(transitions[i], "time");
    if (TerminalPhase(phase, starts_stopped)) {
      ongoing = false;
      end = from;
      break;  // the terminal phase is the timeline's end, not a bar
    }
    const std::string to =
        i + 1 < transitions.size() ? JsonString(transitions[i + 1], "time") : now;
    phases.push_back({{"phase", phase},
                      {"start", from},
                      {"end", to},
                      {"seconds", std::max(0.0, SecondsBetween(from, to).value_or(0.0))},
                      {"offsetSeconds", std::max(0.0, SecondsBetween(start, from).value_or(0.0))}});
  }
  j["start"] = start;
  j["end"] = end;
  j["ongoing"] = ongoing;
  j["seconds"] = std::max(0.0, SecondsBetween(start, end).value_or(0.0));
  j["phases"] = std::move(phases);
  return j;
}

Json BuildReport(const Input& input) {
  Json imports = Json::array();
  for (const ImportInput& in : input.imports) {
    imports.push_back(ImportFacts(in, input.generated_at));
  }
  Json plans = Json::array();
  for (const PlanInput& in : input.plans) {
    plans.push_back(PlanFacts(in, imports));
  }
  return {{"generatedAt", input.generated_at}, {"plans", plans}, {"imports", imports}};
}

}  // namespace vmimport::report
