#pragma once

// Paths of this build for the tests: the source tree, the binaries under test, the disk corpus.
// Each test target defines the ones it uses in a file generated for it (vmimport_build_paths in
// cmake/BuildPaths.cmake), so that nothing else it compiles depends on where the clone lives; a
// target calling one it did not name fails to link. Every function returns a string that lives
// as long as the program; none fails; any thread.

namespace vmimport::build_paths {

const char* SourceDir();           //!< the source tree (PROJECT_SOURCE_DIR)
const char* ControllerBinary();    //!< vm-import-controller
const char* HarvesterSimBinary();  //!< harvester-sim
const char* CliBinary();           //!< kubectl-vmimport
const char* DiskCorpus();          //!< tools/make-disk-corpus.sh's output folder

}  // namespace vmimport::build_paths
