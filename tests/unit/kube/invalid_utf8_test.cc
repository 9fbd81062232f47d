// Text from a source that is not UTF-8 (a Latin-1 VM name, a fault cut mid-character) and JSON of
// unexpected shapes reach the Kubernetes client: nothing throws, every body sent is valid UTF-8,
// and a watch stream of bad lines ends in an error, not in an exception through libcurl.

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "core/clock.h"
#include "core/json.h"
#include "core/strings.h"
#include "kube/client.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "unit/http/local_server.h"

namespace vmimport::kube {
namespace {

using core::ErrorCode;
using testing::LocalServer;

const std::string kLatin1Name =
    "vm-\xF1"
    "and\xFA";  // "vm-ñandú" in Latin-1
const Resource kImports{"migration.harvesterhci.io", "v1beta1", "virtualmachineimports", true};

// A server that records every request body and answers each with `reply`.
class RecordingServer {
 public:
  explicit RecordingServer(std::string reply = "{}") : reply_(std::move(reply)) {
    auto record = [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu_);
        bodies_.push_back(req.method + " " + req.path + " " + req.body);
      }
      res.set_content(reply_, "application/json");
    };
    server_.server().Post(".*", record);
    server_.server().Put(".*", record);
    server_.server().Patch(".*", record);
    server_.server().Delete(".*", record);
  }
  std::vector<std::string> Bodies() const {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  std::unique_ptr<Client> NewClient() {
    auto c = Client::Create(Config{.server = server_.Url("")});
    EXPECT_TRUE(c);
    return std::move(*c);
  }
  LocalServer& server() { return server_; }

 private:
  LocalServer server_;
  const std::string reply_;
  mutable std::mutex mu_;  // guards bodies_
  std::vector<std::string> bodies_;
};

TEST(KubeClientUtf8, RequestBodiesReplaceInvalidUtf8InsteadOfThrowing) {
  RecordingServer server;
  auto client = server.NewClient();
  Json status = {{"metadata", {{"name", "imp"}, {"namespace", "default"}}},
                 {"status", {{"importConditions", {{{"message", "fault: " + kLatin1Name}}}}}}};
  EXPECT_TRUE(client->Create({}, kImports, "default", status));
  EXPECT_TRUE(client->Update({}, kImports, "default", status));
  EXPECT_TRUE(client->UpdateStatus({}, kImports, "default", status));
  EXPECT_TRUE(client->MergePatch({}, kImports, "default", "imp", status, "status"));
  EXPECT_TRUE(client->Delete({}, kImports, "default", "imp",
                             DeleteOptions{.precondition_uid = "uid-\xFF"}));
  const auto bodies = server.Bodies();
  ASSERT_EQ(bodies.size(), 5U);
  for (const std::string& b : bodies) {
    EXPECT_TRUE(core::IsValidUtf8(b)) << b;
  }
  EXPECT_NE(bodies[0].find("fault: vm-\xEF\xBF\xBD"
                           "and\xEF\xBF\xBD"),
            std::string::npos)
      << bodies[0];
}

TEST(KubeClientUtf8, ObjectsWithoutAnObjectMetadataDoNotThrow) {
  RecordingServer server;
  auto client = server.NewClient();
  // ObjectName() read metadata.name with value(): a throw on a metadata that is not an object.
  EXPECT_TRUE(client->Update({}, kImports, "default", Json{{"metadata", "oops"}}));
  EXPECT_TRUE(client->Update({}, kImports, "default", Json::array()));
  EXPECT_TRUE(client->Update({}, kImports, "default", Json{{"metadata", {{"name", 3}}}}));
}

TEST(KubeClientUtf8, ApiStatusOfOddShapesAndBytesIsReadSafely) {
  // Every field of the wrong type: value() and get<> threw type_error on each of these.
  auto s = ParseApiStatus(422, R"({"kind":"Status","reason":1,"message":["x"],"code":"422",
               "details":{"causes":[7,{"field":1,"message":"m"}],"retryAfterSeconds":"3"}})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->code, 422);
  EXPECT_EQ(s->reason, "");
  EXPECT_EQ(s->message, "");
  EXPECT_EQ(s->causes, (std::vector<std::string>{": ", ": m"}));
  EXPECT_FALSE(s->retry_after);
  EXPECT_TRUE(ParseApiStatus(500, R"({"kind":3})"));
  EXPECT_TRUE(ParseApiStatus(500, R"({"kind":"Status","details":"x"})"));
  EXPECT_TRUE(ParseApiStatus(500, "[1,2]"));
  // A non-JSON body cut at 512 bytes in the middle of a character, or not UTF-8 at all.
  const std::string long_body = std::string(511, 'x') + "\xC3\xB1 more";
  EXPECT_TRUE(core::IsValidUtf8(ParseApiStatus(502, long_body)->message));
  EXPECT_TRUE(core::IsValidUtf8(ParseApiStatus(502, "<p>" + kLatin1Name + "</p>")->message));
}

