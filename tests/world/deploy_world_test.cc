// deploy/ against the test world: the Helm chart, rendered by the world's helm (built from
// tests/world/helm/go.mod), and the plain manifests are accepted by the real kube-apiserver
// (server-side dry run); the CRDs accept the reference's YAML and reject what no controller
// writes; and the controller binary, run with a ServiceAccount token bound to exactly the chart's
// RBAC (no admin), imports a vSphere VM to virtualMachineRunning without one Forbidden.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "kube/client.h"
#include "kube/config.h"
#include "world/import_fixture.h"
#include "world/process.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::RunCommand;
using testing::WorldVar;
namespace fs = std::filesystem;

const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};

const std::string kSourceDir = vmimport::build_paths::SourceDir();
const std::string kChart = kSourceDir + "/deploy/helm/vm-import-controller";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

//! A shell word: 'text' with every ' escaped.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

struct CommandResult {
  int rc = -1;
  std::string out;  //!< stdout and stderr
};

CommandResult Sh(const std::string& command) {
  CommandResult r;
  r.rc = RunCommand(command + " 2>&1", &r.out);
  return r;
}

bool Eventually(const std::function<bool()>& pred, std::chrono::seconds limit = 120s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(250ms);
  }
  return pred();
}

//! The object of `kind` (and `name`, when given) in a List; null when absent.
Json Find(const Json& list, const std::string& kind, const std::string& name = "") {
  for (const Json& item : list.value("items", Json::array())) {
    if (item.value("kind", "") == kind &&
        (name.empty() || item["metadata"].value("name", "") == name)) {
      return item;
    }
  }
  return nullptr;
}

std::multiset<std::string> Kinds(const Json& list) {
  std::multiset<std::string> out;
  for (const Json& item : list.value("items", Json::array())) {
    out.insert(item.value("kind", ""));
  }
  return out;
}

class DeployWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    helm_ = WorldVar("HELM");
    kubectl_ = WorldVar("KUBECTL");
    kubeconfig_ = WorldVar("KUBECONFIG");
    ASSERT_FALSE(helm_.empty() || kubectl_.empty() || kubeconfig_.empty());
    auto config = LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config) << config.error().ToString();
    auto c = Client::Create(*config);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    suffix_ = std::to_string(std::random_device{}() % 1000000);
    dir_ = fs::temp_directory_path() / ("vmimport-deploy-" + suffix_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    controller_.reset();
    sim_.reset();
    if (!ns_.empty()) {
      (void)client_->Delete({}, kNamespaces, "", ns_);
    }
    for (const std::string& obj : cluster_objects_) {
      (void)Sh(Admin() + " delete --ignore-not-found " + obj);
    }
    if (!HasFailure()) {
      fs::remove_all(dir_);
    } else {
      std::cerr << "files and logs kept in " << dir_ << "\n";
    }
  }

  std::string Admin() const { return Quote(kubectl_) + " --kubeconfig " + Quote(kubeconfig_); }

  void CreateNamespace(const std::string& prefix) {
    ns_ = prefix + "-" + suffix_;
    auto r = client_->Create(
        {}, kNamespaces, "",
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}});
    ASSERT_TRUE(r) << r.error().ToString();
  }

  //! `helm template` of the chart into a file (its path), with extra helm arguments.
  std::string Render(const std::string& name, const std::string& args) {
    const std::string path = (dir_ / (name + ".yaml")).string();
    const CommandResult r =
        Sh(Quote(helm_) + " template " + args + " " + Quote(kChart) + " > " + Quote(path));
    EXPECT_EQ(r.rc, 0) << "helm template " << args << ":\n" << r.out;
    return path;
  }

  //! `kubectl apply --dry-run=server -o json` of files: the objects as the server would store them.
  Json DryRun(const std::vector<std::string>& files) {
    std::string cmd = Admin() + " apply --dry-run=server -o json";
    for (const auto& f : files) {
      cmd += " -f " + Quote(f);
    }
    const std::string err = (dir_ / "dry-run.err").string();
    std::string out;
    const int rc = RunCommand(cmd + " 2>" + Quote(err), &out);
    EXPECT_EQ(rc, 0) << cmd << ":\n" << ReadFile(err);
    if (rc != 0) {
      return Json::object();
    }
    Json parsed = Json::parse(out, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << out.substr(0, 2000);
    if (parsed.is_discarded()) {
      return Json::object();
    }
    if (parsed.value("kind", "") != "List") {  // a single object
      parsed = {{"kind", "List"}, {"items", Json::array({parsed})}};
    }
    return parsed;
  }

  //! Harvester's Addon CRD (not part of the world): needed to dry-run deploy/addon.yaml.
  void EnsureAddonCrd() {
    const CommandResult r =
        Sh(Admin() + " apply -f " + Quote(kSourceDir + "/tests/world/helm/crds") + " && " +
           Admin() + " wait --for=condition=Established --timeout=60s crd/addons.harvesterhci.io");
    ASSERT_EQ(r.rc, 0) << r.out;
    // Established, then served: discovery may lag a little.
    ASSERT_TRUE(
        Eventually([&] { return Sh(Admin() + " get addons.harvesterhci.io -A").rc == 0; }, 30s));
  }

  std::string helm_;
  std::string kubectl_;
  std::string kubeconfig_;
  std::unique_ptr<Client> client_;
  std::string suffix_;
  std::string ns_;
  fs::path dir_;
  std::vector<std::string> cluster_objects_;  //!< "kind/name" to delete at the end
  std::unique_ptr<ChildProcess> sim_;
  std::unique_ptr<ChildProcess> controller_;
};

