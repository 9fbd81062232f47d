#include <gtest/gtest.h>

#include "http/client.h"
#include "http/local_server.h"

int main(int argc, char** argv) {
  vmimport::http::GlobalInit();
  vmimport::testing::InitHttplibStaticsForTsan();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
