// Pure parsing of vim25 answers: task info, export lease device URLs and their mapping to disks,
// and faults as clear errors. The XML is shaped like what vCenter and the test world's vcsim send.

#include <gtest/gtest.h>

#include <set>

#include "source/vmware/export.h"
#include "source/vmware/soap.h"
#include "source/vmware/task.h"

namespace vmimport::source::vmware {
namespace {

using core::ErrorCode;

// Parses `xml` and keeps the document alive with the node.
struct Doc {
  explicit Doc(const std::string& xml) { EXPECT_TRUE(doc.load_string(xml.c_str())); }
  pugi::xml_node Root() const { return doc.document_element(); }
  pugi::xml_document doc;
};

std::string FaultEnvelope(const std::string& detail, const std::string& faultstring) {
  return R"(<?xml version="1.0" encoding="UTF-8"?>)"
         R"(<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/")"
         R"( xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>)"
         R"(<faultcode>ServerFaultCode</faultcode><faultstring>)" +
         faultstring + "</faultstring><detail>" + detail +
         "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>";
}

TEST(TaskInfo, ReadsSuccessRunningAndQueued) {
  Doc success(R"(<val xsi:type="TaskInfo"><key>task-7</key><task type="Task">task-7</task>
    <descriptionId>VirtualMachine.powerOff</descriptionId><state>success</state></val>)");
  const TaskInfo t = ParseTaskInfo(success.Root());
  EXPECT_EQ(t.state, TaskState::kSuccess);
  EXPECT_EQ(t.description_id, "VirtualMachine.powerOff");
  EXPECT_FALSE(t.error);
  EXPECT_EQ(t.progress, -1);

  Doc running(R"(<val><state>running</state><progress>40</progress></val>)");
  EXPECT_EQ(ParseTaskInfo(running.Root()).state, TaskState::kRunning);
  EXPECT_EQ(ParseTaskInfo(running.Root()).progress, 40);
  Doc queued(R"(<val><state>queued</state></val>)");
  EXPECT_EQ(ParseTaskInfo(queued.Root()).state, TaskState::kQueued);
  Doc odd(R"(<val><state>paused</state></val>)");
  EXPECT_EQ(ParseTaskInfo(odd.Root()).state, TaskState::kUnknown);
}

TEST(TaskInfo, ErrorCarriesTheFaultTypeDetailAndMessage) {
  Doc failed(R"(<val xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><state>error</state>
    <error><fault xsi:type="InvalidPowerState"><requestedState>poweredOn</requestedState>
    <existingState>poweredOff</existingState></fault>
    <localizedMessage>The attempted operation cannot be performed in the current state (Powered off).</localizedMessage>
    </error></val>)");
  const TaskInfo t = ParseTaskInfo(failed.Root());
  ASSERT_EQ(t.state, TaskState::kError);
  ASSERT_TRUE(t.error);
  EXPECT_EQ(t.error->type, "InvalidPowerState");
  EXPECT_EQ(t.error->existing_state, "poweredOff");
  const core::Error e = FaultError("vsphere PowerOffVM_Task on /DC0/vm/web", *t.error);
  EXPECT_EQ(e.code, ErrorCode::kConflict);
  EXPECT_EQ(e.message,
            "vsphere PowerOffVM_Task on /DC0/vm/web: InvalidPowerState: The attempted operation "
            "cannot be performed in the current state (Powered off).: the VM is poweredOff, the "
            "operation needs it poweredOn");

  Doc bare(R"(<val><state>error</state></val>)");
  ASSERT_TRUE(ParseTaskInfo(bare.Root()).error);
  EXPECT_EQ(ParseTaskInfo(bare.Root()).error->type, "SoapFault");
}

TEST(SoapFault, EachImportFaultGetsItsOwnCodeAndExplanation) {
  struct Case {
    std::string detail;
    std::string type;
    ErrorCode code;
    std::string explains;
  };
  const std::vector<Case> cases = {
      {R"(<InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"/>)", "InvalidLogin",
       ErrorCode::kUnauthenticated, "the user name or password was refused"},
      {R"(<NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated"><object type="SearchIndex">SearchIndex</object><privilegeId>System.View</privilegeId></NotAuthenticatedFault>)",
       "NotAuthenticated", ErrorCode::kUnauthenticated, "has expired; log in again"},
      {R"(<ManagedObjectNotFoundFault xmlns="urn:vim25" xsi:type="ManagedObjectNotFound"><obj type="VirtualMachine">vm-42</obj></ManagedObjectNotFoundFault>)",
       "ManagedObjectNotFound", ErrorCode::kNotFound, "VirtualMachine vm-42 no longer exists"},
      {R"(<InvalidPowerStateFault xmlns="urn:vim25" xsi:type="InvalidPowerState"><requestedState>poweredOff</requestedState><existingState>poweredOn</existingState></InvalidPowerStateFault>)",
       "InvalidPowerState", ErrorCode::kConflict,
       "the VM is poweredOn, the operation needs it poweredOff"},
      {R"(<TaskInProgressFault xmlns="urn:vim25" xsi:type="TaskInProgress"><task type="Task">task-9</task></TaskInProgressFault>)",
       "TaskInProgress", ErrorCode::kConflict, "another task is still running"},
  };
  std::set<std::string> messages;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.type);
    auto f = ParseSoapFault(FaultEnvelope(c.detail, "some text"));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, c.type);
    const core::Error e = FaultError("vsphere ExportVm", *f);
    EXPECT_EQ(e.code, c.code);
    EXPECT_TRUE(e.message.starts_with("vsphere ExportVm: " + c.type + ": some text: "))
        << e.message;
    EXPECT_NE(e.message.find(c.explains), std::string::npos) << e.message;
    messages.insert(e.message);
  }
  EXPECT_EQ(messages.size(), cases.size()) << "two faults share a message";
}