// --- (a) everything in deploy/ is accepted by the API server ------------------------------------

TEST_F(DeployWorldTest, ChartLintsAndItsDefaultRenderingIsAcceptedWithServiceProbesAndNonRootPod) {
  const CommandResult lint = Sh(Quote(helm_) + " lint --strict " + Quote(kChart));
  ASSERT_EQ(lint.rc, 0) << lint.out;

  const std::string rendered =
      Render("default", "vm-import-controller --namespace harvester-system --include-crds");
  const Json list = DryRun({rendered});
  const std::multiset<std::string> kinds = Kinds(list);
  EXPECT_EQ(kinds.count("CustomResourceDefinition"), 6u);  // with ImportPlan (issue 23)
  for (const char* kind : {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                           "RoleBinding", "Service", "Deployment"}) {
    EXPECT_EQ(kinds.count(kind), 1u) << kind;
  }

  // The Service the image URLs point at.
  const Json svc = Find(list, "Service", "vm-import-controller");
  ASSERT_FALSE(svc.is_null()) << "no Service vm-import-controller";
  EXPECT_EQ(svc["metadata"].value("namespace", ""), "harvester-system");
  ASSERT_EQ(svc["spec"]["ports"].size(), 1u);
  EXPECT_EQ(svc["spec"]["ports"][0].value("port", 0), 8080);
  EXPECT_EQ(svc["spec"]["ports"][0].value("targetPort", ""), "image-server");

  // The Deployment: flags, probes, non-root, read-only root, the work dir, resources.
  const Json deploy = Find(list, "Deployment", "vm-import-controller");
  ASSERT_FALSE(deploy.is_null());
  EXPECT_EQ(deploy["metadata"].value("namespace", ""), "harvester-system");
  EXPECT_EQ(deploy["spec"].value("replicas", 0), 1);
  EXPECT_EQ(deploy["spec"]["strategy"].value("type", ""), "Recreate");
  const Json& pod = deploy["spec"]["template"]["spec"];
  EXPECT_EQ(pod.value("serviceAccountName", ""), "vm-import-controller");
  EXPECT_TRUE(pod["securityContext"].value("runAsNonRoot", false));
  ASSERT_EQ(pod["containers"].size(), 1u);
  const Json& c = pod["containers"][0];
  std::set<std::string> args;
  for (const Json& a : c["args"]) {
    args.insert(a.get<std::string>());
  }
  for (const char* want :
       {"--image-server-url=http://vm-import-controller.harvester-system.svc:8080",
        "--image-server-address=0.0.0.0:8080", "--health-address=:8081", "--leader-elect=true",
        "--leader-election-namespace=$(POD_NAMESPACE)", "--workers=5", "--log-level=info",
        "--image-server-streams=16"}) {
    EXPECT_TRUE(args.contains(want)) << want << " not in " << c["args"].dump();
  }
  std::map<std::string, int> ports;
  for (const Json& p : c["ports"]) {
    ports[p.value("name", "")] = p.value("containerPort", 0);
  }
  EXPECT_EQ(ports["image-server"], 8080);
  EXPECT_EQ(ports["health"], 8081);
  EXPECT_EQ(c["livenessProbe"]["httpGet"].value("path", ""), "/healthz");
  EXPECT_EQ(c["livenessProbe"]["httpGet"].value("port", ""), "health");
  EXPECT_EQ(c["readinessProbe"]["httpGet"].value("path", ""), "/readyz");
  EXPECT_EQ(c["readinessProbe"]["httpGet"].value("port", ""), "health");
  EXPECT_TRUE(c["securityContext"].value("readOnlyRootFilesystem", false));
  EXPECT_FALSE(c["securityContext"].value("allowPrivilegeEscalation", true));
  EXPECT_TRUE(c["resources"].contains("requests") && c["resources"].contains("limits"))
      << c["resources"].dump();
  std::string work_volume;
  for (const Json& m : c["volumeMounts"]) {
    if (m.value("mountPath", "") == "/tmp") {
      work_volume = m.value("name", "");
    }
  }
  ASSERT_FALSE(work_volume.empty()) << "nothing mounted on /tmp";
  bool empty_dir = false;
  for (const Json& v : pod["volumes"]) {
    empty_dir |= v.value("name", "") == work_volume && v.contains("emptyDir");
  }
  EXPECT_TRUE(empty_dir) << pod["volumes"].dump();
}

