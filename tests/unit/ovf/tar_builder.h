#pragma once

// Hand-made tar archives for the ovf tests: ustar headers written byte by byte (not by the code
// under test), GNU long names, pax headers and base-256 sizes, and cut archives.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace vmimport::ovf::testing {

class TarBuilder {
 public:
  //! A regular file; names over 100 bytes need LongName() or Pax() first.
  TarBuilder& File(const std::string& name, const std::string& data, char type = '0') {
    Header(name.substr(0, 99), data.size(), type);
    Data(data);
    return *this;
  }
  //! A GNU 'L' header carrying `name` for the next entry.
  TarBuilder& LongName(const std::string& name) {
    const std::string data = name + '\0';
    Header("././@LongLink", data.size(), 'L');
    Data(data);
    return *this;
  }
  //! A pax 'x' header with these records for the next entry.
  TarBuilder& Pax(const std::vector<std::pair<std::string, std::string>>& records) {
    std::string data;
    for (const auto& [k, v] : records) {
      const std::string body = " " + k + "=" + v + "\n";
      size_t len = body.size() + 1;
      while (std::to_string(len).size() + body.size() != len) {
        ++len;
      }
      data += std::to_string(len) + body;
    }
    Header("PaxHeaders/x", data.size(), 'x');
    Data(data);
    return *this;
  }
  //! A header whose size field is GNU base-256 (for sizes the octal field cannot hold).
  TarBuilder& Base256File(const std::string& name, const std::string& data) {
    Header(name, data.size(), '0', /*base256=*/true);
    Data(data);
    return *this;
  }
  //! A header claiming `size` bytes, with no data after it (for truncation tests).
  TarBuilder& HeaderOnly(const std::string& name, uint64_t size) {
    Header(name, size, '0');
    return *this;
  }
  TarBuilder& End() {
    bytes_.append(1024, '\0');
    return *this;
  }
  TarBuilder& Raw(const std::string& s) {
    bytes_ += s;
    return *this;
  }
  const std::string& str() const { return bytes_; }
  size_t size() const { return bytes_.size(); }

 private:
  void Header(const std::string& name, uint64_t size, char type, bool base256 = false) {
    char h[512] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    if (base256) {
      h[124] = static_cast<char>(0x80);
      for (int i = 0; i < 8; ++i) {
        h[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
      }
    } else {
      std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
    }
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = type;
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : h) {
      sum += static_cast<unsigned char>(c);
    }
    std::snprintf(h + 148, 7, "%06o", sum);
    h[154] = '\0';
    h[155] = ' ';
    bytes_.append(h, 512);
  }
  void Data(const std::string& data) {
    bytes_ += data;
    bytes_.append((512 - data.size() % 512) % 512, '\0');
  }
  std::string bytes_;
};

}  // namespace vmimport::ovf::testing
