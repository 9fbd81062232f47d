#pragma once

// `vm-import-controller writer`: the writer of warm migration (warm/writer.h) as a subcommand of
// the controller's own binary, so the writer Pod runs the controller's image.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace vmimport::app {

struct WriterCommandOptions {
  std::string listen = "127.0.0.1:0";  //!< host:port; port 0: any (printed on stdout)
  //! PATH or PATH:SIZE per disk, in disk order (a block device, or a file made/extended to SIZE)
  std::vector<std::string> disks;
  std::string token_file;  //!< else $VMIMPORT_WRITER_TOKEN
  std::string log_level = "info";
};

//! Adds the subcommand's options to `command`.
void AddWriterOptions(CLI::App& command, WriterCommandOptions& options);
//! Runs the writer until SIGTERM or SIGINT; 0 on a clean stop, 2 on bad options, 1 otherwise.
int RunWriter(const WriterCommandOptions& options);

}  // namespace vmimport::app
