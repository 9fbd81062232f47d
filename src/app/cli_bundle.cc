// kubectl vmimport bundle: everything support needs about vm-import in one tar.gz, with every
// credential redacted (bundle/redact.h): the sources, imports and plans, the objects the imports
// made (VirtualMachines, VirtualMachineImages, DataVolumes), their Events, the names (only) of
// the Secrets the sources use, the controller's logs (read from its Pods through the API, as
// `kubectl logs` does, or from files) and metrics, and a manifest of what is in it and what
// could not be read.

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "app/commands.h"
#include "bundle/redact.h"
#include "bundle/tar_gz.h"
#include "controller/import_reconciler.h"
#include "controller/plan_reconciler.h"
#include "controller/source_reconciler.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/strings.h"
#include "http/client.h"

namespace vmimport::cli {
namespace {

using kube::Json;

const kube::Resource kEventsResource{"", "v1", "events", true};
const kube::Resource kVirtualMachines{"kubevirt.io", "v1", "virtualmachines", true};
const kube::Resource kSecrets{"", "v1", "secrets", true};
const kube::Resource kPods{"", "v1", "pods", true};

// The kinds whose Events belong in the bundle.
const std::set<std::string> kOurKinds = {"VmwareSource",   "OpenstackSource",      "OvaSource",
                                         "LibvirtSource",  "VirtualMachineImport", "ImportPlan",
                                         "VirtualMachine", "VirtualMachineImage",  "DataVolume"};

std::string ReadFile(const std::string& path, bool& ok) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  ok = static_cast<bool>(in) || in.eof();
  return ss.str();
}

class Collector {
 public:
  Collector(kube::Client& client, std::string ns, bundle::TarGzWriter& tar)
      : client_(client), ns_(std::move(ns)), tar_(tar), now_(std::chrono::system_clock::now()) {}

  bundle::Redactor& redactor() { return redactor_; }

  //! Every object of `r` in the namespace (or all), redacted, one file each under `dir`/.
  std::vector<Json> Objects(const kube::Resource& r, const std::string& dir,
                            const std::set<std::string>* only = nullptr) {
    std::vector<Json> items;
    kube::ListOptions options{.limit = 500};
    for (;;) {
      auto page = client_.List({}, r, ns_, options);
      if (!page) {
        // A kind this cluster does not serve (no CDI, no KubeVirt) is not an error of the bundle.
        Note(dir, page.error().code == core::ErrorCode::kNotFound ? "not served by this cluster"
                                                                  : page.error().ToString());
        return items;
      }
      for (const Json& item : core::JsonArray(*page, "items")) {
        items.push_back(item);
      }
      options.continue_token = core::JsonString(core::JsonObject(*page, "metadata"), "continue");
      if (options.continue_token.empty()) {
        break;
      }
    }
    int written = 0;
    for (Json& item : items) {
      const Json& md = core::JsonObject(item, "metadata");
      const std::string name = core::JsonString(md, "name");
      const std::string ns = core::JsonString(md, "namespace");
      if (only != nullptr && !only->contains(ns + "/" + name)) {
        continue;
      }
      Add(dir + "/" + (ns.empty() ? "_cluster" : ns) + "/" + name + ".json",
          core::DumpJson(redactor_.Object(item), 2) + "\n");
      ++written;
    }
    counts_[dir] = written;
    return items;
  }

  void Add(const std::string& name, const std::string& data) {
    if (auto st = tar_.Add("vmimport-bundle/" + name, data, now_); !st) {
      errors_.push_back(st.error().ToString());
    }
  }
  void Note(const std::string& what, const std::string& why) { notes_[what] = why; }
  //! One entry of the manifest's "controllerPods" (what was found and read of each Pod).
  void AddPod(Json pod) { pods_.push_back(std::move(pod)); }
  Json Manifest() const {
    Json counts = Json::object();
    for (const auto& [k, v] : counts_) {
      counts[k] = v;
    }
    Json notes = Json::object();
    for (const auto& [k, v] : notes_) {
      notes[k] = redactor_.Text(v);
    }
    return {{"generatedAt", core::FormatRfc3339(now_)},
            {"namespace", ns_.empty() ? "(all)" : ns_},
            {"objects", counts},
            {"notes", notes},
            {"controllerPods", redactor_.Object(pods_)},
            {"errors", errors_},
            {"redaction",
             "Secret data is never included (only names and key names); credential-shaped values "
             "and every known credential are replaced by REDACTED"}};
  }
  const std::vector<std::string>& errors() const { return errors_; }
  kube::Client& client() { return client_; }
  const std::string& ns() const { return ns_; }

