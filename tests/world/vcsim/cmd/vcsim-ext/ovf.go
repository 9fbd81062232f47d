package main

// OvfManager.CreateDescriptor for a VM, minimal: References, DiskSection (streamOptimized),
// NetworkSection, OS type, CPU (with cores per socket), memory, disk controllers, disks with
// rasd:Parent, NICs with MAC address and network name, firmware. `govc export.ovf` calls it after
// the downloads; the simulator (v0.56.0) does not implement it. vApps are refused (NotSupported).

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func xmlEsc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// networkName is the name of the network a NIC is on; distributed port groups are referenced by
// key in the backing, as on vSphere.
func networkName(ctx *simulator.Context, dev types.BaseVirtualDevice) string {
	switch b := dev.GetVirtualDevice().Backing.(type) {
	case *types.VirtualEthernetCardNetworkBackingInfo:
		return b.DeviceName
	case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
		for _, e := range ctx.Map.All("DistributedVirtualPortgroup") {
			if pg, ok := e.(*simulator.DistributedVirtualPortgroup); ok && pg.Key == b.Port.PortgroupKey {
				return pg.Name
			}
		}
		return b.Port.PortgroupKey
	case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
		return b.OpaqueNetworkId
	}
	return ""
}

// controller returns OVF ResourceType and ResourceSubType for a disk controller.
func ovfController(c types.BaseVirtualDevice) (int, string) {
	switch c.(type) {
	case *types.ParaVirtualSCSIController:
		return 6, "VirtualSCSI"
	case *types.VirtualLsiLogicController:
		return 6, "lsilogic"
	case *types.VirtualLsiLogicSASController:
		return 6, "lsilogicsas"
	case *types.VirtualBusLogicController:
		return 6, "buslogic"
	case *types.VirtualIDEController:
		return 5, ""
	case *types.VirtualAHCIController:
		return 20, "vmware.sata.ahci"
	case *types.VirtualNVMEController:
		return 20, "vmware.nvme.controller"
	}
	return 6, "lsilogic"
}

// ovfNICType is the rasd:ResourceSubType vSphere writes for an adapter: VmxNet3, E1000e, E1000...
func ovfNICType(dev types.BaseVirtualDevice) string {
	t := strings.TrimPrefix(fmt.Sprintf("%T", dev), "*types.Virtual")
	if t == "Vmxnet3" {
		return "VmxNet3"
	}
	return t
}

func (o *ovfDescriber) CreateDescriptor(ctx *simulator.Context, req *types.CreateDescriptor) soap.HasFault {
	body := new(methods.CreateDescriptorBody)
	vm, ok := ctx.Map.Get(req.Obj).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("CreateDescriptor: only a VirtualMachine is supported", &types.NotSupported{})
		return body
	}
	var (
		d     string
		fault types.BaseMethodFault
	)
	ctx.WithLock(vm, func() { d, fault = describe(ctx, vm, req.Cdp) })
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.CreateDescriptorResponse{Returnval: types.OvfCreateDescriptorResult{OvfDescriptor: d}}
	return body
}