TEST_F(DeployWorldTest, ChartRenderingsWithOtherValuesAreAccepted) {
  const std::string rendered = Render(
      "options",
      "vmimport --namespace harvester-system --set fullnameOverride=vmimport-alt"
      " --set leaderElection.enabled=false --set metrics.enabled=false"
      " --set serviceAccount.name=vmimport-sa --set controller.watchNamespace=tenant-a"
      " --set imageServer.url=http://images.example:9000 --set imageServer.port=9000"
      " --set controller.workers=2 --set imageServer.streams=4 --set controller.logLevel=debug"
      " --set controller.extraArgs[0]=--lease-duration=30 --set workDir.sizeLimit=null"
      " --set replicaCount=2 --set image.tag=test");
  const Json list = DryRun({rendered});
  const std::multiset<std::string> kinds = Kinds(list);
  EXPECT_EQ(kinds.count("Role"), 0u) << "no leader election, no Lease Role";
  EXPECT_EQ(kinds.count("Deployment"), 1u);
  const Json deploy = Find(list, "Deployment", "vmimport-alt");
  ASSERT_FALSE(deploy.is_null());
  const Json& c = deploy["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(c.value("image", ""), "ghcr.io/vm-import/vm-import-controller:test");
  std::set<std::string> args;
  for (const Json& a : c["args"]) {
    args.insert(a.get<std::string>());
  }
  for (const char* want :
       {"--image-server-url=http://images.example:9000", "--image-server-address=0.0.0.0:9000",
        "--leader-elect=false", "--namespace=tenant-a", "--workers=2", "--image-server-streams=4",
        "--log-level=debug", "--lease-duration=30"}) {
    EXPECT_TRUE(args.contains(want)) << want << " not in " << c["args"].dump();
  }
  EXPECT_EQ(deploy["spec"]["template"]["spec"].value("serviceAccountName", ""), "vmimport-sa");
}

// A cluster without a pod network to the API server (the test world's node): the Pod in the
// node's network namespace, every server of it on one address, the probes asking that address.
TEST_F(DeployWorldTest, ChartWithHostNetworkListensOnListenHostAndProbesIt) {
  const std::string rendered =
      Render("host-network",
             "vmimport --namespace harvester-system --set hostNetwork=true"
             " --set listenHost=127.0.0.1 --set imageServer.port=18080 --set health.port=18081"
             " --set controller.extraEnv[0].name=KUBERNETES_SERVICE_HOST"
             " --set controller.extraEnv[0].value=127.0.0.1");
  const Json list = DryRun({rendered});
  const Json deploy = Find(list, "Deployment", "vmimport-vm-import-controller");
  ASSERT_FALSE(deploy.is_null()) << list.dump().substr(0, 2000);
  const Json& pod = deploy["spec"]["template"]["spec"];
  EXPECT_TRUE(pod.value("hostNetwork", false));
  EXPECT_EQ(pod.value("dnsPolicy", ""), "ClusterFirstWithHostNet");
  const Json& c = pod["containers"][0];
  std::set<std::string> args;
  for (const Json& a : c["args"]) {
    args.insert(a.get<std::string>());
  }
  EXPECT_TRUE(args.contains("--image-server-address=127.0.0.1:18080")) << c["args"].dump();
  EXPECT_TRUE(args.contains("--health-address=127.0.0.1:18081")) << c["args"].dump();
  for (const char* probe : {"livenessProbe", "readinessProbe"}) {
    EXPECT_EQ(c[probe]["httpGet"].value("host", ""), "127.0.0.1") << probe;
  }
  bool service_host = false;
  for (const Json& e : c["env"]) {
    service_host |=
        e.value("name", "") == "KUBERNETES_SERVICE_HOST" && e.value("value", "") == "127.0.0.1";
  }
  EXPECT_TRUE(service_host) << c["env"].dump();
  // Without the values nothing changes: no host network, no probe host.
  const Json plain = DryRun({Render("plain", "vmimport --namespace harvester-system")});
  const Json plain_deploy = Find(plain, "Deployment", "vmimport-vm-import-controller");
  ASSERT_FALSE(plain_deploy.is_null());
  const Json& plain_pod = plain_deploy["spec"]["template"]["spec"];
  EXPECT_FALSE(plain_pod.value("hostNetwork", false));
  EXPECT_FALSE(plain_pod["containers"][0]["readinessProbe"]["httpGet"].contains("host"));
}

TEST_F(DeployWorldTest, PlainManifestsAndTheAddonAreAcceptedAndMatchTheChart) {
  EnsureAddonCrd();
  const Json list =
      DryRun({kSourceDir + "/deploy/crds", kSourceDir + "/deploy/vm-import-controller.yaml",
              kSourceDir + "/deploy/addon.yaml"});
  const std::multiset<std::string> kinds = Kinds(list);
  EXPECT_EQ(kinds.count("CustomResourceDefinition"), 6u);  // with ImportPlan (issue 23)
  EXPECT_EQ(kinds.count("Deployment"), 1u);
  EXPECT_EQ(kinds.count("Service"), 1u);
  const Json addon = Find(list, "Addon", "vm-import-controller");
  ASSERT_FALSE(addon.is_null());
  EXPECT_EQ(addon["metadata"].value("namespace", ""), "harvester-system");
  EXPECT_EQ(addon["spec"].value("chart", ""), "vm-import-controller");
  // The chart version the Addon names is the chart's.
  const std::string chart_yaml = ReadFile(kChart + "/Chart.yaml");
  EXPECT_NE(chart_yaml.find("\nversion: " + addon["spec"].value("version", "?") + "\n"),
            std::string::npos);
  // The Addon's values render to an accepted release with the Service the brief names.
  const std::string values = (dir_ / "addon-values.yaml").string();
  std::ofstream(values) << addon["spec"].value("valuesContent", "");
  const Json from_addon = DryRun(
      {Render("addon", "vm-import-controller --namespace harvester-system -f " + Quote(values))});
  EXPECT_FALSE(Find(from_addon, "Service", "vm-import-controller").is_null());

  // deploy/vm-import-controller.yaml is the chart's rendering, the chart's CRDs are deploy/crds.
  const CommandResult check =
      Sh("HELM=" + Quote(helm_) + " " + Quote(kSourceDir + "/deploy/render.sh") + " --check");
  EXPECT_EQ(check.rc, 0) << check.out;
}

TEST_F(DeployWorldTest, CrdsAcceptTheReferenceYamlAndRejectStatusNoControllerWrites) {
  CreateNamespace("crd");
  // Every spec field the reference knows, with the values and nulls it accepts.
  const std::string yaml = (dir_ / "reference.yaml").string();
  std::ofstream(yaml) << R"(apiVersion: migration.harvesterhci.io/v1beta1
kind: VirtualMachineImport
metadata:
  name: reference
spec:
  sourceCluster: {apiVersion: migration.harvesterhci.io/v1beta1, kind: vmwaresource, name: src, namespace: elsewhere}
  virtualMachineName: Some_VM
  folder: a/b
  networkMapping:
  - {sourceNetwork: VM Network, destinationNetwork: default/vlan1, networkInterfaceModel: e1000}
  - {sourceNetwork: other, destinationNetwork: vlan2, networkInterfaceModel: ""}
  - {sourceNetwork: third, destinationNetwork: vlan3}
  defaultNetworkInterfaceModel: ""
  storageClass: null
  defaultDiskBusType: not-a-bus
  forcePowerOff: null
  gracefulShutdownTimeoutSeconds: -1
  skipPreflightChecks: null
---
apiVersion: migration.harvesterhci.io/v1beta1
kind: VmwareSource
metadata:
  name: reference
spec:
  endpoint: https://vcenter/sdk
  dc: DC0
---
apiVersion: migration.harvesterhci.io/v1beta1
kind: OvaSource
metadata:
  name: reference
spec:
  url: https://example/x.ova
  httpTimeoutSeconds: 0
  credentials: null
---
apiVersion: migration.harvesterhci.io/v1beta1
kind: LibvirtSource
metadata:
  name: reference
spec:
  uri: qemu+tls://kvm1/system
  credentials: null
---
apiVersion: migration.harvesterhci.io/v1beta1
kind: OpenstackSource
metadata:
  name: reference
spec:
  endpoint: https://devstack/identity
  region: RegionOne
  credentials: {name: os-secret, namespace: elsewhere}
  uploadImageRetryCount: -3
  uploadImageRetryDelay: 0
)";
  const CommandResult created = Sh(Admin() + " -n " + ns_ + " create -f " + Quote(yaml));
  ASSERT_EQ(created.rc, 0) << created.out;

  const auto patch_status = [&](const std::string& resource, const std::string& patch) {
    return Sh(Admin() + " -n " + ns_ + " patch " + resource +
              " reference --subresource=status --type=merge -p " + Quote(patch));
  };
  // What the controller writes is accepted, status.progress included (and not pruned).
  CommandResult ok = patch_status(
      "virtualmachineimports",
      R"({"status":{"importStatus":"diskImageSubmitted","progress":"45%","importConditions":[{"type":"VMExported","status":"True"}],"diskImportStatus":[{"diskName":"d.img","bytesDone":5,"bytesTotal":10,"busType":"virtio","diskConditions":[{"type":"VirtualMachineImageSubmitted","status":"Unknown"}]}]}})");
  ASSERT_EQ(ok.rc, 0) << ok.out;
  ok = patch_status("vmwaresources", R"({"status":{"status":"clusterNotReady"}})");
  ASSERT_EQ(ok.rc, 0) << ok.out;
  auto got = client_->Get({}, kImports, ns_, "reference");
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["status"].value("progress", ""), "45%");
  // The printer columns: Status, Progress, Age (and Source, VM with -o wide).
  const CommandResult table =
      Sh(Admin() + " -n " + ns_ + " get virtualmachineimports -o wide --no-headers=false");
  ASSERT_EQ(table.rc, 0) << table.out;
  EXPECT_TRUE(
      std::regex_search(table.out, std::regex(R"(NAME +STATUS +PROGRESS +AGE +SOURCE +VM)")))
      << table.out;
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(reference +diskImageSubmitted +45%)")))
      << table.out;
  const CommandResult sources = Sh(Admin() + " -n " + ns_ + " get vmwaresources");
  EXPECT_TRUE(std::regex_search(sources.out, std::regex(R"(NAME +STATUS +AGE)"))) << sources.out;
  EXPECT_NE(sources.out.find("clusterNotReady"), std::string::npos) << sources.out;

  // What no controller writes is rejected.
  for (const auto& [resource, patch] : std::vector<std::pair<std::string, std::string>>{
           {"virtualmachineimports", R"({"status":{"importStatus":"almostDone"}})"},
           {"virtualmachineimports",
            R"({"status":{"importConditions":[{"type":"VMExported","status":"Maybe"}]}})"},
           {"vmwaresources", R"({"status":{"status":"ready"}})"},
           {"ovasources", R"({"status":{"conditions":[{"type":"ClusterReady","status":"yes"}]}})"},
           {"libvirtsources", R"({"status":{"status":"ready"}})"},
       }) {
    const CommandResult bad = patch_status(resource, patch);
    EXPECT_NE(bad.rc, 0) << resource << " accepted " << patch;
    EXPECT_NE(bad.out.find("Unsupported value"), std::string::npos) << bad.out;
  }
  // A timeout the reference's int32 cannot hold.
  const CommandResult big =
      Sh(Admin() + " -n " + ns_ + " patch virtualmachineimports reference --type=merge -p " +
         Quote(R"({"spec":{"gracefulShutdownTimeoutSeconds":4294967296}})"));
  EXPECT_NE(big.rc, 0) << big.out;
}

