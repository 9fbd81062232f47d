#include <gtest/gtest.h>

#include "http/client.h"

int main(int argc, char** argv) {
  vmimport::http::GlobalInit();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
