#include "imageserver/token.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "core/strings.h"

namespace vmimport::imageserver {

core::Result<std::string> NewToken() {
  std::array<unsigned char, kTokenBytes> bytes{};
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return core::MakeError(core::ErrorCode::kInternal,
                             std::string("getrandom: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  return core::HexEncode(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

bool LooksLikeToken(std::string_view s) {
  if (s.size() != 2 * kTokenBytes) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

}  // namespace vmimport::imageserver