TEST(SoapFault, ReadsTheTypeWhateverTheSchemaInstancePrefix) {
  // vcsim's missingSet faults name the namespace "_XMLSchema-instance".
  Doc missing(R"(<fault xmlns:_XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance"
    _XMLSchema-instance:type="NotAuthenticated"><object type="VirtualMachine">vm-67</object>
    <privilegeId>System.Read</privilegeId></fault>)");
  const SoapFault f = ParseMethodFault(missing.Root(), "");
  EXPECT_EQ(f.type, "NotAuthenticated");
  EXPECT_EQ(f.object.value, "vm-67");
  EXPECT_EQ(f.privilege, "System.Read");
  EXPECT_EQ(ErrorCodeForFault(f.type), ErrorCode::kUnauthenticated);
}

// config.hardware.device of a VM with a PVSCSI disk, an LSI Logic disk and a SATA disk; the
// SATA controller comes after its disk, as vCenter may list it.
constexpr const char* kDevices = R"(<val xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <VirtualDevice xsi:type="ParaVirtualSCSIController"><key>1000</key><busNumber>0</busNumber></VirtualDevice>
  <VirtualDevice xsi:type="VirtualLsiLogicController"><key>1001</key><busNumber>1</busNumber></VirtualDevice>
  <VirtualDevice xsi:type="VirtualDisk"><key>2000</key><deviceInfo><label>Hard disk 1</label></deviceInfo>
    <controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInBytes>16777216</capacityInBytes></VirtualDevice>
  <VirtualDevice xsi:type="VirtualDisk"><key>2001</key><deviceInfo><label>Hard disk 2</label></deviceInfo>
    <controllerKey>1001</controllerKey><unitNumber>0</unitNumber><capacityInKB>33793</capacityInKB></VirtualDevice>
  <VirtualDevice xsi:type="VirtualDisk"><key>16000</key><deviceInfo><label>Hard disk 3</label></deviceInfo>
    <controllerKey>15000</controllerKey><unitNumber>0</unitNumber><capacityInBytes>67108864</capacityInBytes></VirtualDevice>
  <VirtualDevice xsi:type="VirtualAHCIController"><key>15000</key><busNumber>0</busNumber></VirtualDevice>
  <VirtualDevice xsi:type="VirtualVmxnet3"><key>4000</key></VirtualDevice>
</val>)";

