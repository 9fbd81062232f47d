#include "source/vmware/soap.h"

#include <gtest/gtest.h>

namespace vmimport::source::vmware {
namespace {

TEST(SoapFault, ReadsTypeFromXsiTypeOfTheDetail) {
  const std::string body = R"(<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>
  <faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring>
  <detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>)";
  auto f = ParseSoapFault(body);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, "InvalidLogin");
  EXPECT_EQ(f->message, "Login failure");
  EXPECT_EQ(ErrorCodeForFault(f->type), core::ErrorCode::kUnauthenticated);
}

TEST(SoapFault, FallsBackToElementNameAndToGenericFault) {
  const std::string named = R"(<Envelope><Body><Fault><faultstring></faultstring>
    <detail><InvalidPowerStateFault/></detail></Fault></Body></Envelope>)";
  auto f = ParseSoapFault(named);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, "InvalidPowerState");
  EXPECT_EQ(ErrorCodeForFault(f->type), core::ErrorCode::kConflict);
  auto bare = ParseSoapFault(
      "<Envelope><Body><Fault><faultstring>x</faultstring></Fault></Body>"
      "</Envelope>");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->type, "SoapFault");
}

TEST(SoapFault, NoFaultInANormalResponseOrGarbage) {
  EXPECT_FALSE(ParseSoapFault("<Envelope><Body><LoginResponse/></Body></Envelope>"));
  EXPECT_FALSE(ParseSoapFault("not xml <"));
}

TEST(Xml, EscapesAndBuildsMoRefs) {
  EXPECT_EQ(XmlEscape(R"(a<b>&"c'")"), "a&lt;b&gt;&amp;&quot;c&apos;&quot;");
  EXPECT_EQ((MoRef{"VirtualMachine", "vm-4<2"}).Xml("_this"),
            R"(<_this type="VirtualMachine">vm-4&lt;2</_this>)");
}

}  // namespace
}  // namespace vmimport::source::vmware
