// kubectl-vmimport: the operator's view of vm-import, as a kubectl plugin (`kubectl vmimport ...`
// when it is on PATH) or run directly.
//
//   kubectl vmimport list vmwaresource/NAME [-n NS] [--folder F]
//       the VMs of a source with their disks, NICs and power state (the names an import needs);
//       vSphere: one paged PropertyCollector query (its SOAP call count on stderr)
//   kubectl vmimport plan -f import.yaml [-n NS]
//       every preflight check of a VirtualMachineImport, touching nothing: target name, source
//       readiness, exactly one source VM, disks, network mapping, storage class, destination
//       networks. Exit 0 when the import would start, 1 otherwise.
//   kubectl vmimport watch [NAME...] [-n NS] [--once]
//       running imports with per-disk progress bars, rate and ETA, until they end
//   kubectl vmimport report PLAN|IMPORT... [-n NS] [-o PREFIX]
//       PREFIX.html (self-contained: timeline, bytes, throughput, downtime, digests, hardware
//       source → target, warnings, Events) and PREFIX.json with the same facts (app/cli_report.cc)
//   kubectl vmimport bundle [-o FILE] [-A] [--controller-namespace NS] [--controller-selector SEL]
//                           [--controller-log-limit BYTES] [--controller-log PATH]...
//                           [--metrics-url URL]
//       a tar.gz of the sources, imports, plans, their Events, the controller's logs (its Pods'
//       current and previous logs, through the API) and metrics, every credential redacted
//       (app/cli_bundle.cc)
//
// It reads what the controller reads, with the user's kubeconfig, and never writes.

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include "api/names.h"
#include "api/overrides.h"
#include "api/virtual_machine_import.h"
#include "app/commands.h"
#include "controller/import_reconciler.h"
#include "controller/readiness.h"
#include "controller/source_reconciler.h"
#include "core/json.h"
#include "core/strings.h"
#include "harvester/virtual_machine.h"
#include "http/client.h"
#include "kube/client.h"
#include "kube/config.h"
#include "source/libvirt/importer.h"
#include "source/openstack/importer.h"
#include "source/ova/importer.h"
#include "source/vmware/importer.h"

namespace vmimport::cli {
namespace {

using kube::Json;

const kube::Resource kStorageClasses{"storage.k8s.io", "v1", "storageclasses", false};
const kube::Resource kNads{"k8s.cni.cncf.io", "v1", "network-attachment-definitions", true};

struct Context {
  std::unique_ptr<kube::Client> client;
  std::string ns = "default";
  source::vmware::VmwareImporter vmware;
  source::openstack::OpenstackImporter openstack;
  source::ova::OvaImporter ova;
  source::libvirt::LibvirtImporter libvirt;

  source::Importer& ImporterFor(source::SourceKind kind) {
    switch (kind) {
      case source::SourceKind::kVmware: return vmware;
      case source::SourceKind::kOpenstack: return openstack;
      case source::SourceKind::kOva: return ova;
      case source::SourceKind::kLibvirt: return libvirt;
    }
    return vmware;
  }
};

std::optional<source::SourceKind> KindOf(std::string kind) {
  kind = core::ToLower(kind);
  if (kind == "vmwaresource" || kind == "vmwaresources" || kind == "vmware") {
    return source::SourceKind::kVmware;
  }
  if (kind == "openstacksource" || kind == "openstacksources" || kind == "openstack") {
    return source::SourceKind::kOpenstack;
  }
  if (kind == "ovasource" || kind == "ovasources" || kind == "ova") {
    return source::SourceKind::kOva;
  }
  if (kind == "libvirtsource" || kind == "libvirtsources" || kind == "libvirt") {
    return source::SourceKind::kLibvirt;
  }
  return std::nullopt;
}

std::string Size(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ULL << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1fGi", static_cast<double>(bytes) / (1ULL << 30));
  } else {
    std::snprintf(buf, sizeof(buf), "%.0fMi", static_cast<double>(bytes) / (1ULL << 20));
  }
  return buf;
}

//! A YAML node as JSON: plain scalars become numbers, booleans or null when they read as such.
Json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        out[kv.first.as<std::string>()] = YamlToJson(kv.second);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (const auto& item : node) {
        out.push_back(YamlToJson(item));
      }
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (node.Tag() == "!") {
        return text;  // quoted
      }
      if (text == "true" || text == "false") {
        return text == "true";
      }
      if (text == "null" || text == "~") {
        return nullptr;
      }
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (!text.empty() && end != nullptr && *end == '\0') {
        return v;
      }
      return text;
    }
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return nullptr;
  }
  return nullptr;
}

