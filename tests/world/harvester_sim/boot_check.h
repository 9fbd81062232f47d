#pragma once

// The boot check: what virt-launcher would do with a VirtualMachine, played with qemu on this
// machine. The qemu command comes from the VirtualMachine the controller created, not from a
// fixed line:
//  - machine q35 (KubeVirt's default) under TCG (no KVM here), one vCPU, the guest memory capped
//    at QemuOptions::max_memory_mib (a shared 2-core machine);
//  - firmware: SeaBIOS, or OVMF when spec.domain.firmware.bootloader.efi is set (Debian's ovmf:
//    OVMF_CODE_4M.fd, or OVMF_CODE_4M.secboot.fd with the Microsoft keys' OVMF_VARS_4M.ms.fd and
//    SMM when secureBoot is true), a fresh copy of the variable store per boot;
//  - each disk on the bus the spec names, in the spec's boot order (bootindex): virtio ->
//    virtio-blk-pci, sata -> ide-hd on q35's AHCI (6 ports), scsi -> scsi-hd on one
//    virtio-scsi-pci, usb -> usb-storage on qemu-xhci; the bytes Longhorn stored, read-only
//    (snapshot=on);
//  - each interface with the spec's model (virtio -> virtio-net-pci, e1000, e1000e, rtl8139,
//    pcnet, ne2k_pci) and MAC, on qemu's user-mode network with restrict=on (DHCP from qemu, no
//    route out, nothing reaches the host) and no option ROM;
//  - the serial port to a file, watched for the marker.
// Test harness only.

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.h"

namespace vmimport::harvester_sim {

struct QemuOptions {
  std::string serial_path;  //!< the console goes here (truncated at start)
  std::string vars_path;    //!< EFI: where the copy of the variable store goes
  std::string ovmf_dir = "/usr/share/OVMF";
  uint64_t max_memory_mib = 1024;
};

struct QemuPlan {
  std::vector<std::string> argv;
  std::string firmware;              //!< "bios", "efi", "efi-secureboot"
  std::string vars_template;         //!< EFI: the variable store to copy to QemuOptions::vars_path
  std::vector<std::string> devices;  //!< one line per disk and NIC, for logs and Events
};

//! The qemu command for the VirtualMachine's `template_spec` (spec.template.spec), with each
//! volume's bytes at `file_by_volume[volume name]`. kInvalidArgument for what KubeVirt has and
//! qemu here cannot play (a bus or model it does not know, more than 6 SATA disks, a disk
//! without bytes, a path with a comma).
core::Result<QemuPlan> QemuCommandFor(const nlohmann::json& template_spec,
                                      const std::map<std::string, std::string>& file_by_volume,
                                      const QemuOptions& options);

struct BootOutcome {
  bool booted = false;
  std::string reason;        //!< why not, one line (empty when booted)
  std::string marker_line;   //!< the console line holding the marker
  std::string console_tail;  //!< the console's last lines (at most ~1 KiB)
  double seconds = 0;        //!< from start to the marker or the failure
};

//! Runs `plan` until the serial console shows `marker` (booted), qemu exits (a guest that
//! reboots or panics: -no-reboot), `timeout` passes or `stop` is requested; qemu is always
//! killed and reaped before this returns. Blocks; safe to call from any thread.
BootOutcome RunBoot(std::stop_token stop, const QemuPlan& plan, const QemuOptions& options,
                    const std::string& marker, std::chrono::seconds timeout);

//! The last `max_lines` lines of `text`, at most `max_bytes` bytes, control characters other
//! than newlines dropped.
std::string ConsoleTail(const std::string& text, size_t max_lines, size_t max_bytes);

}  // namespace vmimport::harvester_sim