TEST(ExportLease, DisksCarryTheLeaseKeyOfTheirControllerBusAndUnit) {
  // vcsim names the schema-instance namespace "_XMLSchema-instance", not "xsi".
  std::string vcsim_style = kDevices;
  for (size_t at = 0; (at = vcsim_style.find("xsi:", at)) != std::string::npos;) {
    vcsim_style.replace(at, 3, "_XMLSchema-instance");
  }
  for (const std::string& xml : {std::string(kDevices), vcsim_style}) {
    Doc devices(xml);
    const auto disks = ParseVirtualDisks("vm-70", devices.Root());
    ASSERT_EQ(disks.size(), 3U);
    EXPECT_EQ(disks[0].device_key, "2000");
    EXPECT_EQ(disks[0].lease_key, "/vm-70/ParaVirtualSCSIController0:0");
    EXPECT_EQ(disks[0].capacity_bytes, 16777216U);
    EXPECT_EQ(disks[1].lease_key, "/vm-70/VirtualLsiLogicController1:0");
    EXPECT_EQ(disks[1].capacity_bytes, 33793U * 1024);
    EXPECT_EQ(disks[2].lease_key, "/vm-70/VirtualAHCIController0:0");
    EXPECT_EQ(disks[2].label, "Hard disk 3");
  }
}

TEST(ExportLease, DeviceUrlsMapToDisksByKeyWhateverTheirOrder) {
  Doc info(R"(<val><deviceUrl><key>/vm-70/VirtualAHCIController0:0</key><importKey>/x/a</importKey>
      <url>https://*/nfc/t1/disk-2.vmdk</url><sslThumbprint>AB:CD</sslThumbprint><disk>true</disk></deviceUrl>
    <deviceUrl><key>/vm-70/nvram</key><url>https://*/nfc/t1/nvram</url><disk>false</disk></deviceUrl>
    <deviceUrl><key>/vm-70/ParaVirtualSCSIController0:0</key><url>https://*/nfc/t1/disk-0.vmdk</url>
      <disk>true</disk><fileSize>1234</fileSize></deviceUrl>
    <deviceUrl><key>/vm-70/VirtualLsiLogicController1:0</key><url>https://10.0.0.5/nfc/t1/disk-1.vmdk</url>
      <disk>true</disk></deviceUrl>
    <totalDiskCapacityInKB>115713</totalDiskCapacityInKB><leaseTimeout>300</leaseTimeout></val>)");
  const LeaseInfo lease = ParseLeaseInfo(info.Root());
  ASSERT_EQ(lease.device_urls.size(), 4U);
  EXPECT_EQ(lease.device_urls[0].ssl_thumbprint, "AB:CD");
  EXPECT_FALSE(lease.device_urls[1].disk);
  EXPECT_EQ(lease.device_urls[2].file_size, 1234U);
  EXPECT_FALSE(lease.device_urls[0].file_size);
  EXPECT_EQ(lease.total_disk_capacity_kb, 115713U);
  EXPECT_EQ(lease.lease_timeout_seconds, 300);

  Doc devices(kDevices);
  auto mapped = MapDeviceUrls(ParseVirtualDisks("vm-70", devices.Root()), lease.device_urls,
                              "https://vc.example:8443/sdk");
  ASSERT_TRUE(mapped) << mapped.error().ToString();
  ASSERT_EQ(mapped->size(), 3U);
  EXPECT_EQ((*mapped)[0].device_key, "2000");
  EXPECT_EQ((*mapped)[0].url, "https://vc.example:8443/nfc/t1/disk-0.vmdk");
  EXPECT_EQ((*mapped)[1].url, "https://10.0.0.5/nfc/t1/disk-1.vmdk");
  EXPECT_EQ((*mapped)[2].url, "https://vc.example:8443/nfc/t1/disk-2.vmdk");
  EXPECT_EQ((*mapped)[2].index, 2U);
}

TEST(ExportLease, UnknownKeysFallBackToDeviceOrderOnlyWhenTheCountsAgree) {
  Doc devices(kDevices);
  const auto disks = ParseVirtualDisks("vm-70", devices.Root());
  std::vector<LeaseDeviceUrl> urls;
  for (int i = 0; i < 3; ++i) {
    urls.push_back(LeaseDeviceUrl{
        .key = "disk-" + std::to_string(i), .url = "https://h/" + std::to_string(i), .disk = true});
  }
  auto by_order = MapDeviceUrls(disks, urls, "https://h/sdk");
  ASSERT_TRUE(by_order) << by_order.error().ToString();
  EXPECT_EQ((*by_order)[1].url, "https://h/1");
  urls.pop_back();
  auto short_lease = MapDeviceUrls(disks, urls, "https://h/sdk");
  ASSERT_FALSE(short_lease);
  EXPECT_EQ(short_lease.error().code, ErrorCode::kInternal);
  EXPECT_NE(short_lease.error().message.find("2 disk URLs (disk-0, disk-1) for 3 disks"),
            std::string::npos)
      << short_lease.error().message;
  // Nor may disks that were not recognised turn into an empty export.
  EXPECT_FALSE(MapDeviceUrls({}, urls, "https://h/sdk"));
}