int List(Context& ctx, const std::string& ref, const std::string& folder) {
  const auto slash = ref.find('/');
  auto kind = KindOf(ref.substr(0, slash));
  if (slash == std::string::npos || !kind) {
    std::cerr << "list: name a source as vmwaresource/NAME, openstacksource/NAME, ovasource/NAME "
                 "or libvirtsource/NAME\n";
    return 2;
  }
  const std::string name = ref.substr(slash + 1);
  auto obj = ctx.client->Get({}, controller::SourceResource(*kind), ctx.ns, name);
  if (!obj) {
    std::cerr << "list: " << obj.error().ToString() << "\n";
    return 1;
  }
  auto config = controller::LoadSourceConfig({}, *ctx.client, *kind, *obj);
  if (!config) {
    std::cerr << "list: " << config.error().ToString() << "\n";
    return 1;
  }
  // vSphere: one paged PropertyCollector query, whatever the VM count; its cost on stderr.
  core::Result<std::vector<model::VmDescription>> vms =
      core::MakeError(core::ErrorCode::kInternal, "not listed");
  if (*kind == source::SourceKind::kVmware) {
    auto listing = source::vmware::ListInventory({}, *config, folder);
    if (listing) {
      std::fprintf(stderr, "%zu VMs in %llu SOAP calls (%d pages)\n", listing->vms.size(),
                   static_cast<unsigned long long>(listing->stats.soap_calls),
                   listing->stats.pages);
      vms = std::move(listing->vms);
    } else {
      vms = core::MakeError(listing.error());
    }
  } else {
    vms = ctx.ImporterFor(*kind).ListVms({}, *config, folder);
  }
  if (!vms) {
    std::cerr << "list: " << vms.error().ToString() << "\n";
    return 1;
  }
  std::printf("%-20s %-32s %-10s %4s %8s %-5s %s\n", "NAME", "PATH/ID", "POWER", "CPUS", "MEMORY",
              "FW", "DISKS / NICS");
  for (const auto& vm : *vms) {
    std::string disks;
    for (const auto& d : vm.disks) {
      disks += (disks.empty() ? "" : ",") + Size(d.capacity_bytes) + "(" + d.bus + ")";
    }
    std::string nics;
    for (const auto& n : vm.nics) {
      nics += (nics.empty() ? "" : ",") + n.network + "=" + n.mac;
    }
    std::printf("%-20s %-32s %-10s %4d %6lluMi %-5s %s / %s\n", vm.name.c_str(),
                (vm.inventory_path.empty() ? vm.id : vm.inventory_path).c_str(),
                model::PowerStateName(vm.power_state), vm.cpus,
                static_cast<unsigned long long>(vm.memory_mib), model::FirmwareName(vm.firmware),
                disks.empty() ? "-" : disks.c_str(), nics.empty() ? "-" : nics.c_str());
  }
  return 0;
}

struct Check {
  bool ok = true;
  void Line(bool pass, const std::string& what) {
    std::printf("  %s %s\n", pass ? "ok  " : "FAIL", what.c_str());
    ok &= pass;
  }
};