 private:
  kube::Client& client_;
  std::string ns_;
  bundle::TarGzWriter& tar_;
  std::chrono::system_clock::time_point now_;
  bundle::Redactor redactor_;
  std::map<std::string, int> counts_;
  std::map<std::string, std::string> notes_;
  Json pods_ = Json::array();
  std::vector<std::string> errors_;
};

//! The kubeconfig's own credentials: never in a bundle, whatever shape they take in a log.
void AddClientCredentials(bundle::Redactor& redactor, const kube::Config& config) {
  redactor.AddKnownSecret(config.bearer_token);
  redactor.AddKnownSecret(config.tls.client_key_pem);
  if (!config.tls.client_key_file.empty()) {
    bool ok = false;
    redactor.AddKnownSecret(ReadFile(config.tls.client_key_file, ok));
  }
  if (!config.token_file.empty()) {
    bool ok = false;
    redactor.AddKnownSecret(core::TrimSpace(ReadFile(config.token_file, ok)));
  }
}

//! The Secrets the sources name: their values become known credentials (redacted wherever they
//! appear); the bundle gets only their names and key names.
void SourceSecrets(Collector& c, const std::vector<Json>& sources) {
  std::set<std::pair<std::string, std::string>> refs;
  for (const Json& s : sources) {
    const Json& cred = core::JsonObject(core::JsonObject(s, "spec"), "credentials");
    const std::string name = core::JsonString(cred, "name");
    std::string ns = core::JsonString(cred, "namespace");
    if (ns.empty()) {
      ns = core::JsonString(core::JsonObject(s, "metadata"), "namespace");
    }
    if (!name.empty()) {
      refs.insert({ns, name});
    }
  }
  Json listed = Json::array();
  for (const auto& [ns, name] : refs) {
    auto secret = c.client().Get({}, kSecrets, ns, name);
    if (!secret) {
      listed.push_back({{"namespace", ns}, {"name", name}, {"error", secret.error().message}});
      continue;
    }
    for (const auto& [key, value] : core::JsonObject(*secret, "data").items()) {
      if (value.is_string()) {
        auto decoded = core::Base64Decode(value.get<std::string>());
        if (decoded) {
          c.redactor().AddKnownSecret(*decoded);
          // A CA bundle or multi-line value: each line too (a log may hold one line of it).
          for (std::string_view line : core::Split(*decoded, '\n')) {
            if (line.size() >= 16) {
              c.redactor().AddKnownSecret(line);
            }
          }
        }
      }
    }
    Json keys = Json::array();
    for (const auto& [key, value] : core::JsonObject(*secret, "data").items()) {
      keys.push_back(key);
    }
    listed.push_back({{"namespace", ns},
                      {"name", name},
                      {"type", core::JsonString(*secret, "type")},
                      {"keys", keys}});
  }
  c.Add("secrets.json", core::DumpJson(listed, 2) + "\n");
}

//! "N bytes" in MiB when large.
std::string Bytes(uint64_t n) {
  if (n < (uint64_t{1} << 20)) {
    return std::to_string(n) + " bytes";
  }
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << static_cast<double>(n) / static_cast<double>(uint64_t{1} << 20) << " MiB";
  return out.str();
}

//! Why a log could not be read, with what the user needs when RBAC refused it.
std::string Why(const core::Error& e, const std::string& ns, const std::string& verb) {
  if (e.code == core::ErrorCode::kPermissionDenied) {
    return "forbidden: the bundle needs " + verb + " in namespace " + ns + " (" + e.message + ")";
  }
  return e.ToString();
}

//! One log of a container (the current or the previous instance), redacted, as
//! logs/<pod>/<container>[.previous].log; a log longer than the limit keeps its last bytes and a
//! .TRUNCATED file next to it says so. Returns the manifest's record of it.
Json ContainerLog(Collector& c, const std::string& ns, const std::string& pod,
                  const std::string& container, bool previous, size_t limit) {
  const std::string file = "logs/" + pod + "/" + container + (previous ? ".previous.log" : ".log");
  Json record = {{"file", file}};
  auto log = c.client().PodLog({}, ns, pod,
                               {.container = container,
                                .previous = previous,
                                .keep = {.max_bytes = limit, .keep_tail = true}});
  if (!log) {
    const std::string why = Why(log.error(), ns, "get on pods/log");
    c.Note(file, why);
    record["error"] = why;
    return record;
  }
  c.Add(file, c.redactor().Log(log->text));
  record["bytes"] = log->total_bytes;
  if (log->truncated) {
    const std::string note = "the log had " + Bytes(log->total_bytes) + "; " + file +
                             " holds its last " + Bytes(log->text.size()) +
                             " (from the first whole line)\n";
    c.Add(file + ".TRUNCATED", note);
    record["truncated"] = true;
  }
  return record;
}

//! The controller's Pods, found by label, and each container's log and, when it restarted,
//! its previous log, through the API (pods/log). What cannot be read is noted in the manifest;
//! nothing here fails the bundle.
void ControllerPodLogs(Collector& c, const BundleOptions& options) {
  const std::string& ns = options.controller_namespace;
  const std::string where = "namespace " + ns + ", selector " + options.controller_selector;
  auto pods = c.client().List({}, kPods, ns, {.label_selector = options.controller_selector});
  if (!pods) {
    c.Note("logs", "cannot list the controller's Pods (" + where +
                       "): " + Why(pods.error(), ns, "list on pods"));
    return;
  }
  const Json& items = core::JsonArray(*pods, "items");
  if (items.empty()) {
    c.Note("logs", "no controller Pod (" + where +
                       "); a controller elsewhere: --controller-namespace, "
                       "--controller-selector, or --controller-log FILE");
    return;
  }
  for (const Json& pod : items) {
    const std::string name = core::JsonString(core::JsonObject(pod, "metadata"), "name");
    const Json& status = core::JsonObject(pod, "status");
    Json record = {{"namespace", ns},
                   {"name", name},
                   {"phase", core::JsonString(status, "phase")},
                   {"node", core::JsonString(core::JsonObject(pod, "spec"), "nodeName")},
                   {"containers", Json::array()}};
    std::map<std::string, Json> statuses;
    for (const Json& cs : core::JsonArray(status, "containerStatuses")) {
      statuses[core::JsonString(cs, "name")] = cs;
    }
    for (const Json& container : core::JsonArray(core::JsonObject(pod, "spec"), "containers")) {
      const std::string cname = core::JsonString(container, "name");
      const Json& cs = statuses[cname];
      const Json& last = core::JsonObject(core::JsonObject(cs, "lastState"), "terminated");
      Json crecord = {{"name", cname},
                      {"restartCount", core::JsonInt(cs, "restartCount").value_or(0)},
                      {"log", ContainerLog(c, ns, name, cname, false, options.log_limit_bytes)}};
      if (!last.empty()) {
        // The instance before the last restart: why a controller crashed is in its log.
        crecord["lastTerminated"] = {{"reason", core::JsonString(last, "reason")},
                                     {"exitCode", core::JsonInt(last, "exitCode").value_or(0)},
                                     {"finishedAt", core::JsonString(last, "finishedAt")}};
        crecord["previousLog"] = ContainerLog(c, ns, name, cname, true, options.log_limit_bytes);
      }
      record["containers"].push_back(std::move(crecord));
    }
    c.AddPod(std::move(record));
  }
}

}  // namespace

