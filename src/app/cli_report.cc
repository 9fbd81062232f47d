// kubectl vmimport report: fetch a plan's or an import's objects and write the report
// (report/report.h, report/html.h).

#include <fstream>
#include <iostream>
#include <set>

#include "app/commands.h"
#include "controller/import_reconciler.h"
#include "controller/plan_reconciler.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/strings.h"
#include "report/html.h"
#include "report/report.h"

namespace vmimport::cli {
namespace {

using kube::Json;

const kube::Resource kEventsResource{"", "v1", "events", true};
const kube::Resource kVirtualMachines{"kubevirt.io", "v1", "virtualmachines", true};
constexpr const char* kPlanLabel = "migration.harvesterhci.io/import-plan";

struct Fetcher {
  kube::Client& client;
  std::string ns;
  std::optional<std::vector<Json>> events;  // the namespace's Events, listed once

  core::Result<std::vector<Json>> ListAll(const kube::Resource& r, kube::ListOptions options) {
    std::vector<Json> out;
    options.limit = 500;
    for (;;) {
      auto page = client.List({}, r, ns, options);
      if (!page) {
        return core::MakeError(page.error());
      }
      for (const Json& item : core::JsonArray(*page, "items")) {
        out.push_back(item);
      }
      options.continue_token = core::JsonString(core::JsonObject(*page, "metadata"), "continue");
      if (options.continue_token.empty()) {
        return out;
      }
    }
  }

  std::vector<Json> EventsOf(const Json& object) {
    if (!events) {
      auto list = ListAll(kEventsResource, {});
      events = list ? std::move(*list) : std::vector<Json>{};
      if (!list) {
        std::cerr << "report: events: " << list.error().ToString() << " (shown without Events)\n";
      }
    }
    const Json& md = core::JsonObject(object, "metadata");
    const std::string uid = core::JsonString(md, "uid");
    const std::string name = core::JsonString(md, "name");
    const std::string kind = core::JsonString(object, "kind");
    std::vector<Json> out;
    for (const Json& e : *events) {
      const Json& io = core::JsonObject(e, "involvedObject");
      const std::string euid = core::JsonString(io, "uid");
      if ((!euid.empty() && euid == uid) || (euid.empty() && core::JsonString(io, "name") == name &&
                                             core::JsonString(io, "kind") == kind)) {
        out.push_back(e);
      }
    }
    return out;
  }

  report::ImportInput Import(const Json& vm_import) {
    report::ImportInput in;
    in.vm_import = vm_import;
    in.events = EventsOf(vm_import);
    const std::string target =
        core::JsonString(core::JsonObject(vm_import, "status"), "importedVirtualMachineName");
    if (!target.empty()) {
      auto vm = client.Get({}, kVirtualMachines, ns, target);
      if (vm) {
        in.virtual_machine = *vm;
      } else if (vm.error().code != core::ErrorCode::kNotFound) {
        std::cerr << "report: VirtualMachine " << target << ": " << vm.error().ToString()
                  << " (target hardware left out)\n";
      }
    }
    return in;
  }
};

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::cerr << "report: cannot write " << path << "\n";
    return false;
  }
  return true;
}

}  // namespace

int Report(kube::Client& client, const std::string& ns, const ReportOptions& options) {
  if (options.names.empty()) {
    std::cerr << "report: name at least one ImportPlan or VirtualMachineImport\n";
    return 2;
  }
  Fetcher fetch{client, ns, std::nullopt};
  report::Input input;
  input.generated_at = core::FormatRfc3339Micro(std::chrono::system_clock::now());
  std::set<std::string> shown;
  auto add_import = [&](const Json& vm_import) {
    const std::string name = core::JsonString(core::JsonObject(vm_import, "metadata"), "name");
    if (shown.insert(name).second) {
      input.imports.push_back(fetch.Import(vm_import));
    }
  };
  for (const std::string& ref : options.names) {
    const size_t slash = ref.find('/');
    const std::string kind = slash == std::string::npos ? "" : core::ToLower(ref.substr(0, slash));
    const std::string name = slash == std::string::npos ? ref : ref.substr(slash + 1);
    const bool plan_only = kind == "importplan" || kind == "importplans" || kind == "plan";
    const bool import_only =
        kind == "virtualmachineimport" || kind == "virtualmachineimports" || kind == "import";
    if (!kind.empty() && !plan_only && !import_only) {
      std::cerr << "report: " << ref << ": name a plan (importplan/NAME) or an import "
                << "(virtualmachineimport/NAME)\n";
      return 2;
    }
    if (!import_only) {
      auto plan = client.Get({}, controller::PlanResource(), ns, name);
      if (plan) {
        report::PlanInput p;
        p.plan = *plan;
        p.events = fetch.EventsOf(*plan);
        auto imports = fetch.ListAll(controller::ImportResource(),
                                     {.label_selector = std::string(kPlanLabel) + "=" + name});
        if (!imports) {
          std::cerr << "report: imports of plan " << name << ": " << imports.error().ToString()
                    << "\n";
          return 1;
        }
        std::sort(imports->begin(), imports->end(), [](const Json& a, const Json& b) {
          return core::JsonString(core::JsonObject(a, "metadata"), "name") <
                 core::JsonString(core::JsonObject(b, "metadata"), "name");
        });
        for (const Json& imp : *imports) {
          p.import_names.push_back(core::JsonString(core::JsonObject(imp, "metadata"), "name"));
          add_import(imp);
        }
        input.plans.push_back(std::move(p));
        continue;
      }
      if (plan.error().code != core::ErrorCode::kNotFound || plan_only) {
        std::cerr << "report: plan " << name << ": " << plan.error().ToString() << "\n";
        return 1;
      }
    }
    auto vm_import = client.Get({}, controller::ImportResource(), ns, name);
    if (!vm_import) {
      std::cerr << "report: " << name << ": no ImportPlan or VirtualMachineImport of that name in "
                << ns << " (" << vm_import.error().ToString() << ")\n";
      return 1;
    }
    add_import(*vm_import);
  }
  const Json facts = report::BuildReport(input);
  const std::string html_path = options.output + ".html";
  const std::string json_path = options.output + ".json";
  if (!WriteFile(json_path, core::DumpJson(facts, 2) + "\n") ||
      !WriteFile(html_path, report::RenderHtml(facts))) {
    return 1;
  }
  std::cout << "wrote " << html_path << " and " << json_path << " (" << input.plans.size()
            << " plans, " << input.imports.size() << " imports)\n";
  return 0;
}

}  // namespace vmimport::cli