TEST_F(DeployWorldTest, DockerfileRuntimeHasEveryLibraryTheControllerLinks) {
  const std::string dockerfile = ReadFile(kSourceDir + "/Dockerfile");
  ASSERT_FALSE(dockerfile.empty());
  const auto runtime_at = dockerfile.rfind("\nFROM ");
  ASSERT_NE(runtime_at, std::string::npos);
  const std::string runtime = dockerfile.substr(runtime_at);
  EXPECT_NE(dockerfile.find("tools/install-deps.sh"), std::string::npos);
  EXPECT_NE(dockerfile.find("--preset release"), std::string::npos);
  EXPECT_NE(runtime.find("qemu-utils"), std::string::npos);
  EXPECT_NE(runtime.find("ca-certificates"), std::string::npos);
  // The user the image runs as is the one the chart's securityContext names.
  EXPECT_NE(runtime.find("USER 65532:65532"), std::string::npos);
  EXPECT_NE(ReadFile(kChart + "/values.yaml").find("runAsUser: 65532"), std::string::npos);

  // Every direct dependency of the binary comes from a package the runtime stage installs, or
  // from one debian:12-slim has (Essential: libc6, libgcc-s1, libstdc++6 via apt).
  const std::string binary = vmimport::build_paths::ControllerBinary();
  const CommandResult needed =
      Sh("readelf -d " + Quote(binary) + " | sed -n 's/.*Shared library: \\[\\(.*\\)\\]/\\1/p'");
  ASSERT_EQ(needed.rc, 0) << needed.out;
  std::istringstream names(needed.out);
  std::string soname;
  int count = 0;
  while (std::getline(names, soname)) {
    if (soname.empty()) {
      continue;
    }
    ++count;
    const CommandResult pkg =
        Sh("p=$(ldd " + Quote(binary) + " | awk -v l=" + Quote(soname) +
           " '$1 == l {print $3}'); for c in \"$p\" \"$(readlink -f \"$p\")\" \"/usr$p\" "
           "\"${p#/usr}\"; do dpkg -S \"$c\" 2>/dev/null && break; done | head -n1 | cut -d: -f1");
    ASSERT_EQ(pkg.rc, 0) << soname << ": " << pkg.out;
    std::string package = pkg.out.substr(0, pkg.out.find_first_of("\n"));
    if (package == "libc6" || package == "libgcc-s1" || package == "libstdc++6") {
      continue;
    }
    EXPECT_TRUE(std::regex_search(runtime, std::regex("\\s" + package + "\\s")))
        << soname << " comes from " << package << ", which the Dockerfile's runtime stage lacks";
  }
  EXPECT_GT(count, 3);
}