func describe(ctx *simulator.Context, vm *simulator.VirtualMachine, cdp types.OvfCreateDescriptorParams) (string, types.BaseMethodFault) {
	disks, fault := vmDisks(ctx, vm)
	if fault != nil {
		return "", fault
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	var refs, disksec, netsec, items strings.Builder
	id := 2 // 1 = CPU, 2 = memory
	ctlrID := map[int32]int{}
	for i, dk := range disks {
		cid, seen := ctlrID[dk.ctlrKey]
		if !seen {
			id++
			cid = id
			ctlrID[dk.ctlrKey] = cid
			rtype, sub := 6, "lsilogic"
			if c := devices.FindByKey(dk.ctlrKey); c != nil {
				rtype, sub = ovfController(c)
			}
			subtype := ""
			if sub != "" {
				subtype = "        <rasd:ResourceSubType>" + sub + "</rasd:ResourceSubType>\n"
			}
			fmt.Fprintf(&items, "      <Item>\n        <rasd:Address>%d</rasd:Address>\n        <rasd:ElementName>%s%d</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n%s        <rasd:ResourceType>%d</rasd:ResourceType>\n      </Item>\n",
				dk.ctlrBus, xmlEsc(dk.ctlrType), dk.ctlrBus, cid, subtype, rtype)
		}
		href, size := vm.Name+"-"+dk.name, int64(0)
		for _, f := range cdp.OvfFiles {
			if f.DeviceId == dk.key {
				href, size = f.Path, f.Size
			}
		}
		sizeAttr := ""
		if size > 0 {
			sizeAttr = fmt.Sprintf(" ovf:size=\"%d\"", size)
		}
		fmt.Fprintf(&refs, "    <File ovf:href=\"%s\" ovf:id=\"file%d\"%s/>\n", xmlEsc(href), i+1, sizeAttr)
		fmt.Fprintf(&disksec, "    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk%d\" ovf:fileRef=\"file%d\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n",
			dk.capKB*1024, i+1, i+1)
		id++
		fmt.Fprintf(&items, "      <Item>\n        <rasd:AddressOnParent>%d</rasd:AddressOnParent>\n        <rasd:ElementName>Hard disk %d</rasd:ElementName>\n        <rasd:HostResource>ovf:/disk/vmdisk%d</rasd:HostResource>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:Parent>%d</rasd:Parent>\n        <rasd:ResourceType>17</rasd:ResourceType>\n      </Item>\n",
			dk.unit, i+1, i+1, id, cid)
	}
	seenNet := map[string]bool{}
	for i, dev := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		name := networkName(ctx, dev)
		if !seenNet[name] {
			seenNet[name] = true
			fmt.Fprintf(&netsec, "    <Network ovf:name=\"%s\">\n      <Description>The %s network</Description>\n    </Network>\n", xmlEsc(name), xmlEsc(name))
		}
		card := dev.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		id++
		fmt.Fprintf(&items, "      <Item>\n        <rasd:Address>%s</rasd:Address>\n        <rasd:AddressOnParent>%d</rasd:AddressOnParent>\n        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>\n        <rasd:Connection>%s</rasd:Connection>\n        <rasd:ElementName>Network adapter %d</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceSubType>%s</rasd:ResourceSubType>\n        <rasd:ResourceType>10</rasd:ResourceType>\n      </Item>\n",
			xmlEsc(card.MacAddress), 7+i, xmlEsc(name), i+1, id, ovfNICType(dev))
	}
	hw := vm.Config.Hardware
	cores := int32(1)
	if hw.NumCoresPerSocket != nil && *hw.NumCoresPerSocket > 0 {
		cores = *hw.NumCoresPerSocket
	}
	secure := "false"
	if b := vm.Config.BootOptions; b != nil && b.EfiSecureBootEnabled != nil && *b.EfiSecureBootEnabled {
		secure = "true"
	}
	name := vm.Name
	if cdp.Name != "" {
		name = cdp.Name
	}
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
%s  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
%s  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
%s  </NetworkSection>
  <VirtualSystem ovf:id="%s">
    <Info>A virtual machine</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="1" vmw:osType="%s">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>%s</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>%d virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">%d</vmw:CoresPerSocket>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>%dMB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>
      </Item>
%s      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="%s"/>
      <vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="%s"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, refs.String(), disksec.String(), netsec.String(), xmlEsc(name), xmlEsc(name), xmlEsc(vm.Config.GuestId),
		xmlEsc(name), xmlEsc(vm.Config.Version), hw.NumCPU, hw.NumCPU, cores, hw.MemoryMB, hw.MemoryMB,
		items.String(), xmlEsc(vm.Config.Firmware), secure), nil
}