TEST(ExportLease, StarHostBecomesTheSdkHost) {
  EXPECT_EQ(ResolveLeaseUrl("https://*/nfc/a/disk-0.vmdk", "https://vc.example/sdk"),
            "https://vc.example/nfc/a/disk-0.vmdk");
  EXPECT_EQ(ResolveLeaseUrl("https://*/nfc/a/disk-0.vmdk", "https://127.0.0.1:45123/sdk"),
            "https://127.0.0.1:45123/nfc/a/disk-0.vmdk");
  EXPECT_EQ(ResolveLeaseUrl("https://*:902/nfc/a", "https://vc.example:443/sdk"),
            "https://vc.example:902/nfc/a");
  EXPECT_EQ(ResolveLeaseUrl("https://esx1/nfc/a", "https://vc.example/sdk"), "https://esx1/nfc/a");
}

// HttpNfcLeaseGetManifest as vSphere 6.7+ answers after SetManifestChecksumType(sha256), and as
// an older host answers (sha1 only).
TEST(ExportLease, ManifestEntriesTakeTheRequestedChecksumOrFallBackToSha1) {
  const std::string sha256(64, 'A');
  const std::string sha1(40, 'b');
  Doc doc(R"(<HttpNfcLeaseGetManifestResponse xmlns="urn:vim25">)"
          R"(<returnval><key>/vm-70/VirtualLsiLogicController0:0</key><sha1>)" +
          sha1 + R"(</sha1><checksum>)" + sha256 +
          R"(</checksum><checksumType>sha256</checksumType><size>1234</size><disk>true</disk>)"
          R"(</returnval>)"
          R"(<returnval><key>/vm-70/VirtualLsiLogicController0:1</key><sha1>)" +
          sha1 +
          R"(</sha1><size>99</size><disk>true</disk></returnval>)"
          R"(<returnval><key>/vm-70/nodigest</key><sha1>xyz</sha1></returnval>)"
          R"(<returnval><key>/vm-70/short</key><checksum>abcd</checksum>)"
          R"(<checksumType>sha256</checksumType><sha1>)" +
          sha1 +
          R"(</sha1></returnval>)"
          R"(</HttpNfcLeaseGetManifestResponse>)");
  auto entries = ParseManifest(doc.Root());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].key, "/vm-70/VirtualLsiLogicController0:0");
  EXPECT_EQ(entries[0].algorithm, "sha256");
  EXPECT_EQ(entries[0].hex, std::string(64, 'a')) << "lower-cased";
  EXPECT_EQ(entries[0].size, 1234u);
  EXPECT_EQ(entries[1].algorithm, "sha1");
  EXPECT_EQ(entries[1].hex, sha1);
  // A checksum that is not a digest of its type: the sha1 next to it is taken.
  EXPECT_EQ(entries[2].key, "/vm-70/short");
  EXPECT_EQ(entries[2].algorithm, "sha1");
}

TEST(ExportLease, ManifestChecksumTypeBodyAsksForEveryDiskKey) {
  MoRef lease{"HttpNfcLease", "session[1]52"};
  const std::string body =
      ManifestChecksumTypeBody(lease, {"/vm-70/A0:0", "/vm-70/B<1>"}, "sha256");
  EXPECT_NE(body.find(R"(<_this type="HttpNfcLease">session[1]52</_this>)"), std::string::npos)
      << body;
  EXPECT_NE(body.find("<deviceUrlsToChecksumTypes><key>/vm-70/A0:0</key><value>sha256</value>"
                      "</deviceUrlsToChecksumTypes>"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("<key>/vm-70/B&lt;1&gt;</key>"), std::string::npos) << "escaped: " << body;
}

}  // namespace
}  // namespace vmimport::source::vmware