// --- (b) the controller with exactly the chart's RBAC ------------------------------------------

class DeployRbacWorldTest : public DeployWorldTest {
 protected:
  //! Applies the chart's ServiceAccount and RBAC for real in ns_, returns a kubeconfig with a
  //! token of that ServiceAccount (TokenRequest) and the world's CA and server.
  std::string InstallRbacAndWriteKubeconfig() {
    release_ = "vmimport-rbac-" + suffix_;
    const std::string rendered = Render("rbac", "vm-import-controller --namespace " + ns_ +
                                                    " --set fullnameOverride=" + release_ +
                                                    " --set leaderElection.id=" + release_ +
                                                    " --show-only templates/serviceaccount.yaml"
                                                    " --show-only templates/rbac.yaml");
    cluster_objects_ = {"clusterrolebinding/" + release_, "clusterrole/" + release_};
    const CommandResult applied = Sh(Admin() + " apply -f " + Quote(rendered));
    EXPECT_EQ(applied.rc, 0) << applied.out;
    const CommandResult token =
        Sh(Admin() + " -n " + ns_ + " create token " + release_ + " --duration=2h");
    EXPECT_EQ(token.rc, 0) << token.out;
    const std::string jwt = token.out.substr(0, token.out.find_first_of("\r\n"));
    EXPECT_EQ(std::count(jwt.begin(), jwt.end(), '.'), 2) << token.out;
    const std::string path = (dir_ / "sa.kubeconfig").string();
    std::ofstream(path) << "apiVersion: v1\nkind: Config\nclusters:\n- name: world\n  cluster:\n"
                        << "    server: " << WorldVar("KUBE_APISERVER_URL") << "\n"
                        << "    certificate-authority: " << WorldVar("KUBE_CA_FILE") << "\n"
                        << "users:\n- name: sa\n  user:\n    token: " << jwt << "\n"
                        << "contexts:\n- name: sa\n  context:\n    cluster: world\n    user: sa\n"
                        << "    namespace: " << ns_ << "\ncurrent-context: sa\n";
    return path;
  }

