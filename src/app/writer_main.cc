#include "app/writer_main.h"

#include <pthread.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "core/log.h"
#include "warm/writer.h"

namespace vmimport::app {

void AddWriterOptions(CLI::App& command, WriterCommandOptions& options) {
  command
      .add_option("--listen", options.listen,
                  "host:port the writer listens on (port 0: any; the port is printed)")
      ->envname("VMIMPORT_WRITER_LISTEN");
  command
      .add_option("--disk", options.disks,
                  "PATH[:SIZE] per disk in disk order: a block device, or a file (made and "
                  "extended to SIZE bytes when shorter)")
      ->required();
  command.add_option("--token-file", options.token_file,
                     "file holding the import's token (default: $VMIMPORT_WRITER_TOKEN)");
  command.add_option("--log-level", options.log_level, "debug|info|warn|error")
      ->envname("VMIMPORT_LOG_LEVEL");
}

int RunWriter(const WriterCommandOptions& options) {
  core::LogLevel level = core::LogLevel::kInfo;
  if (!core::ParseLogLevel(options.log_level, level)) {
    std::cerr << "writer: --log-level: debug, info, warn or error\n";
    return 2;
  }
  core::Logger log(std::make_shared<core::StderrSink>(), level, core::LogFormat::kLogfmt);
  log = log.With({{"component", "writer"}});

  warm::WriterOptions wo;
  if (!options.token_file.empty()) {
    std::ifstream f(options.token_file);
    std::getline(f, wo.token);
  } else if (const char* env = std::getenv("VMIMPORT_WRITER_TOKEN")) {
    wo.token = env;
  }
  for (const std::string& spec : options.disks) {
    warm::WriterTarget t;
    const auto colon = spec.rfind(':');
    t.path = spec;
    if (colon != std::string::npos && colon + 1 < spec.size() &&
        spec.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      t.path = spec.substr(0, colon);
      t.size = std::stoull(spec.substr(colon + 1));
    }
    wo.disks.push_back(std::move(t));
  }
  const auto colon = options.listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "writer: --listen wants host:port\n";
    return 2;
  }
  const std::string host = options.listen.substr(0, colon);
  const int port = std::atoi(options.listen.substr(colon + 1).c_str());
  if (port < 0 || port > 65535) {
    std::cerr << "writer: --listen: port out of range\n";
    return 2;
  }
  auto writer = warm::Writer::Open(std::move(wo), log);
  if (!writer) {
    log.Error("writer cannot start", {{"error", writer.error().ToString()}});
    return writer.error().code == core::ErrorCode::kInvalidArgument ? 2 : 1;
  }

  // SIGTERM/SIGINT stop the server: blocked here, waited for on a thread of their own.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::atomic<uint16_t> bound{0};
  std::atomic<bool> finished{false};
  core::Status served = core::Ok();  // written by the server thread, read after its join
  std::jthread server([&](std::stop_token stop) {
    served = warm::ServeWriter(stop, **writer, host, static_cast<uint16_t>(port), bound, log);
    finished = true;
  });
  while (bound.load() == 0 && !finished.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (bound.load() != 0) {
    std::cout << "listening " << host << ":" << bound.load() << std::endl;
    log.Info("writer listening", {{"address", host + ":" + std::to_string(bound.load())},
                                  {"disks", static_cast<uint64_t>(options.disks.size())}});
    int sig = 0;
    sigwait(&signals, &sig);
    log.Info("writer stopping", {{"signal", sig}});
  }
  server.request_stop();
  server.join();
  if (!served) {
    log.Error("writer failed", {{"error", served.error().ToString()}});
    return 1;
  }
  log.Info("writer stopped",
           {{"last_round", (*writer)->LastCommittedRound()}, {"bytes", (*writer)->BytesWritten()}});
  return 0;
}

}  // namespace vmimport::app
