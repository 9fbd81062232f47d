#include "world/harvester_sim/boot_check.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace vmimport::harvester_sim {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

core::Error Invalid(std::string message) {
  return core::Error{core::ErrorCode::kInvalidArgument, "boot check: " + std::move(message)};
}

const Json& Obj(const Json& o, const char* key) {
  static const Json kEmpty = Json::object();
  if (!o.is_object()) {
    return kEmpty;
  }
  auto it = o.find(key);
  return it != o.end() && it->is_object() ? *it : kEmpty;
}

Json Arr(const Json& o, const char* key) {
  if (!o.is_object()) {
    return Json::array();
  }
  auto it = o.find(key);
  return it != o.end() && it->is_array() ? *it : Json::array();
}

std::string Str(const Json& o, const char* key) {
  if (!o.is_object()) {
    return "";
  }
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

// "1024Mi", "2Gi", "512M" -> MiB; 0 when it does not parse.
uint64_t QuantityMib(const std::string& q) {
  size_t pos = 0;
  uint64_t n = 0;
  while (pos < q.size() && std::isdigit(static_cast<unsigned char>(q[pos])) != 0) {
    n = n * 10 + static_cast<uint64_t>(q[pos] - '0');
    ++pos;
  }
  const std::string unit = q.substr(pos);
  if (unit == "Mi") {
    return n;
  }
  if (unit == "Gi") {
    return n * 1024;
  }
  if (unit == "M") {
    return n * 1000 * 1000 / (1 << 20);
  }
  if (unit == "G") {
    return n * 1000 * 1000 * 1000 / (1 << 20);
  }
  if (unit.empty()) {
    return n >> 20;
  }
  return 0;
}

std::string NicDevice(const std::string& model) {
  if (model.empty() || model == "virtio") {
    return "virtio-net-pci";
  }
  if (model == "e1000" || model == "e1000e" || model == "rtl8139" || model == "ne2k_pci") {
    return model;
  }
  if (model == "pcnet") {
    return "pcnet";
  }
  return "";
}

}  // namespace