  //! `kubectl auth can-i` as the ServiceAccount: "yes" or "no".
  std::string CanI(const std::string& sa_kubeconfig, const std::string& what) {
    std::string out;  // stdout only: warnings ("not namespace scoped") go to stderr
    (void)RunCommand(Quote(kubectl_) + " --kubeconfig " + Quote(sa_kubeconfig) + " auth can-i " +
                         what + " 2>/dev/null",
                     &out);
    return out.substr(0, out.find_first_of("\r\n"));
  }

  //! The admin creates a Secret, a VmwareSource and an import "small" of vmi-bios-small in ns_,
  //! as a user would.
  void CreateSmallImport() {
    EXPECT_TRUE(client_->Create({}, kSecrets, ns_,
                                {{"apiVersion", "v1"},
                                 {"kind", "Secret"},
                                 {"metadata", {{"name", "vsphere"}, {"namespace", ns_}}},
                                 {"stringData",
                                  {{"username", WorldVar("VCSIM_USERNAME")},
                                   {"password", WorldVar("VCSIM_PASSWORD")},
                                   {"caCert", ReadFile(WorldVar("VCSIM_CA"))}}}}));
    EXPECT_TRUE(client_->Create({}, kVmwareSources, ns_,
                                {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                                 {"kind", "VmwareSource"},
                                 {"metadata", {{"name", "vcsim"}, {"namespace", ns_}}},
                                 {"spec",
                                  {{"endpoint", WorldVar("VCSIM_SDK_URL")},
                                   {"dc", WorldVar("VCSIM_DATACENTER")},
                                   {"credentials", {{"name", "vsphere"}, {"namespace", ns_}}}}}}));
    EXPECT_TRUE(client_->Create({}, kImports, ns_,
                                {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                                 {"kind", "VirtualMachineImport"},
                                 {"metadata", {{"name", "small"}, {"namespace", ns_}}},
                                 {"spec",
                                  {{"virtualMachineName", "vmi-bios-small"},
                                   {"sourceCluster",
                                    {{"name", "vcsim"},
                                     {"namespace", ns_},
                                     {"kind", "VmwareSource"},
                                     {"apiVersion", "migration.harvesterhci.io/v1beta1"}}}}}}));
  }

  //! Harvester (simulated, as the admin) and the controller (as the ServiceAccount of
  //! `sa_kubeconfig`, with leader election on the chart's Lease, as the Deployment runs it; one
  //! namespace so that it leaves the other tests' imports alone).
  void StartSimAndController(const std::string& sa_kubeconfig) {
    std::vector<std::string> sim = {vmimport::build_paths::HarvesterSimBinary(), "--kubeconfig",
                                    kubeconfig_};
    const auto world_args = testing::HarvesterSimWorldArgs(dir_);
    sim.insert(sim.end(), world_args.begin(), world_args.end());
    sim_ = std::make_unique<ChildProcess>(sim, (dir_ / "harvester-sim.log").string());
    controller_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{vmimport::build_paths::ControllerBinary(), "--kubeconfig",
                                 sa_kubeconfig, "--namespace", ns_, "--leader-elect=true",
                                 "--leader-election-namespace", ns_, "--leader-election-id",
                                 release_, "--image-server-address", "127.0.0.1:0",
                                 "--health-address", "127.0.0.1:0", "--source-retry-interval", "1"},
        (dir_ / "controller.log").string());
  }

  //! The import's status.importStatus once it ends (or whatever it is after `limit`).
  std::string WaitImportEnds(const std::string& name, std::chrono::seconds limit) {
    std::string status;
    (void)Eventually(
        [&] {
          auto obj = client_->Get({}, kImports, ns_, name);
          status = obj ? obj->value("status", Json::object()).value("importStatus", "") : "";
          return FinalImportStatus(status);
        },
        limit);
    return status;
  }

  std::string release_;
};

