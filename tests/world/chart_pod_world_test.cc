// The Helm chart deployed for real on the test world's node: `helm install` of
// deploy/helm/vm-import-controller with our controller image (world.local/vm-import-controller,
// built without a registry by tests/world/images/images-world.sh and imported into the node's
// containerd), so that the real kube-controller-manager makes the ReplicaSet and Pod, the real
// scheduler binds it, kubelet runs it with the chart's ServiceAccount token, and the controller
// leads (its Lease, written with the chart's RBAC) and reports Ready.
//
// No kube-proxy and an API server on 127.0.0.1: the Pod runs in the node's network namespace
// (hostNetwork), listens on 127.0.0.1 only (listenHost; kubelet probes that address), and
// reaches the API server through KUBERNETES_SERVICE_HOST/PORT set to 127.0.0.1 and its port
// (kubelet's own values name the `kubernetes` Service's ClusterIP, which nothing routes here).
//
// The same Pod is what `kubectl vmimport bundle` reads the controller's logs from: through the
// API server's pods/log, which kube-apiserver proxies to the kubelet's /containerLogs, the
// current log and, after the container was killed once, the previous one, both redacted.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "build_paths.h"
#include "core/json.h"
#include "kube/client.h"
#include "kube/config.h"
#include "world/world_env.h"