int Plan(Context& ctx, const std::string& file) {
  Json object;
  try {
    object = YamlToJson(YAML::LoadFile(file));
  } catch (const YAML::Exception& e) {
    std::cerr << "plan: " << file << ": " << e.what() << "\n";
    return 2;
  }
  if (!object.contains("metadata") || !object["metadata"].is_object()) {
    object["metadata"] = Json::object();
  }
  if (core::JsonString(object["metadata"], "namespace").empty()) {
    object["metadata"]["namespace"] = ctx.ns;
  }
  auto vm_import = api::VirtualMachineImportFromJson(object);
  if (!vm_import) {
    std::cerr << "plan: " << vm_import.error().ToString() << "\n";
    return 2;
  }
  const auto& spec = vm_import->spec;
  std::printf("plan for VirtualMachineImport %s/%s (nothing is changed)\n",
              vm_import->namespace_.c_str(), vm_import->name.c_str());
  Check check;
  auto not_start = [] {
    std::printf("the import would not start\n");
    return 1;
  };
  const auto problems = api::ValidateImportSpec(spec);
  check.Line(problems.empty(), problems.empty() ? "spec is valid" : core::Join(problems, "; "));
  // targetVirtualMachineName is taken as written (ValidateImportSpec checked it).
  const bool named = !spec.target_virtual_machine_name.empty();
  auto target = named ? core::Result<std::string>(spec.target_virtual_machine_name)
                      : api::SanitizeTargetName(spec.virtual_machine_name);
  const bool by_uuid = !named && api::LooksLikeUuid(spec.virtual_machine_name);
  if (!by_uuid) {
    check.Line(bool(target), target ? "target name " + *target : target.error().message);
  }
  auto kind = KindOf(spec.source_cluster.kind);
  if (!kind) {
    check.Line(false, "unsupported source kind \"" + spec.source_cluster.kind + "\"");
    return not_start();
  }
  const std::string source_ns = spec.source_cluster.namespace_.empty()
                                    ? vm_import->namespace_
                                    : spec.source_cluster.namespace_;
  auto source_obj =
      ctx.client->Get({}, controller::SourceResource(*kind), source_ns, spec.source_cluster.name);
  if (!source_obj) {
    check.Line(false, "source " + source_ns + "/" + spec.source_cluster.name + ": " +
                          source_obj.error().message);
    return not_start();
  }
  const std::string status = core::JsonString(core::JsonObject(*source_obj, "status"), "status");
  check.Line(status == controller::kClusterReady, "source " + spec.source_cluster.name + " is " +
                                                      (status.empty() ? "unchecked" : status));
  auto config = controller::LoadSourceConfig({}, *ctx.client, *kind, *source_obj);
  if (!config) {
    check.Line(false, "source credentials: " + config.error().message);
    return not_start();
  }
  auto vm = ctx.ImporterFor(*kind).Open(
      {}, *config, {.vm_name = spec.virtual_machine_name, .folder = spec.folder});
  if (!vm) {
    check.Line(false, "source VM: " + vm.error().message);
    return not_start();
  }
  const model::VmDescription description = (*vm)->Description();
  (void)(*vm)->FinishExport({}, false, "plan only");  // logs out; nothing was exported
  check.Line(
      true, "exactly one source VM: " +
                (description.inventory_path.empty() ? description.id : description.inventory_path) +
                " (" + model::PowerStateName(description.power_state) + ")");
  if (by_uuid) {
    auto t = api::SanitizeTargetName(description.name);
    check.Line(bool(t), t ? "target name " + *t : t.error().message);
  }
  check.Line(!description.disks.empty(),
             std::to_string(description.disks.size()) + " disks to import");
  // The readiness verdict: what the VM will boot with and why (controller/readiness.h).
  const controller::Readiness readiness = controller::AssessReadiness(description, spec);
  for (size_t i = 0; i < description.disks.size(); ++i) {
    const auto& d = description.disks[i];
    const auto& c = readiness.devices.disks[i];
    const auto& s = readiness.devices.storage[i];
    std::printf("        disk-%zu %s %s on %s bus %s (%s: %s) storage class %s (%s: %s)\n", i,
                d.name.c_str(), Size(d.capacity_bytes).c_str(),
                d.storage.empty() ? "(unknown storage)" : d.storage.c_str(), c.value.c_str(),
                c.rule.c_str(), c.why.c_str(),
                s.storage_class.empty() ? "(cluster default)" : s.storage_class.c_str(),
                s.rule.c_str(), s.why.c_str());
  }
  bool pod_used = false;
  for (size_t i = 0; i < description.nics.size(); ++i) {
    const auto& nic = description.nics[i];
    const auto& c = readiness.devices.nics[i];
    const auto* m = harvester::FindNetworkMapping(spec, nic.network);
    std::string where = m != nullptr ? m->destination_network
                        : pod_used   ? "(dropped: one pod network only)"
                                     : "pod-network";
    pod_used = pod_used || m == nullptr;
    std::printf("        nic %s on %s -> %s model %s (%s: %s)\n", nic.mac.c_str(),
                nic.network.c_str(), where.c_str(), c.value.c_str(), c.rule.c_str(), c.why.c_str());
  }
  std::printf("readiness: %s: guest %s%s, firmware %s%s\n", readiness.Verdict().c_str(),
              controller::GuestFamilyName(readiness.devices.guest.family),
              readiness.devices.guest.evidence.empty()
                  ? ""
                  : (" (" + readiness.devices.guest.evidence + ")").c_str(),
              readiness.firmware.c_str(),
              readiness.boot_disk.empty() ? "" : (", boot " + readiness.boot_disk).c_str());
  for (const auto& risk : readiness.risks) {
    std::printf("        will not carry over: %s\n", risk.c_str());
  }
  if (!readiness.advice.empty()) {
    std::printf("        %s\n", readiness.advice.c_str());
  }
  // What the user overrides (the controller's Event `Overrides` says the same).
  for (const auto& line : api::DescribeOverrides(spec, description)) {
    std::printf("        override: %s\n", line.c_str());
  }
  for (const auto& wrong : api::OverrideProblemsFor(spec, description)) {
    check.Line(false, wrong);
  }
  for (const auto& unused : api::UnusedStorageMappings(spec, description)) {
    std::printf("  warn %s\n", unused.c_str());
  }
  const auto classes = api::NamedStorageClasses(spec);
  for (const auto& name : classes) {
    auto sc = ctx.client->Get({}, kStorageClasses, "", name);
    check.Line(bool(sc), "storage class " + name + (sc ? " exists" : " not found"));
  }
  if (classes.empty()) {
    check.Line(true, "storage class: the cluster's default");
  }
  for (const auto& m : spec.network_mapping) {
    auto dest = api::ParseDestinationNetwork(m.destination_network, vm_import->namespace_);
    if (!dest) {
      check.Line(false, dest.error().message);
      continue;
    }
    auto nad = ctx.client->Get({}, kNads, dest->namespace_, dest->name);
    check.Line(bool(nad), "destination network " + dest->namespace_ + "/" + dest->name +
                              (nad ? " exists" : " not found"));
  }
  std::printf("%s\n", check.ok ? "the import would start" : "the import would not start");
  return check.ok ? 0 : 1;
}