TEST_F(DeployRbacWorldTest, ServiceAccountMayDoWhatTheControllerDoesAndNothingElse) {
  CreateNamespace("rbac");
  const std::string sa = InstallRbacAndWriteKubeconfig();
  ASSERT_FALSE(HasFailure());
  // Every call in src/controller and src/kube, cluster-wide as the Deployment runs it (no
  // --namespace), the Lease in the release namespace only.
  for (const std::string& what : std::vector<std::string>{
           "list vmwaresources.migration.harvesterhci.io -A",
           "watch openstacksources.migration.harvesterhci.io -A",
           "get ovasources.migration.harvesterhci.io -n other",
           "watch libvirtsources.migration.harvesterhci.io -A",
           "update libvirtsources.migration.harvesterhci.io --subresource=status -n other",
           "watch virtualmachineimports.migration.harvesterhci.io -A",
           "patch virtualmachineimports.migration.harvesterhci.io -n other",
           // ImportPlans (issue 23): watched, status written, imports made, failed ones retried.
           "watch importplans.migration.harvesterhci.io -A",
           "update importplans.migration.harvesterhci.io --subresource=status -n other",
           "create virtualmachineimports.migration.harvesterhci.io -n other",
           "delete virtualmachineimports.migration.harvesterhci.io -n other",
           "update vmwaresources.migration.harvesterhci.io --subresource=status -n other",
           "update ovasources.migration.harvesterhci.io --subresource=status -n other",
           "update openstacksources.migration.harvesterhci.io --subresource=status -n other",
           "patch virtualmachineimports.migration.harvesterhci.io --subresource=status -n other",
           "get secrets -n other",
           "watch secrets -A",
           "create virtualmachineimages.harvesterhci.io -n other",
           "list virtualmachineimages.harvesterhci.io -n other",
           "watch virtualmachineimages.harvesterhci.io -A",
           "delete virtualmachineimages.harvesterhci.io -n other",
           "create persistentvolumeclaims -n other",
           "delete persistentvolumeclaims -n other",
           // Volume mode (issue 19): DataVolumes, the StorageProfile of a class, and the
           // placeholder-credentials Secret CDI's S3 client needs (created and deleted only).
           "create datavolumes.cdi.kubevirt.io -n other",
           "list datavolumes.cdi.kubevirt.io -n other",
           "patch datavolumes.cdi.kubevirt.io -n other",
           "delete datavolumes.cdi.kubevirt.io -n other",
           "get storageprofiles.cdi.kubevirt.io",
           "create secrets -n other",
           "delete secrets -n other",
           "create virtualmachines.kubevirt.io -n other",
           "get virtualmachineinstances.kubevirt.io -n other",
           "get network-attachment-definitions.k8s.cni.cncf.io -n other",
           "get storageclasses.storage.k8s.io",
           "create events -n other",
           "patch events -n other",
           "create leases.coordination.k8s.io -n " + ns_,
           "update leases.coordination.k8s.io/" + release_ + " -n " + ns_,
       }) {
    EXPECT_EQ(CanI(sa, what), "yes") << what;
  }
  for (const std::string& what : std::vector<std::string>{
           "update secrets -n other",
           "patch secrets -n other",
           "update datavolumes.cdi.kubevirt.io -n other",
           "update storageprofiles.cdi.kubevirt.io",
           "update importplans.migration.harvesterhci.io -n other",
           "delete importplans.migration.harvesterhci.io -n other",
           "update vmwaresources.migration.harvesterhci.io -n other",
           "delete virtualmachines.kubevirt.io -n other",
           "update virtualmachines.kubevirt.io -n other",
           "delete virtualmachineinstances.kubevirt.io -n other",
           "update persistentvolumeclaims -n other",
           "create storageclasses.storage.k8s.io",
           "create network-attachment-definitions.k8s.cni.cncf.io -n other",
           "create customresourcedefinitions.apiextensions.k8s.io",
           "list pods -A",
           "get configmaps -n " + ns_,
           "create leases.coordination.k8s.io -n other",
           "update leases.coordination.k8s.io/someone-else -n " + ns_,
           "delete events -n other",
           "create clusterroles.rbac.authorization.k8s.io",
           "create rolebindings.rbac.authorization.k8s.io -n " + ns_,
       }) {
    EXPECT_EQ(CanI(sa, what), "no") << what;
  }
}