namespace vmimport::kube {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::RunCommand;
using testing::WorldVar;
namespace fs = std::filesystem;

const std::string kSourceDir = vmimport::build_paths::SourceDir();
const std::string kChart = kSourceDir + "/deploy/helm/vm-import-controller";
const Resource kLeases{"coordination.k8s.io", "v1", "leases", true};
const Resource kPods{"", "v1", "pods", true};
const Resource kNamespaces{"", "v1", "namespaces", false};
const Resource kOvaSources{"migration.harvesterhci.io", "v1beta1", "ovasources", true};
const Resource kServiceAccounts{"", "v1", "serviceaccounts", true};
const Resource kRoles{"rbac.authorization.k8s.io", "v1", "roles", true};
const Resource kRoleBindings{"rbac.authorization.k8s.io", "v1", "rolebindings", true};
//! The Helm release; its objects are named vmic-vm-import-controller.
const std::string kRelease = "vmic";

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

struct CommandResult {
  int rc = -1;
  std::string out;
};
CommandResult Sh(const std::string& command) {
  CommandResult r;
  r.rc = RunCommand(command + " 2>&1", &r.out);
  return r;
}

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

//! A TCP port free on 127.0.0.1 right now (bound, read, released).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

//! The port of an https://127.0.0.1:PORT URL; "" otherwise.
std::string PortOf(const std::string& url) {
  std::smatch m;
  return std::regex_search(url, m, std::regex(R"(^https://127\.0\.0\.1:(\d+)/?$)")) ? m[1].str()
                                                                                    : "";
}

class ChartPodWorldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    helm_ = WorldVar("HELM");
    kubectl_ = WorldVar("KUBECTL");
    kubeconfig_ = WorldVar("KUBECONFIG");
    api_port_ = PortOf(WorldVar("KUBE_APISERVER_URL"));
    ASSERT_FALSE(helm_.empty() || kubectl_.empty() || kubeconfig_.empty());
    ASSERT_FALSE(api_port_.empty()) << "the world's API server is not https://127.0.0.1:PORT";
    auto config = LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(config) << config.error().ToString();
    auto c = Client::Create(*config);
    ASSERT_TRUE(c);
    client_ = std::move(*c);
    ns_ = "chart-pod-" + std::to_string(std::random_device{}() % 1000000);
    ASSERT_TRUE(client_->Create(
        {}, kNamespaces, "",
        {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns_}}}}));
  }

  void TearDown() override {
    if (installed_) {
      (void)Sh(Helm() + " uninstall " + kRelease + " -n " + ns_ + " --wait --timeout 90s");
    }
    (void)client_->Delete({}, kNamespaces, "", ns_);
    for (const fs::path& d : dirs_) {
      fs::remove_all(d);
    }
    for (const fs::path& f : files_) {
      fs::remove(f);
    }
  }

  std::string Helm() const { return Quote(helm_) + " --kubeconfig " + Quote(kubeconfig_); }
  std::string Kubectl() const {
    return Quote(kubectl_) + " --kubeconfig " + Quote(kubeconfig_) + " -n " + ns_;
  }

  //! The release's Pods (label app.kubernetes.io/instance).
  Json Pods() {
    auto list =
        client_->List({}, kPods, ns_, {.label_selector = "app.kubernetes.io/instance=" + kRelease});
    return list ? (*list)["items"] : Json::array();
  }

  static bool Ready(const Json& pod) {
    for (const Json& c : pod["status"].value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") {
        return c.value("status", "") == "True";
      }
    }
    return false;
  }

  //! kubectl-vmimport with `kubeconfig` (default the world's) in ns_.
  CommandResult Cli(const std::string& args, const std::string& kubeconfig = "") const {
    return Sh(Quote(vmimport::build_paths::CliBinary()) + " --kubeconfig " +
              Quote(kubeconfig.empty() ? kubeconfig_ : kubeconfig) + " -n " + ns_ + " " + args);
  }

  //! A bundle made with `args`, unpacked: its vmimport-bundle/ folder ("" when that failed).
  fs::path Bundle(const std::string& name, const std::string& args,
                  const std::string& kubeconfig = "") {
    const fs::path dir = fs::temp_directory_path() / (ns_ + "-" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    dirs_.push_back(dir);
    const CommandResult made =
        Cli("bundle -o " + Quote((dir / "b.tar.gz").string()) + " " + args, kubeconfig);
    EXPECT_EQ(made.rc, 0) << made.out;
    const CommandResult untar =
        Sh("tar -xzf " + Quote((dir / "b.tar.gz").string()) + " -C " + Quote(dir.string()));
    EXPECT_EQ(untar.rc, 0) << untar.out;
    return made.rc == 0 && untar.rc == 0 ? dir / "vmimport-bundle" : fs::path();
  }

  //! A kubeconfig for a new ServiceAccount `name` of ns_ that may only get and list Pods there
  //! (not pods/log): an operator the bundle must not fail for.
  std::string PodReaderKubeconfig(const std::string& name) {
    auto made = [](const Result<Json>& r) {
      EXPECT_TRUE(r) << r.error().ToString();
      return r.has_value();
    };
    if (!made(client_->Create(
            {}, kServiceAccounts, ns_,
            {{"apiVersion", "v1"}, {"kind", "ServiceAccount"}, {"metadata", {{"name", name}}}})) ||
        !made(client_->Create(
            {}, kRoles, ns_,
            {{"apiVersion", "rbac.authorization.k8s.io/v1"},
             {"kind", "Role"},
             {"metadata", {{"name", name}}},
             {"rules",
              {{{"apiGroups", {""}}, {"resources", {"pods"}}, {"verbs", {"get", "list"}}}}}})) ||
        !made(client_->Create(
            {}, kRoleBindings, ns_,
            {{"apiVersion", "rbac.authorization.k8s.io/v1"},
             {"kind", "RoleBinding"},
             {"metadata", {{"name", name}}},
             {"roleRef",
              {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "Role"}, {"name", name}}},
             {"subjects", {{{"kind", "ServiceAccount"}, {"name", name}, {"namespace", ns_}}}}}))) {
      return "";
    }
    auto token = client_->Call({}, "POST",
                               "/api/v1/namespaces/" + ns_ + "/serviceaccounts/" + name + "/token",
                               "application/json",
                               Json{{"apiVersion", "authentication.k8s.io/v1"},
                                    {"kind", "TokenRequest"},
                                    {"spec", {{"expirationSeconds", 600}}}}
                                   .dump());
    if (!made(token)) {
      return "";
    }
    const fs::path path = fs::temp_directory_path() / (ns_ + "-" + name + ".kubeconfig");
    std::ofstream(path) << "apiVersion: v1\nkind: Config\nclusters:\n- name: w\n  cluster:\n"
                        << "    server: " << WorldVar("KUBE_APISERVER_URL") << "\n"
                        << "    certificate-authority: " << WorldVar("KUBE_CA_FILE") << "\n"
                        << "users:\n- name: u\n  user:\n    token: "
                        << (*token)["status"].value("token", "") << "\n"
                        << "contexts:\n- name: c\n  context: {cluster: w, user: u}\n"
                        << "current-context: c\n";
    files_.push_back(path);
    return path.string();
  }

  //! `kubectl vmimport bundle` reads the controller Pod `pod`'s log through the API (and, once
  //! its container was killed, the previous instance's), with a source's capability token (which
  //! the controller logged) redacted; an operator without pods/log gets a bundle that says why it
  //! has no logs.
  void BundleReadsTheLogsThroughTheApi(const std::string& pod, int health_port);

  std::string helm_, kubectl_, kubeconfig_, api_port_, ns_;
  std::vector<fs::path> dirs_, files_;
  std::unique_ptr<Client> client_;
  bool installed_ = false;
};

