#include "source/vmware/soap.h"

#include <gtest/gtest.h>

#include "core/strings.h"
#include "source/vmware/session.h"

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

// A fault whose text is not UTF-8 (a VM name in Latin-1 echoed by the server, a message cut
// mid-character): every field is replaced where bad, so the error reaches status safely.
TEST(SoapFault, InvalidUtf8InTheFaultIsReplaced) {
  const std::string body =
      "<Envelope><Body><Fault><faultstring>vm-\xF1"
      "and\xFA not found \xC3</faultstring>"
      "<detail><ManagedObjectNotFoundFault><obj type=\"VirtualMachine\">vm-\xFF</obj>"
      "</ManagedObjectNotFoundFault></detail></Fault></Body></Envelope>";
  auto f = ParseSoapFault(body);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, "ManagedObjectNotFound");
  EXPECT_EQ(f->message,
            "vm-\xEF\xBF\xBD"
            "and\xEF\xBF\xBD not found \xEF\xBF\xBD");
  const core::Error e = FaultError("vsphere RetrieveProperties", *f);
  EXPECT_EQ(e.code, core::ErrorCode::kNotFound);
  EXPECT_TRUE(core::IsValidUtf8(e.message)) << e.message;
  EXPECT_NE(e.message.find("VirtualMachine vm-\xEF\xBF\xBD no longer exists"), std::string::npos)
      << e.message;
  auto bare = ParseSoapFault(
      "<Envelope><Body><Fault><faultstring>\xE2\x82</faultstring>"
      "</Fault></Body></Envelope>");
  ASSERT_TRUE(bare);
  EXPECT_TRUE(core::IsValidUtf8(bare->message)) << bare->message;
}

// The issue's "a Secret without a password says InvalidSpec without naming the Secret": the
// message names it when the config says which (and keeps the words operators grep for).
TEST(LoginInputs, AMissingPasswordNamesTheSecret) {
  SourceConfig config;
  config.endpoint = "https://vc.example/sdk";
  config.secret = {{"username", "administrator@vsphere.local"}};
  config.secret_key = "default/vc-creds";
  auto st = CheckLoginInputs(config);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().message,
            "the secret has no password (secret default/vc-creds must hold username and password)");
  config.secret_key.clear();
  EXPECT_EQ(CheckLoginInputs(config).error().message,
            "the secret has no password (it must hold username and password)");
  config.secret["password"] = "";  // an empty password is a password
  EXPECT_TRUE(CheckLoginInputs(config));
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