TEST_F(DeployRbacWorldTest, ControllerImportsAVmWithOnlyTheChartsRbac) {
  CreateNamespace("deploy");
  const std::string sa = InstallRbacAndWriteKubeconfig();
  ASSERT_FALSE(HasFailure());
  // The token is not an admin's.
  ASSERT_EQ(CanI(sa, "create namespaces"), "no");

  CreateSmallImport();
  StartSimAndController(sa);
  ASSERT_FALSE(HasFailure());

  // /healthz and /readyz, the probes of the Deployment: ready once leading.
  std::string health_port;
  ASSERT_TRUE(Eventually(
      [&] {
        std::smatch m;
        const std::string log = controller_->Log();
        if (std::regex_search(log, m, std::regex(R"(health and metrics listening.*port=(\d+))"))) {
          health_port = m[1];
        }
        return !health_port.empty();
      },
      30s))
      << controller_->Log();
  const auto http_code = [&](const std::string& path) {
    return Sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" + health_port + path).out;
  };
  EXPECT_EQ(http_code("/healthz"), "200");
  EXPECT_TRUE(Eventually([&] { return http_code("/readyz") == "200"; }, 60s)) << controller_->Log();

  const std::string status = WaitImportEnds("small", 180s);
  EXPECT_EQ(status, "virtualMachineRunning") << "import ended as '" << status << "'\n"
                                             << controller_->Log();
  auto obj = client_->Get({}, kImports, ns_, "small");
  ASSERT_TRUE(obj);
  EXPECT_EQ((*obj)["status"].value("progress", ""), "100%") << (*obj)["status"].dump();
  // The disk went through the image server into a VirtualMachineImage.
  auto images = client_->List({}, kImages, ns_);
  ASSERT_TRUE(images);
  ASSERT_EQ((*images)["items"].size(), 1u);
  std::string seeded;
  for (const auto& row : testing::ManifestRows("disk")) {
    if (row[1] == "/DC0/vm/vmi-bios-small") {
      seeded = row[4];
    }
  }
  EXPECT_FALSE(seeded.empty());
  EXPECT_EQ((*images)["items"][0]["metadata"]["annotations"].value(
                "harvester-sim.vm-import.test/sha256", ""),
            seeded);
  // The Lease and the Events were written with the ServiceAccount's rights.
  auto lease = client_->Get({}, kLeases, ns_, release_);
  ASSERT_TRUE(lease) << lease.error().ToString();
  EXPECT_FALSE((*lease)["spec"].value("holderIdentity", "").empty());
  auto events = client_->List({}, kEvents, ns_);
  ASSERT_TRUE(events);
  EXPECT_FALSE((*events)["items"].empty());

  // SIGTERM: a clean stop, the Lease released (an update: also RBAC).
  controller_->Signal(SIGTERM);
  EXPECT_EQ(controller_->Wait(30s), 0) << controller_->Log();
  const std::string log = controller_->Log();
  for (const char* word : {"Forbidden", "forbidden", "Unauthorized"}) {
    EXPECT_EQ(log.find(word), std::string::npos) << word << " in the controller log:\n" << log;
  }
}

TEST_F(DeployRbacWorldTest, ForbiddenStepIsReportedAndResumesOnceGranted) {
  CreateNamespace("deploy");
  const std::string sa = InstallRbacAndWriteKubeconfig();
  ASSERT_FALSE(HasFailure());
  // An operator's mistake: the ClusterRole lacks "create" on VirtualMachineImages.
  const Resource cluster_roles{"rbac.authorization.k8s.io", "v1", "clusterroles", false};
  auto role = client_->Get({}, cluster_roles, "", release_);
  ASSERT_TRUE(role) << role.error().ToString();
  const Json granted = *role;
  Json refused = *role;
  bool found = false;
  for (Json& rule : refused["rules"]) {
    if (rule.value("resources", Json::array()).dump().find("\"virtualmachineimages\"") !=
        std::string::npos) {
      Json verbs = Json::array();
      for (const Json& v : rule["verbs"]) {
        if (v != "create") verbs.push_back(v);
      }
      rule["verbs"] = verbs;
      found = true;
    }
  }
  ASSERT_TRUE(found) << role->dump();
  ASSERT_TRUE(client_->Update({}, cluster_roles, "", refused));
  ASSERT_TRUE(Eventually(
      [&] { return CanI(sa, "create virtualmachineimages.harvesterhci.io") == "no"; }, 30s));

  CreateSmallImport();
  StartSimAndController(sa);
  ASSERT_FALSE(HasFailure());

  // The refusal is said where an operator looks: a Warning Event on the import naming the call.
  std::string message;
  ASSERT_TRUE(Eventually(
      [&] {
        auto events = client_->List({}, kEvents, ns_);
        for (const Json& e : events ? (*events)["items"] : Json::array()) {
          if (e.value("reason", "") == "Forbidden" &&
              e["involvedObject"].value("name", "") == "small" &&
              e.value("type", "") == "Warning") {
            message = e.value("message", "");
            return true;
          }
        }
        return false;
      },
      120s))
      << controller_->Log();
  EXPECT_NE(message.find("virtualmachineimages"), std::string::npos) << message;
  EXPECT_NE(message.find("retries"), std::string::npos) << message;
  EXPECT_NE(controller_->Log().find("forbidden by RBAC"), std::string::npos);
  // Nothing final: the import waits, nothing was made.
  auto obj = client_->Get({}, kImports, ns_, "small");
  ASSERT_TRUE(obj);
  const std::string waiting = (*obj)["status"].value("importStatus", "");
  EXPECT_TRUE(waiting == "disksExported" || waiting == "sourceReady") << (*obj)["status"].dump();
  auto images = client_->List({}, kImages, ns_);
  ASSERT_TRUE(images);
  EXPECT_TRUE((*images)["items"].empty());

  // The operator grants it: the import goes on to the end by itself.
  Json restore = granted;
  auto current = client_->Get({}, cluster_roles, "", release_);
  ASSERT_TRUE(current);
  restore["metadata"]["resourceVersion"] = (*current)["metadata"]["resourceVersion"];
  ASSERT_TRUE(client_->Update({}, cluster_roles, "", restore));
  const std::string status = WaitImportEnds("small", 180s);
  EXPECT_EQ(status, "virtualMachineRunning") << controller_->Log();
  images = client_->List({}, kImages, ns_);
  ASSERT_TRUE(images);
  EXPECT_EQ((*images)["items"].size(), 1u);
  controller_->Signal(SIGTERM);
  EXPECT_EQ(controller_->Wait(30s), 0) << controller_->Log();
}

}  // namespace
}  // namespace vmimport::kube