// An import with spec.runStrategy stopped ends at virtualMachineCreated (api::IsFinished).
bool Terminal(const std::string& status, bool starts_stopped) {
  return status == "virtualMachineRunning" || status == "virtualMachineImportInvalid" ||
         status == "diskImageFailed" || status == "VMMigrationFailed" ||
         (starts_stopped && status == "virtualMachineCreated");
}

std::string Bar(uint64_t done, uint64_t total) {
  const int width = 24;
  const int filled = total > 0 ? static_cast<int>(done * width / total) : 0;
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), ' ') + "]";
}

// A warm import (issue 22): each precopy round, the estimate, why no cutover yet, the downtime.
void PrintWarm(const Json& status) {
  const Json& warm = core::JsonObject(status, "warm");
  if (warm.empty()) {
    return;
  }
  for (const Json& r : core::JsonArray(warm, "rounds")) {
    std::printf("    round %-3lld %s  changed %9.1f MiB  moved %9.1f MiB  %7.1f s\n",
                static_cast<long long>(core::JsonInt(r, "round").value_or(0)),
                core::JsonString(r, "started").c_str(),
                static_cast<double>(core::JsonUint(r, "bytesChanged").value_or(0)) / (1 << 20),
                static_cast<double>(core::JsonUint(r, "bytesMoved").value_or(0)) / (1 << 20),
                core::JsonNumber(r, "seconds").value_or(0.0));
  }
  if (auto e = core::JsonNumber(warm, "estimatedDowntimeSeconds")) {
    std::printf("    estimated downtime of a cutover now: %.1f s\n", *e);
  }
  if (const std::string why = core::JsonString(warm, "waitingFor"); !why.empty()) {
    std::printf("    no cutover yet: %s\n", why.c_str());
  }
  if (const std::string why = core::JsonString(warm, "cutoverReason"); !why.empty()) {
    std::printf("    cutover: %s\n", why.c_str());
  }
  if (auto d = core::JsonNumber(warm, "downtimeSeconds")) {
    std::printf("    downtime (source off to target running): %.1f s\n", *d);
  }
}

