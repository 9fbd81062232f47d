#include "world/harvester_sim/data_source.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

namespace vmimport::harvester_sim {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Extra room in a capacity-limited /data: the disk config and the file's config (a page each).
constexpr uint64_t kDataSlackBytes = 64 * 1024;
// The host paths that are symlinks into /usr on a merged-/usr system (Debian 12) and are made the
// same way in the root; on a host where one is a directory it is bound in read-only instead.
constexpr std::array<const char*, 4> kUsrLinks = {"bin", "sbin", "lib", "lib64"};
constexpr std::array<const char*, 4> kDevices = {"null", "zero", "random", "urandom"};

// Free TCP ports on 127.0.0.1, all bound at once, then released for the child to take.
core::Result<std::vector<int>> FreePorts(size_t count) {
  std::vector<int> fds;
  std::vector<int> ports;
  for (size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int err = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      for (int f : fds) {
        ::close(f);
      }
      return core::MakeError(core::ErrorCode::kUnavailable,
                             std::string("data source: no free port: ") + std::strerror(err));
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int f : fds) {
    ::close(f);
  }
  return ports;
}

// --- the child, between fork and exec: async-signal-safe calls only -----------------------------

// Everything the child needs, prepared before fork (no allocation after it).
struct ChildPlan {
  pid_t parent = 0;
  const char* log_path = nullptr;
  std::vector<std::pair<const char*, const char*>> read_only_binds;  // source, target
  const char* dev_dir = nullptr;
  std::vector<std::pair<const char*, const char*>> devices;  // host device, target file
  const char* proc_dir = nullptr;
  const char* data_dir = nullptr;
  std::string data_tmpfs_options;  // empty: no tmpfs
  const char* disk_config_path = nullptr;
  std::string disk_config;
  const char* binary = nullptr;
  const char* binary_target = nullptr;
  const char* root = nullptr;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

void WriteAll(int fd, const char* text) { (void)!::write(fd, text, std::strlen(text)); }

[[noreturn]] void ChildFail(const char* what, const char* path) {
  const int err = errno;
  char digits[16];
  int n = 0;
  int e = err;
  do {
    digits[n++] = static_cast<char>('0' + e % 10);
    e /= 10;
  } while (e > 0 && n < 15);
  WriteAll(2, "harvester-sim data source setup: ");
  WriteAll(2, what);
  WriteAll(2, " ");
  WriteAll(2, path != nullptr ? path : "");
  WriteAll(2, ": errno ");
  while (n > 0) {
    (void)!::write(2, &digits[--n], 1);
  }
  WriteAll(2, "\n");
  ::_exit(127);
}

void BindReadOnly(const char* source, const char* target) {
  if (::mount(source, target, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    ChildFail("bind mount", target);
  }
  if (::mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
    ChildFail("read-only remount", target);
  }
}

[[noreturn]] void RunChild(const ChildPlan& plan) {
  // Dies with harvester-sim, whatever kills it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != plan.parent) {
    ::_exit(126);
  }
  (void)::setpgid(0, 0);  // its own group: Stop() also reaches what it runs (qemu-img)
  const int log = ::open(plan.log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  const int null = ::open("/dev/null", O_RDONLY);
  if (log < 0 || null < 0) {
    ::_exit(125);
  }
  ::dup2(null, 0);
  ::dup2(log, 1);
  ::dup2(log, 2);
  if (::close_range(3, ~0U, 0) != 0) {
    for (int fd = 3; fd < 4096; ++fd) {
      ::close(fd);
    }
  }
  if (::unshare(CLONE_NEWNS) != 0) {
    ChildFail("unshare(CLONE_NEWNS)", nullptr);
  }
  // Nothing mounted below propagates back to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    ChildFail("making / private", "/");
  }
  for (const auto& [source, target] : plan.read_only_binds) {
    BindReadOnly(source, target);
  }
  if (::mount("tmpfs", plan.dev_dir, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=65536,mode=0755") != 0) {
    ChildFail("tmpfs", plan.dev_dir);
  }
  for (const auto& [device, target] : plan.devices) {
    const int fd = ::open(target, O_CREAT | O_WRONLY, 0666);
    if (fd < 0) {
      ChildFail("creating", target);
    }
    ::close(fd);
    if (::mount(device, target, nullptr, MS_BIND, nullptr) != 0) {
      ChildFail("bind mount", target);
    }
  }
  if (::mount("proc", plan.proc_dir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    WriteAll(2, "harvester-sim data source setup: no /proc in the root (continuing)\n");
  }
  if (!plan.data_tmpfs_options.empty()) {
    if (::mount("tmpfs", plan.data_dir, "tmpfs", MS_NOSUID | MS_NODEV,
                plan.data_tmpfs_options.c_str()) != 0) {
      ChildFail("tmpfs", plan.data_dir);
    }
    const int fd = ::open(plan.disk_config_path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) {
      ChildFail("creating", plan.disk_config_path);
    }
    WriteAll(fd, plan.disk_config.c_str());
    ::close(fd);
  }
  BindReadOnly(plan.binary, plan.binary_target);
  if (::chroot(plan.root) != 0) {
    ChildFail("chroot", plan.root);
  }
  if (::chdir("/") != 0) {
    ChildFail("chdir", "/");
  }
  ::execve("/bim", plan.argv.data(), plan.envp.data());
  ChildFail("execve", plan.binary);
}

// Makes the root's directories, links and files on the host (before the child mounts on them).
core::Status PrepareRoot(const DataSourceOptions& o, const fs::path& root, bool data_on_tmpfs,
                         const std::string& disk_config) {
  std::error_code ec;
  for (const char* d : {"usr", "etc", "dev", "proc", "data", "tmp"}) {
    fs::create_directories(root / d, ec);
    if (ec) {
      return core::MakeError(core::ErrorCode::kInternal,
                             "data source: creating " + (root / d).string() + ": " + ec.message());
    }
  }
  for (const char* l : kUsrLinks) {
    const fs::path host = fs::path("/") / l;
    if (fs::is_symlink(host, ec)) {
      fs::create_symlink(fs::read_symlink(host, ec), root / l, ec);
    } else {
      fs::create_directories(root / l, ec);
    }
    if (ec) {
      return core::MakeError(core::ErrorCode::kInternal,
                             "data source: making " + (root / l).string() + ": " + ec.message());
    }
  }
  std::ofstream(root / "bim").close();  // the bind mount's target
  if (!data_on_tmpfs) {
    std::ofstream cfg(root / "data" / "longhorn-disk.cfg");
    cfg << disk_config;
    if (!cfg) {
      return core::MakeError(core::ErrorCode::kInternal,
                             "data source: writing " + (root / "data").string());
    }
  }
  (void)o;
  return {};
}

}  // namespace

core::Result<std::unique_ptr<DataSource>> DataSource::Start(DataSourceOptions options,
                                                            http::Client& http) {
  if (options.binary.empty() || ::access(options.binary.c_str(), X_OK) != 0) {
    return core::MakeError(
        core::ErrorCode::kInvalidArgument,
        "data source: backing-image-manager binary '" + options.binary + "' is not executable");
  }
  std::unique_ptr<DataSource> ds(new DataSource(std::move(options), http));
  const DataSourceOptions& o = ds->options_;
  const fs::path work = o.work_dir;
  const fs::path root = work / "root";
  std::error_code ec;
  fs::remove_all(work, ec);  // a leftover of a killed run: nothing is mounted there on the host
  const bool data_on_tmpfs = o.capacity_bytes > 0;
  const std::string disk_config = "{\"diskUUID\":\"" + o.disk_uuid + "\"}";
  if (auto prepared = PrepareRoot(o, root, data_on_tmpfs, disk_config); !prepared) {
    return core::MakeError(prepared.error());
  }
  auto ports = FreePorts(2);
  if (!ports) {
    return core::MakeError(ports.error());
  }
  ds->listen_port_ = (*ports)[0];
  ds->sync_port_ = (*ports)[1];
  ds->log_path_ = (work / "bim.log").string();

  // Every string the child uses, owned here until exec.
  std::vector<std::string> strings;
  strings.reserve(64);
  auto keep = [&strings](std::string s) -> const char* {
    strings.push_back(std::move(s));
    return strings.back().c_str();
  };
  ChildPlan plan;
  plan.parent = ::getpid();
  plan.log_path = keep(ds->log_path_);
  plan.read_only_binds.emplace_back("/usr", keep((root / "usr").string()));
  plan.read_only_binds.emplace_back("/etc", keep((root / "etc").string()));
  for (const char* l : kUsrLinks) {
    const fs::path host = fs::path("/") / l;
    if (!fs::is_symlink(host, ec) && fs::is_directory(host, ec)) {
      plan.read_only_binds.emplace_back(keep(host.string()), keep((root / l).string()));
    }
  }
  plan.dev_dir = keep((root / "dev").string());
  for (const char* d : kDevices) {
    plan.devices.emplace_back(keep(std::string("/dev/") + d), keep((root / "dev" / d).string()));
  }
  plan.proc_dir = keep((root / "proc").string());
  plan.data_dir = keep((root / "data").string());
  if (data_on_tmpfs) {
    plan.data_tmpfs_options =
        "size=" + std::to_string(o.capacity_bytes + kDataSlackBytes) + ",mode=0755";
  }
  plan.disk_config_path = keep((root / "data" / "longhorn-disk.cfg").string());
  plan.disk_config = disk_config;
  plan.binary = keep(o.binary);
  plan.binary_target = keep((root / "bim").string());
  plan.root = keep(root.string());
  // As longhorn-manager's BackingImageDataSource controller writes the pod's command.
  std::vector<std::string> args = {"backing-image-manager",
                                   "--debug",
                                   "data-source",
                                   "--listen",
                                   "127.0.0.1:" + std::to_string(ds->listen_port_),
                                   "--sync-listen",
                                   "127.0.0.1:" + std::to_string(ds->sync_port_),
                                   "--name",
                                   o.name,
                                   "--uuid",
                                   o.uuid,
                                   "--source-type",
                                   "download",
                                   "--parameters",
                                   "url=" + o.url};
  if (!o.checksum.empty()) {
    args.emplace_back("--checksum");
    args.push_back(o.checksum);
  }
  for (std::string& a : args) {
    plan.argv.push_back(const_cast<char*>(keep(std::move(a))));
  }
  plan.argv.push_back(nullptr);
  plan.envp = {const_cast<char*>(keep("PATH=/usr/sbin:/usr/bin:/sbin:/bin")),
               const_cast<char*>(keep("HOME=/tmp")), nullptr};

  const pid_t pid = ::fork();
  if (pid < 0) {
    return core::MakeError(core::ErrorCode::kUnavailable,
                           std::string("data source: fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    RunChild(plan);
  }
  ds->pid_ = pid;
  return ds;
}

DataSource::~DataSource() { Stop(); }

core::Result<DataSourceFileInfo> DataSource::Get() {
  http::Request req{.url = "http://127.0.0.1:" + std::to_string(listen_port_) + "/v1/file",
                    .timeout = 5s,
                    .connect_timeout = 1s,
                    .stall_timeout = 0s};
  auto res = http_.Do({}, req);
  if (!res) {
    return core::MakeError(core::ErrorCode::kUnavailable,
                           "data source: GET /v1/file: " + res.error().ToString());
  }
  if (res->status != 200) {
    return core::MakeError(core::ErrorCode::kUnavailable, "data source: GET /v1/file answered " +
                                                              std::to_string(res->status) + ": " +
                                                              res->body.substr(0, 200));
  }
  return ParseDataSourceFileInfo(res->body);
}

core::Status DataSource::Transfer() {
  http::Request req{
      .method = "POST",
      .url = "http://127.0.0.1:" + std::to_string(listen_port_) + "/v1/file?action=transfer",
      .timeout = 5s,
      .connect_timeout = 1s,
      .stall_timeout = 0s};
  auto res = http_.Do({}, req);
  if (!res) {
    return core::MakeError(res.error().Wrap("data source: transfer"));
  }
  if (res->status != 200) {
    return core::MakeError(core::ErrorCode::kUnavailable, "data source: transfer answered " +
                                                              std::to_string(res->status) + ": " +
                                                              res->body.substr(0, 200));
  }
  return {};
}

std::string DataSource::HostPath(const std::string& path_in_root) const {
  return "/proc/" + std::to_string(pid_) + "/root" + path_in_root;
}

std::optional<int> DataSource::Exited() {
  if (pid_ <= 0) {
    return 0;  // never started
  }
  if (reaped_) {
    return exit_code_;
  }
  // Not reaped here (WNOWAIT): while unreaped, its PID and process group id cannot be reused, so
  // Stop() can still signal the group exactly.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid != pid_) {
    return std::nullopt;
  }
  exit_code_ = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
  return exit_code_;
}

std::string DataSource::LogTail(size_t bytes) const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

uint64_t DataSource::RssBytes() const {
  if (pid_ <= 0 || reaped_) {
    return 0;
  }
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    }
  }
  return 0;
}

void DataSource::Stop(std::chrono::milliseconds grace) {
  if (pid_ > 0 && !reaped_) {
    if (!Exited()) {
      if (::kill(-pid_, SIGTERM) != 0) {
        (void)::kill(pid_, SIGTERM);  // its setpgid did not happen yet
      }
      const auto deadline = std::chrono::steady_clock::now() + grace;
      while (!Exited() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
      if (!Exited()) {
        (void)::kill(pid_, SIGKILL);
      }
    }
    // Whatever it started and left behind (qemu-img): its group, whose id is still ours since
    // the leader is not reaped yet.
    (void)::kill(-pid_, SIGKILL);
    int status = 0;
    (void)::waitpid(pid_, &status, 0);
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  if (!options_.work_dir.empty()) {
    std::error_code ec;
    fs::remove_all(options_.work_dir, ec);
  }
  options_.work_dir.clear();
}

}  // namespace vmimport::harvester_sim