TEST(EventRecorderUtf8, EventBodyReplacesInvalidUtf8) {
  RecordingServer server;
  auto client = server.NewClient();
  core::FakeClock clock;
  auto sink = std::make_shared<core::MemorySink>();
  EventRecorder events(*client, "vm-import", clock,
                       core::Logger(sink, core::LogLevel::kDebug, core::LogFormat::kLogfmt));
  const Json object = {{"apiVersion", "migration.harvesterhci.io/v1beta1"},
                       {"kind", "VirtualMachineImport"},
                       {"metadata", {{"name", "imp"}, {"namespace", "default"}, {"uid", "u1"}}}};
  events.Record(object, "Warning", "InvalidSpec", "the target VM name " + kLatin1Name + " is bad");
  events.Record(Json{{"metadata", 5}, {"kind", 1}}, "Normal", "Odd", "object of odd shape");
  ASSERT_TRUE(events.Flush(std::chrono::seconds(5)));  // the recorder writes on its own thread
  const auto bodies = server.Bodies();
  ASSERT_EQ(bodies.size(), 2U);
  EXPECT_TRUE(core::IsValidUtf8(bodies[0])) << bodies[0];
  const auto json = core::ParseJson(bodies[0].substr(bodies[0].find('{')));
  ASSERT_TRUE(json) << bodies[0];
  EXPECT_EQ(core::JsonString(*json, "message"),
            "the target VM name vm-\xEF\xBF\xBD"
            "and\xEF\xBF\xBD is bad");
  EXPECT_NE(bodies[1].find("/namespaces/default/events"), std::string::npos) << bodies[1];
  for (const std::string& line : sink->Lines()) {
    EXPECT_EQ(line.find("cannot record event"), std::string::npos) << line;
  }
}

// A watch stream whose lines are JSON of the wrong shape: each ends the watch with an error.
TEST(KubeWatchUtf8, BadEventLinesEndTheWatchWithAnErrorNotAThrow) {
  for (const std::string& line :
       {std::string(R"({"type":7,"object":{}})"), std::string(R"(["ADDED"])"),
        std::string("{\"type\":\"ADDED\",\"object\":{\"n\":\"" + kLatin1Name + "\"}}"),
        std::string(R"({"type":"ERROR","object":"gone"})"),
        std::string(R"({"type":"ERROR","object":{"code":"410","message":5}})")}) {
    LocalServer server;
    server.server().Get(".*", [&line](const httplib::Request&, httplib::Response& res) {
      res.set_content(line + "\n", "application/json");
    });
    auto client = Client::Create(Config{.server = server.Url("")});
    ASSERT_TRUE(client);
    int events = 0;
    auto st = (*client)->Watch({}, kImports, "default", {}, std::chrono::seconds(5),
                               [&events](const WatchEvent&) {
                                 ++events;
                                 return true;
                               });
    ASSERT_FALSE(st) << line;
    EXPECT_EQ(events, 0) << line;
    EXPECT_EQ(st.error().code, ErrorCode::kInternal) << line << ": " << st.error().ToString();
    // Read as a bad line by the client itself, not caught as a throw at the libcurl boundary.
    EXPECT_EQ(st.error().message.find("callback threw"), std::string::npos) << st.error().message;
  }
}

// A handler that throws (controller code) inside the watch's libcurl callback: the watch ends
// with an error naming the throw; the process lives on.
TEST(KubeWatchUtf8, AHandlerThatThrowsDoesNotUnwindThroughLibcurl) {
  LocalServer server;
  server.server().Get(".*", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})"
                    "\n",
                    "application/json");
  });
  auto client = Client::Create(Config{.server = server.Url("")});
  ASSERT_TRUE(client);
  auto st = (*client)->Watch({}, kImports, "default", {}, std::chrono::seconds(5),
                             [](const WatchEvent& ev) -> bool {
                               (void)ev.object.at("missing");  // throws out_of_range
                               return true;
                             });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kInternal);
  EXPECT_NE(st.error().message.find("callback threw"), std::string::npos) << st.error().message;
}

// Informer handlers are the controller's: one that throws is logged, the informer goes on.
TEST(InformerUtf8, AHandlerThatThrowsIsLoggedAndTheCacheStillFills) {
  LocalServer server;
  server.server().Get(".*", [](const httplib::Request& req, httplib::Response& res) {
    if (req.has_param("watch")) {
      res.status = 200;
      return;  // an empty watch: the server ended it
    }
    res.set_content(R"({"kind":"VirtualMachineImportList","metadata":{"resourceVersion":"5"},
                        "items":[{"metadata":{"name":"a","namespace":"d","resourceVersion":"4"}},
                                 "not an object",
                                 {"metadata":{"name":"b","namespace":"d","resourceVersion":"5"}}]})",
                    "application/json");
  });
  auto client = Client::Create(Config{.server = server.Url("")});
  ASSERT_TRUE(client);
  auto sink = std::make_shared<core::MemorySink>();
  Informer informer(**client, kImports, "",
                    core::Logger(sink, core::LogLevel::kDebug, core::LogFormat::kLogfmt),
                    InformerOptions{.watch_timeout = std::chrono::seconds(1)});
  std::atomic<int> added{0};
  informer.AddHandlers({.on_add = [&added](const Json& o) {
    ++added;
    if (core::JsonString(core::JsonObject(o, "metadata"), "name") == "a") {
      throw std::runtime_error("handler bug");
    }
  }});
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync({}, std::chrono::seconds(10)));
  informer.Stop();
  EXPECT_EQ(added.load(), 2);
  EXPECT_EQ(informer.Size(), 2U);
  bool logged = false;
  for (const std::string& line : sink->Lines()) {
    logged = logged || line.find("informer handler threw") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

}  // namespace
}  // namespace vmimport::kube