core::Result<QemuPlan> QemuCommandFor(const Json& template_spec,
                                      const std::map<std::string, std::string>& file_by_volume,
                                      const QemuOptions& options) {
  const Json& domain = Obj(template_spec, "domain");
  const Json& devices = Obj(domain, "devices");
  QemuPlan plan;
  const Json& efi = Obj(Obj(Obj(domain, "firmware"), "bootloader"), "efi");
  const bool is_efi = Obj(Obj(domain, "firmware"), "bootloader").contains("efi");
  const bool secure = is_efi && efi.value("secureBoot", true);  // KubeVirt's default: true
  std::string machine = "q35,accel=tcg";
  if (secure || Obj(Obj(domain, "features"), "smm").value("enabled", false)) {
    machine += ",smm=on";
  }
  uint64_t mib = QuantityMib(Str(Obj(domain, "memory"), "guest"));
  if (mib == 0) {
    mib = QuantityMib(Str(Obj(Obj(domain, "resources"), "requests"), "memory"));
  }
  mib = std::clamp<uint64_t>(mib == 0 ? 512 : mib, 128, options.max_memory_mib);
  plan.argv = {"qemu-system-x86_64",
               "-machine",
               machine,
               "-m",
               std::to_string(mib),
               "-smp",
               "1",
               "-display",
               "none",
               "-nodefaults",
               "-no-reboot",
               "-monitor",
               "none",
               "-serial",
               "file:" + options.serial_path};
  if (!is_efi) {
    plan.firmware = "bios";
  } else {
    plan.firmware = secure ? "efi-secureboot" : "efi";
    const std::string code =
        options.ovmf_dir + (secure ? "/OVMF_CODE_4M.secboot.fd" : "/OVMF_CODE_4M.fd");
    plan.vars_template = options.ovmf_dir + (secure ? "/OVMF_VARS_4M.ms.fd" : "/OVMF_VARS_4M.fd");
    if (secure) {
      plan.argv.insert(plan.argv.end(),
                       {"-global", "driver=cfi.pflash01,property=secure,value=on"});
    }
    plan.argv.insert(plan.argv.end(),
                     {"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code, "-drive",
                      "if=pflash,format=raw,unit=1,file=" + options.vars_path});
  }

  // Disks in boot order (those without one after, in spec order), as KubeVirt gives libvirt.
  Json disks = Arr(devices, "disks");
  std::vector<size_t> order(disks.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  auto boot_order = [&](size_t i) {
    return disks[i].is_object() ? disks[i].value("bootOrder", INT_MAX) : INT_MAX;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return boot_order(a) < boot_order(b); });
  int sata_port = 0;
  bool scsi = false;
  bool usb = false;
  int bootindex = 1;
  for (size_t k = 0; k < order.size(); ++k) {
    const Json& d = disks[order[k]];
    const std::string name = Str(d, "name");
    if (!d.is_object() || !d.contains("disk")) {
      return core::MakeError(Invalid("disk " + name +
                                     ": only disk devices are played (not cdrom "
                                     "or lun)"));
    }
    auto file = file_by_volume.find(name);
    if (file == file_by_volume.end() || file->second.empty()) {
      return core::MakeError(Invalid("disk " + name + " has no downloaded bytes"));
    }
    if (file->second.find(',') != std::string::npos) {
      return core::MakeError(Invalid("disk " + name + ": a comma in " + file->second));
    }
    const std::string bus =
        Str(Obj(d, "disk"), "bus").empty() ? "virtio" : Str(Obj(d, "disk"), "bus");
    const std::string id = "drive-" + std::to_string(k);
    plan.argv.insert(
        plan.argv.end(),
        {"-drive", "file=" + file->second + ",format=raw,if=none,id=" + id + ",snapshot=on"});
    const std::string index = ",bootindex=" + std::to_string(bootindex++);
    if (bus == "virtio") {
      plan.argv.insert(plan.argv.end(), {"-device", "virtio-blk-pci,drive=" + id + index});
    } else if (bus == "sata") {
      if (sata_port >= 6) {
        return core::MakeError(Invalid("more than 6 sata disks (q35's AHCI has 6 ports)"));
      }
      plan.argv.insert(plan.argv.end(), {"-device", "ide-hd,drive=" + id + ",bus=ide." +
                                                        std::to_string(sata_port++) + index});
    } else if (bus == "scsi") {
      if (!scsi) {
        plan.argv.insert(plan.argv.end(), {"-device", "virtio-scsi-pci,id=scsi0"});
        scsi = true;
      }
      plan.argv.insert(plan.argv.end(),
                       {"-device", "scsi-hd,drive=" + id + ",bus=scsi0.0" + index});
    } else if (bus == "usb") {
      if (!usb) {
        plan.argv.insert(plan.argv.end(), {"-device", "qemu-xhci,id=xhci"});
        usb = true;
      }
      plan.argv.insert(plan.argv.end(),
                       {"-device", "usb-storage,drive=" + id + ",bus=xhci.0" + index});
    } else {
      return core::MakeError(Invalid("disk " + name + ": bus \"" + bus +
                                     "\" is not one KubeVirt "
                                     "has (virtio, sata, scsi, usb)"));
    }
    plan.devices.push_back("disk " + name + " " + bus + " bootOrder " +
                           (boot_order(order[k]) == INT_MAX
                                ? std::string("-")
                                : std::to_string(boot_order(order[k]))));
  }
  if (disks.empty()) {
    return core::MakeError(Invalid("the VM has no disk"));
  }

  const Json interfaces = Arr(devices, "interfaces");
  for (size_t i = 0; i < interfaces.size(); ++i) {
    const Json& nic = interfaces[i];
    const std::string model = Str(nic, "model");
    const std::string device = NicDevice(model);
    if (device.empty()) {
      return core::MakeError(
          Invalid("interface " + Str(nic, "name") + ": model \"" + model + "\" is unknown"));
    }
    const std::string mac = Str(nic, "macAddress");
    const std::string id = "net-" + std::to_string(i);
    // restrict=on: the guest reaches nothing outside (DHCP and DNS from qemu only).
    plan.argv.insert(plan.argv.end(), {"-netdev", "user,id=" + id + ",restrict=on"});
    plan.argv.insert(
        plan.argv.end(),
        {"-device", device + ",netdev=" + id + (mac.empty() ? "" : ",mac=" + mac) + ",romfile="});
    plan.devices.push_back("nic " + Str(nic, "name") + " " + (model.empty() ? "virtio" : model) +
                           " " + (mac.empty() ? "(no MAC)" : mac));
  }
  return plan;
}