int Watch(Context& ctx, const std::vector<std::string>& names, bool once) {
  for (;;) {
    auto list = ctx.client->List({}, controller::ImportResource(), ctx.ns);
    if (!list) {
      std::cerr << "watch: " << list.error().ToString() << "\n";
      return 1;
    }
    bool all_done = true;
    for (const Json& item : core::JsonArray(*list, "items")) {
      const std::string name = core::JsonString(core::JsonObject(item, "metadata"), "name");
      if (!names.empty() && std::find(names.begin(), names.end(), name) == names.end()) {
        continue;
      }
      const Json& status = core::JsonObject(item, "status");
      const std::string state = core::JsonString(status, "importStatus");
      all_done &= Terminal(state, core::JsonString(core::JsonObject(item, "spec"), "runStrategy") ==
                                      api::kRunStrategyStopped);
      std::printf("%-24s %-28s %s\n", name.c_str(), state.empty() ? "(new)" : state.c_str(),
                  core::JsonString(status, "progress").c_str());
      for (const Json& d : core::JsonArray(status, "diskImportStatus")) {
        const uint64_t done = core::JsonUint(d, "bytesDone").value_or(0);
        const uint64_t total =
            core::JsonUint(d, "bytesTotal").value_or(core::JsonUint(d, "diskSize").value_or(0));
        const double rate = core::JsonNumber(d, "bytesPerSecond").value_or(0.0);
        const int64_t eta = core::JsonInt(d, "etaSeconds").value_or(-1);
        std::printf("    %-34s %s %7.1f/%7.1f MiB %7.1f MB/s ETA %s\n",
                    core::JsonString(d, "diskName").c_str(), Bar(done, total).c_str(),
                    static_cast<double>(done) / (1 << 20), static_cast<double>(total) / (1 << 20),
                    rate / 1e6, eta >= 0 ? (std::to_string(eta) + "s").c_str() : "-");
        // Who verified the disk's bytes (issue 16): "verified: vsphere-manifest sha256, ...".
        std::vector<std::string> checks;
        for (const Json& v : core::JsonArray(d, "verification")) {
          const std::string result = core::JsonString(v, "result");
          std::string line = core::JsonString(v, "verifier");
          if (!core::JsonString(v, "algorithm").empty()) {
            line += " " + core::JsonString(v, "algorithm");
          }
          checks.push_back(result == "verified" ? line : line + " " + result);
        }
        if (!checks.empty()) {
          std::printf("      verified: %s\n", core::Join(checks, ", ").c_str());
        }
      }
      PrintWarm(status);
    }
    std::fflush(stdout);
    if (once || all_done) {
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::printf("\n");
  }
}

}  // namespace
}  // namespace vmimport::cli