TEST_F(ChartPodWorldTest, HelmInstalledControllerRunsOnTheNodeWithTheChartsRbacAndIsReady) {
  const int image_port = FreePort();
  const int health_port = FreePort();
  ASSERT_TRUE(image_port > 0 && health_port > 0 && image_port != health_port);
  const std::string fullname = std::string(kRelease) + "-vm-import-controller";
  const CommandResult install =
      Sh(Helm() + " install " + kRelease + " " + Quote(kChart) + " -n " + ns_ +
         " --skip-crds"
         " --set image.repository=world.local/vm-import-controller --set image.tag=world"
         " --set image.pullPolicy=Never"
         " --set hostNetwork=true --set listenHost=127.0.0.1"
         " --set imageServer.port=" +
         std::to_string(image_port) + " --set health.port=" + std::to_string(health_port) +
         " --set imageServer.url=http://127.0.0.1:" + std::to_string(image_port) +
         " --set controller.watchNamespace=" + ns_ +
         " --set resources.requests.cpu=50m --set resources.requests.memory=64Mi"
         " --set controller.extraEnv[0].name=KUBERNETES_SERVICE_HOST"
         " --set controller.extraEnv[0].value=127.0.0.1"
         " --set controller.extraEnv[1].name=KUBERNETES_SERVICE_PORT"
         " --set-string controller.extraEnv[1].value=" +
         api_port_);
  ASSERT_EQ(install.rc, 0) << install.out;
  installed_ = true;

  // kube-controller-manager makes the ReplicaSet and the Pod, the scheduler binds it, kubelet
  // starts it from the imported image, and it turns Ready once /readyz says it leads.
  Json pod;
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (std::chrono::steady_clock::now() < deadline) {
    const Json pods = Pods();
    if (pods.size() == 1 && Ready(pods[0])) {
      pod = pods[0];
      break;
    }
    std::this_thread::sleep_for(500ms);
  }
  const Json pods = Pods();
  ASSERT_FALSE(pod.is_null()) << "no Ready Pod within 180 s; pods: " << pods.dump().substr(0, 3000)
                              << "\n"
                              << Sh(Kubectl() + " describe pods").out
                              << Sh(Kubectl() + " logs -l app.kubernetes.io/instance=" +
                                    std::string(kRelease) + " --tail=40")
                                     .out;
  const std::string pod_name = pod["metadata"].value("name", "");

  // Scheduled by the scheduler onto the world's Node, with the chart's ServiceAccount.
  EXPECT_FALSE(pod["spec"].value("nodeName", "").empty());
  EXPECT_EQ(pod["spec"].value("serviceAccountName", ""), fullname);
  EXPECT_TRUE(pod["spec"].value("hostNetwork", false));
  const Json& status = pod["status"]["containerStatuses"][0];
  EXPECT_EQ(status.value("image", ""), "world.local/vm-import-controller:world");
  EXPECT_EQ(status.value("restartCount", -1), 0) << status.dump();

  // The controller found the in-cluster configuration (the projected token and CA kubelet
  // mounted) and leads: the Lease was written with the ServiceAccount's Role.
  const CommandResult logs = Sh(Kubectl() + " logs " + pod_name);
  EXPECT_EQ(logs.rc, 0) << logs.out;
  EXPECT_NE(logs.out.find("in-cluster service account"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("api_server=https://127.0.0.1:" + api_port_), std::string::npos)
      << logs.out;
  for (const char* word : {"Forbidden", "forbidden", "Unauthorized"}) {
    EXPECT_EQ(logs.out.find(word), std::string::npos) << word << " in:\n" << logs.out;
  }
  auto lease = client_->Get({}, kLeases, ns_, "vm-import-controller");
  ASSERT_TRUE(lease) << lease.error().ToString();
  EXPECT_FALSE((*lease)["spec"].value("holderIdentity", "").empty());
  // Who wrote it: the chart's ServiceAccount (managedFields name the client's user agent only,
  // so ask the API server what that account may do instead: exactly the chart's rights).
  const std::string sa = "system:serviceaccount:" + ns_ + ":" + fullname;
  EXPECT_EQ(Sh(Kubectl() + " auth can-i update leases/vm-import-controller --as " + sa).out,
            "yes\n");
  EXPECT_EQ(Sh(Kubectl() + " auth can-i list pods --as " + sa).out, "no\n");

  // The probes' endpoints answer on 127.0.0.1 only (the node's network namespace).
  EXPECT_EQ(Sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" +
               std::to_string(health_port) + "/readyz")
                .out,
            "200");
  // Every listener on the two ports (ss: "LISTEN 0 4096 127.0.0.1:PORT 0.0.0.0:*") is on
  // 127.0.0.1, and both servers listen.
  std::istringstream listeners(Sh("ss -Hltn").out);
  std::map<int, int> seen;
  for (std::string line; std::getline(listeners, line);) {
    std::istringstream fields(line);
    std::string state, recv_q, send_q, local;
    fields >> state >> recv_q >> send_q >> local;
    const size_t colon = local.rfind(':');
    if (colon == std::string::npos) {
      continue;
    }
    const int port = std::atoi(local.substr(colon + 1).c_str());
    if (port == image_port || port == health_port) {
      ++seen[port];
      EXPECT_EQ(local.substr(0, colon), "127.0.0.1") << "a listener not on 127.0.0.1: " << line;
    }
  }
  EXPECT_EQ(seen[image_port], 1) << "the image server";
  EXPECT_EQ(seen[health_port], 1) << "/healthz, /readyz, /metrics";

  // The Pod deleted (kubelet's SIGTERM): the controller releases its Lease on the way out, so
  // the Pod the ReplicaSet makes instead leads at once rather than after the lease duration.
  const std::string holder = (*lease)["spec"].value("holderIdentity", "");
  const auto deleted_at = std::chrono::steady_clock::now();
  EXPECT_EQ(Sh(Kubectl() + " delete pod " + pod_name + " --wait=false").rc, 0);
  std::string new_holder;
  Json replacement;
  while (std::chrono::steady_clock::now() < deleted_at + 120s) {
    auto l = client_->Get({}, kLeases, ns_, "vm-import-controller");
    new_holder = l ? (*l)["spec"].value("holderIdentity", "") : "";
    for (const Json& p : Pods()) {
      if (p["metadata"].value("name", "") != pod_name && Ready(p)) {
        replacement = p;
      }
    }
    if (!replacement.is_null() && !new_holder.empty() && new_holder != holder) {
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  ASSERT_FALSE(replacement.is_null()) << Pods().dump().substr(0, 2000);
  EXPECT_NE(new_holder, holder);
  // Without the release the new Pod would wait out the old holder's 15 s lease.
  const auto takeover = std::chrono::steady_clock::now() - deleted_at;
  EXPECT_LT(takeover, 15s) << "the new Pod led after "
                           << std::chrono::duration_cast<std::chrono::seconds>(takeover).count()
                           << " s";

  BundleReadsTheLogsThroughTheApi(replacement["metadata"].value("name", ""), health_port);

  // helm uninstall: the Deployment, the ServiceAccount and the RBAC go, and with them the Pod.
  const CommandResult uninstall =
      Sh(Helm() + " uninstall " + kRelease + " -n " + ns_ + " --wait --timeout 120s");
  EXPECT_EQ(uninstall.rc, 0) << uninstall.out;
  installed_ = uninstall.rc != 0;
  bool gone = false;
  for (int i = 0; i < 240 && !gone; ++i) {
    gone = Pods().empty();
    if (!gone) {
      std::this_thread::sleep_for(500ms);
    }
  }
  EXPECT_TRUE(gone) << Pods().dump().substr(0, 2000);
}

void ChartPodWorldTest::BundleReadsTheLogsThroughTheApi(const std::string& pod, int health_port) {
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_FALSE(pod.empty());
  // A source whose URL is a capability URL (the token in its path, as the image server's are)
  // with a token in its query too: the leader logs its HEAD failure with the URL's path (once,
  // when the source turns not ready), and the bundle has the source object with the whole URL.
  std::string secret;
  std::mt19937_64 random(std::random_device{}());
  while (secret.size() < 64) {
    secret += "0123456789abcdef"[random() % 16];
  }
  const std::string ova_token = "ovatoken" + ns_.substr(10);
  ASSERT_TRUE(client_->Create(
      {}, kOvaSources, ns_,
      {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
       {"kind", "OvaSource"},
       {"metadata", {{"name", "ova"}}},
       {"spec",
        {{"url", "http://127.0.0.1:9/disks/" + secret + "/a.ova?token=" + ova_token},
         {"httpTimeoutSeconds", 5}}}}));
  // The controller logged the source's URL, token and all (else redaction proves little).
  std::string raw;
  ASSERT_TRUE(Eventually(
      [&] {
        raw = Sh(Kubectl() + " logs " + pod).out;
        return raw.find(secret) != std::string::npos;
      },
      30s))
      << raw;

  // Kill the controller once (SIGKILL, as a crash): kubelet restarts the container, and its
  // previous instance's log is what support wants most. The process listens on the health port.
  const std::string ss = Sh("ss -Hltnp 'sport = :" + std::to_string(health_port) + "'").out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ss, m, std::regex(R"(pid=(\d+))"))) << ss;
  ASSERT_EQ(::kill(std::stoi(m[1].str()), SIGKILL), 0);
  Json restarted;
  EXPECT_TRUE(Eventually(
      [&] {
        auto p = client_->Get({}, kPods, ns_, pod);
        if (!p) {
          return false;
        }
        const Json& cs = (*p)["status"]["containerStatuses"][0];
        restarted = cs;
        return cs.value("restartCount", 0) >= 1 && cs["state"].contains("running");
      },
      60s))
      << restarted.dump();
  const double kill_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The bundle, with the default selector (the chart's labels) in the release's namespace.
  const auto b0 = std::chrono::steady_clock::now();
  const fs::path root = Bundle("full", "--controller-namespace " + ns_);
  const double bundle_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - b0).count();
  ASSERT_FALSE(root.empty());
  const fs::path current = root / "logs" / pod / "controller.log";
  const fs::path previous = root / "logs" / pod / "controller.previous.log";
  ASSERT_TRUE(fs::exists(current)) << Slurp(root / "manifest.json");
  ASSERT_TRUE(fs::exists(previous)) << Slurp(root / "manifest.json");
  // Both are the controller's own lines, as the kubelet kept them.
  for (const fs::path& log : {current, previous}) {
    const std::string text = Slurp(log);
    EXPECT_NE(text.find("in-cluster service account"), std::string::npos) << log << ":\n" << text;
    EXPECT_NE(text.find("api_server=https://127.0.0.1:" + api_port_), std::string::npos) << log;
  }
  // The killed instance logged the source's URL; its log keeps the line, not the secret.
  EXPECT_NE(Slurp(previous).find("HEAD http://127.0.0.1:9/disks/REDACTED/a.ova"), std::string::npos)
      << Slurp(previous);
  // Not in any file of the bundle, nor the token of the URL.
  size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) {
      ++files;
      const std::string text = Slurp(entry.path());
      EXPECT_EQ(text.find(secret), std::string::npos) << entry.path();
      EXPECT_EQ(text.find(ova_token), std::string::npos) << entry.path();
    }
  }
  EXPECT_NE(Slurp(previous).find("REDACTED"), std::string::npos);
  // The manifest says what it read of each Pod.
  const auto manifest = core::ParseJson(Slurp(root / "manifest.json"));
  ASSERT_TRUE(manifest);
  bool seen = false;
  for (const Json& p : (*manifest)["controllerPods"]) {
    if (p.value("name", "") != pod) {
      continue;
    }
    seen = true;
    const Json& c = p["containers"][0];
    EXPECT_EQ(c.value("name", ""), "controller");
    EXPECT_GE(c.value("restartCount", 0), 1);
    EXPECT_EQ(c["lastTerminated"].value("exitCode", 0), 137) << c.dump();
    EXPECT_GT(c["log"].value("bytes", 0), 100) << c.dump();
    EXPECT_GT(c["previousLog"].value("bytes", 0), 100) << c.dump();
    EXPECT_FALSE(c["log"].contains("error")) << c.dump();
  }
  EXPECT_TRUE(seen) << manifest->dump(2);

  // A log longer than --controller-log-limit keeps its last whole lines and says so.
  const fs::path cut =
      Bundle("cut", "--controller-namespace " + ns_ + " --controller-log-limit 600");
  ASSERT_FALSE(cut.empty());
  const std::string cut_log = Slurp(cut / "logs" / pod / "controller.previous.log");
  EXPECT_LE(cut_log.size(), 600u);
  EXPECT_EQ(cut_log.rfind("time=", 0), 0u) << cut_log;         // from a whole line
  EXPECT_TRUE(Slurp(previous).ends_with(cut_log)) << cut_log;  // its end
  EXPECT_NE(Slurp(cut / "logs" / pod / "controller.previous.log.TRUNCATED").find("holds its last"),
            std::string::npos);

  // No Pod matches: the bundle is made and says so.
  const fs::path none = Bundle("none", "--controller-namespace " + ns_ +
                                           " --controller-selector app.kubernetes.io/name=nothing");
  ASSERT_FALSE(none.empty());
  const auto none_manifest = core::ParseJson(Slurp(none / "manifest.json"));
  ASSERT_TRUE(none_manifest);
  EXPECT_NE((*none_manifest)["notes"].value("logs", "").find("no controller Pod"),
            std::string::npos)
      << none_manifest->dump(2);
  EXPECT_FALSE(fs::exists(none / "logs"));

  // An operator who may list Pods but not read their logs: RBAC refuses pods/log, the bundle is
  // made all the same and its manifest names the permission.
  const std::string reader = PodReaderKubeconfig("bundle-reader");
  ASSERT_FALSE(reader.empty());
  const fs::path refused = Bundle("refused", "--controller-namespace " + ns_, reader);
  ASSERT_FALSE(refused.empty());
  const auto refused_manifest = core::ParseJson(Slurp(refused / "manifest.json"));
  ASSERT_TRUE(refused_manifest);
  const std::string why = (*refused_manifest)["notes"].value("logs/" + pod + "/controller.log", "");
  EXPECT_NE(why.find("forbidden: the bundle needs get on pods/log in namespace " + ns_),
            std::string::npos)
      << refused_manifest->dump(2);
  EXPECT_FALSE(fs::exists(refused / "logs" / pod / "controller.log"));
  std::cerr << "bundle of the chart's Pod: " << files << " files; kill and restart " << kill_s
            << " s, bundle " << bundle_s << " s, all "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s\n";
}

}  // namespace
}  // namespace vmimport::kube