std::string ConsoleTail(const std::string& text, size_t max_lines, size_t max_bytes) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n' || (u >= 0x20 && u != 0x7f)) {
      clean += c;
    }
  }
  while (!clean.empty() && clean.back() == '\n') {
    clean.pop_back();
  }
  size_t start = clean.size();
  size_t lines = 0;
  while (start > 0 && lines < max_lines) {
    const size_t nl = clean.rfind('\n', start - 1);
    start = nl == std::string::npos ? 0 : nl;
    ++lines;
    if (nl == std::string::npos) {
      break;
    }
  }
  std::string tail = clean.substr(start);
  if (!tail.empty() && tail.front() == '\n') {
    tail.erase(0, 1);
  }
  if (tail.size() > max_bytes) {
    tail = tail.substr(tail.size() - max_bytes);
  }
  return tail;
}

BootOutcome RunBoot(std::stop_token stop, const QemuPlan& plan, const QemuOptions& options,
                    const std::string& marker, std::chrono::seconds timeout) {
  BootOutcome out;
  std::error_code ec;
  std::filesystem::remove(options.serial_path, ec);
  if (!plan.vars_template.empty()) {
    std::filesystem::copy_file(plan.vars_template, options.vars_path,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) {
      out.reason = "cannot copy the EFI variable store " + plan.vars_template + ": " + ec.message();
      return out;
    }
  }
  std::vector<char*> argv;
  argv.reserve(plan.argv.size() + 1);
  for (const std::string& a : plan.argv) {
    argv.push_back(const_cast<char*>(a.c_str()));  // NOLINT: execvp's signature
  }
  argv.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    out.reason = "fork failed";
    return out;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the simulator killed: qemu goes too
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  std::string text;
  const auto deadline = start + timeout;
  for (;;) {
    std::ifstream in(options.serial_path, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
    if (const size_t at = text.find(marker); at != std::string::npos) {
      const size_t line_start = text.rfind('\n', at);
      const size_t line_end = text.find('\n', at);
      out.marker_line = text.substr(
          line_start == std::string::npos ? 0 : line_start + 1,
          line_end == std::string::npos ? std::string::npos : line_end - line_start - 1);
      while (!out.marker_line.empty() &&
             (out.marker_line.back() == '\r' || out.marker_line.back() == '\n')) {
        out.marker_line.pop_back();
      }
      out.booted = true;
      break;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      // The guest rebooted or powered off (a panic with panic=N reboots; -no-reboot exits).
      std::ifstream again(options.serial_path, std::ios::binary);
      std::ostringstream rest;
      rest << again.rdbuf();
      text = rest.str();
      out.reason = "qemu exited (" +
                   (WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status))) +
                   ") before the guest printed " + marker;
      out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      out.console_tail = ConsoleTail(text, 15, 1000);
      return out;
    }
    if (stop.stop_requested()) {
      out.reason = "the boot check was stopped";
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      out.reason = "no " + marker + " on the serial console within " +
                   std::to_string(timeout.count()) + " s";
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.console_tail = ConsoleTail(text, 15, 1000);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return out;
}

}  // namespace vmimport::harvester_sim