int Bundle(kube::Client& client, const std::string& ns, const BundleOptions& options) {
  auto tar = bundle::TarGzWriter::Create(options.output);
  if (!tar) {
    std::cerr << "bundle: " << tar.error().ToString() << "\n";
    return 1;
  }
  Collector c(client, options.all_namespaces ? "" : ns, **tar);
  AddClientCredentials(c.redactor(), client.config());

  // Sources first: their Secrets' values must be known before anything is written.
  std::vector<std::pair<std::string, std::vector<Json>>> sources;
  std::vector<Json> all_sources;
  for (source::SourceKind kind : {source::SourceKind::kVmware, source::SourceKind::kOpenstack,
                                  source::SourceKind::kOva, source::SourceKind::kLibvirt}) {
    kube::ListOptions options_list{.limit = 500};
    auto list = client.List({}, controller::SourceResource(kind), c.ns(), options_list);
    if (list) {
      for (const Json& item : core::JsonArray(*list, "items")) {
        all_sources.push_back(item);
      }
    }
  }
  SourceSecrets(c, all_sources);
  for (source::SourceKind kind : {source::SourceKind::kVmware, source::SourceKind::kOpenstack,
                                  source::SourceKind::kOva, source::SourceKind::kLibvirt}) {
    (void)c.Objects(controller::SourceResource(kind), controller::SourceResource(kind).plural);
  }
  const std::vector<Json> imports =
      c.Objects(controller::ImportResource(), "virtualmachineimports");
  (void)c.Objects(controller::PlanResource(), "importplans");
  // What the imports made, by name: not every VM or image of the namespace.
  std::set<std::string> vms;
  std::set<std::string> images;
  std::set<std::string> volumes;
  for (const Json& imp : imports) {
    const std::string ins = core::JsonString(core::JsonObject(imp, "metadata"), "namespace");
    const Json& status = core::JsonObject(imp, "status");
    const std::string vm = core::JsonString(status, "importedVirtualMachineName");
    if (!vm.empty()) {
      vms.insert(ins + "/" + vm);
    }
    for (const Json& d : core::JsonArray(status, "diskImportStatus")) {
      if (!core::JsonString(d, "VirtualMachineImage").empty()) {
        images.insert(ins + "/" + core::JsonString(d, "VirtualMachineImage"));
      }
      if (!core::JsonString(d, "dataVolume").empty()) {
        volumes.insert(ins + "/" + core::JsonString(d, "dataVolume"));
      }
    }
  }
  (void)c.Objects(kVirtualMachines, "virtualmachines", &vms);
  (void)c.Objects(controller::ImageResource(), "virtualmachineimages", &images);
  (void)c.Objects(controller::DataVolumeResource(), "datavolumes", &volumes);

  // Events of our kinds and of what the imports made.
  auto events = client.List({}, kEventsResource, c.ns(), {.limit = 5000});
  if (events) {
    Json ours = Json::array();
    for (const Json& e : core::JsonArray(*events, "items")) {
      if (kOurKinds.contains(core::JsonString(core::JsonObject(e, "involvedObject"), "kind"))) {
        ours.push_back(c.redactor().Object(e));
      }
    }
    c.Add("events.json", core::DumpJson(ours, 2) + "\n");
  } else {
    c.Note("events.json", events.error().ToString());
  }

  ControllerPodLogs(c, options);
  int n = 0;
  for (const std::string& path : options.controller_logs) {
    bool ok = false;
    const std::string text = ReadFile(path, ok);
    if (!ok) {
      c.Note("logs/controller-" + std::to_string(n) + ".log", "cannot read " + path);
      continue;
    }
    c.Add("logs/controller-" + std::to_string(n++) + ".log", c.redactor().Log(text));
  }
  if (!options.metrics_url.empty()) {
    auto http = http::Client::Create({});
    if (http) {
      auto resp = (*http)->Do({}, {.method = "GET", .url = options.metrics_url});
      if (resp && resp->status == 200) {
        c.Add("metrics.txt", c.redactor().Text(resp->body));
      } else {
        c.Note("metrics.txt",
               resp ? "HTTP " + std::to_string(resp->status) : resp.error().ToString());
      }
    }
  } else {
    c.Note("metrics.txt", "no --metrics-url given");
  }
  c.Add("manifest.json", core::DumpJson(c.Manifest(), 2) + "\n");
  if (auto st = (*tar)->Close(); !st) {
    std::cerr << "bundle: " << st.error().ToString() << "\n";
    return 1;
  }
  for (const std::string& e : c.errors()) {
    std::cerr << "bundle: " << e << "\n";
  }
  std::cout << "wrote " << options.output << "\n";
  return c.errors().empty() ? 0 : 1;
}

}  // namespace vmimport::cli