// CLI11_PARSE catches CLI11's own exceptions; any other exception escaping main is a startup bug,
// and std::terminate naming it is the right end for it (docs/adr/0001: programmer errors).
// NOLINTNEXTLINE(bugprone-exception-escape)
int main(int argc, char** argv) {
  using namespace vmimport;
  CLI::App app{
      "kubectl vmimport: see the VMs of a source, plan an import, follow imports, report, bundle"};
  std::string kubeconfig;
  std::string context;
  std::string ns = "default";
  app.add_option("--kubeconfig", kubeconfig, "kubeconfig (default: $KUBECONFIG, ~/.kube/config)");
  app.add_option("--context", context, "kubeconfig context");
  app.add_option("-n,--namespace", ns, "namespace");
  app.require_subcommand(1);
  auto* list = app.add_subcommand("list", "the VMs of a source: names, disks, NICs, power");
  std::string source_ref;
  std::string folder;
  list->add_option("source", source_ref,
                   "vmwaresource/NAME, openstacksource/NAME, ovasource/NAME, libvirtsource/NAME")
      ->required();
  list->add_option("--folder", folder, "vSphere: only VMs under this folder");
  auto* plan = app.add_subcommand("plan", "every preflight check of an import, touching nothing");
  std::string file;
  plan->add_option("-f,--filename", file, "the VirtualMachineImport YAML")->required();
  auto* watch = app.add_subcommand("watch", "imports with per-disk progress, rate and ETA");
  std::vector<std::string> names;
  bool once = false;
  watch->add_option("names", names, "imports to follow (default: all in the namespace)");
  watch->add_flag("--once", once, "print once and exit");
  auto* report = app.add_subcommand(
      "report", "an HTML page and a JSON document of plans or imports: timeline, bytes, digests");
  cli::ReportOptions report_options;
  report
      ->add_option("names", report_options.names,
                   "ImportPlan or VirtualMachineImport names (importplan/NAME, "
                   "virtualmachineimport/NAME; a bare name is looked up as a plan first)")
      ->required();
  report->add_option("-o,--output", report_options.output,
                     "writes OUTPUT.html and OUTPUT.json (default vmimport-report)");
  auto* bundle = app.add_subcommand(
      "bundle", "a support archive (tar.gz) of sources, imports, plans, Events, logs, metrics");
  cli::BundleOptions bundle_options;
  bundle->add_option("-o,--output", bundle_options.output,
                     "the archive (default "
                     "vmimport-bundle.tar.gz)");
  bundle->add_flag("-A,--all-namespaces", bundle_options.all_namespaces, "every namespace");
  bundle->add_option("--controller-namespace", bundle_options.controller_namespace,
                     "where the controller's Pods run (default harvester-system)");
  bundle->add_option("--controller-selector", bundle_options.controller_selector,
                     "the label selector of the controller's Pods, whose logs (and previous "
                     "logs) are read through the API (default "
                     "app.kubernetes.io/name=vm-import-controller)");
  bundle
      ->add_option("--controller-log-limit", bundle_options.log_limit_bytes,
                   "per container log, keep the last this many bytes (default 10485760)")
      ->check(CLI::PositiveNumber);
  bundle->add_option("--controller-log", bundle_options.controller_logs,
                     "a file of the controller's log, for a controller outside the cluster "
                     "(repeatable)");
  bundle->add_option("--metrics-url", bundle_options.metrics_url,
                     "the controller's /metrics (its --health-address)");
  CLI11_PARSE(app, argc, argv);

  http::GlobalInit();
  auto config = kube::LoadDefault(kubeconfig, context, kube::ProcessEnvironment());
  if (!config) {
    std::cerr << "kubectl-vmimport: " << config.error().ToString() << "\n";
    return 2;
  }
  auto client = kube::Client::Create(*config);
  if (!client) {
    std::cerr << "kubectl-vmimport: " << client.error().ToString() << "\n";
    return 2;
  }
  cli::Context ctx;
  ctx.client = std::move(*client);
  ctx.ns = ns;
  if (list->parsed()) {
    return cli::List(ctx, source_ref, folder);
  }
  if (plan->parsed()) {
    return cli::Plan(ctx, file);
  }
  if (report->parsed()) {
    return cli::Report(*ctx.client, ctx.ns, report_options);
  }
  if (bundle->parsed()) {
    return cli::Bundle(*ctx.client, ctx.ns, bundle_options);
  }
  return cli::Watch(ctx, names, once);
}
