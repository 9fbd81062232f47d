#include "core/log.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "core/strings.h"

namespace vmimport::core {
namespace {

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string NowRfc3339Millis() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now - secs).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, millis);
}

// Text from a source may not be UTF-8: each bad byte is written as U+FFFD, so that every line
// stays valid UTF-8 (a JSON log pipeline would reject or drop it).
void AppendJsonString(std::string& out, std::string_view value) {
  out.push_back('"');
  for (size_t pos = 0; pos < value.size();) {
    const size_t length = Utf8SequenceLength(value, pos);
    if (length == 0) {
      out.append("\\ufffd");
      ++pos;
      continue;
    }
    const char c = value[pos];
    if (length > 1) {
      out.append(value.substr(pos, length));
      pos += length;
      continue;
    }
    ++pos;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out.append(fmt::format("\\u{:04x}", static_cast<unsigned>(c)));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace

bool ParseLogLevel(std::string_view text, LogLevel& out) {
  if (text == "debug") {
    out = LogLevel::kDebug;
  } else if (text == "info") {
    out = LogLevel::kInfo;
  } else if (text == "warn" || text == "warning") {
    out = LogLevel::kWarn;
  } else if (text == "error") {
    out = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

bool ParseLogFormat(std::string_view text, LogFormat& out) {
  if (text == "logfmt" || text == "text") {
    out = LogFormat::kLogfmt;
  } else if (text == "json") {
    out = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

Field::Field(std::string_view k, double v) : key(k), value(fmt::format("{:g}", v)), quoted(false) {}

void StderrSink::Write(std::string_view line) {
  std::lock_guard lock(mu_);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

void MemorySink::Write(std::string_view line) {
  std::lock_guard lock(mu_);
  lines_.emplace_back(line);
}

std::vector<std::string> MemorySink::Lines() const {
  std::lock_guard lock(mu_);
  return lines_;
}

void AppendLogfmtValue(std::string& out, std::string_view value) {
  bool needs_quotes = value.empty();
  for (const char c : value) {
    if (c == ' ' || c == '=' || c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      needs_quotes = true;
      break;
    }
  }
  if (!needs_quotes && !IsValidUtf8(value)) {
    needs_quotes = true;  // quoting replaces the bad bytes
  }
  if (!needs_quotes) {
    out.append(value);
    return;
  }
  AppendJsonString(out, value);  // logfmt quoting uses the same escapes as JSON strings
}

Logger::Logger() : Logger(std::make_shared<StderrSink>(), LogLevel::kInfo, LogFormat::kLogfmt) {}

Logger::Logger(std::shared_ptr<LogSink> sink, LogLevel level, LogFormat format)
    : sink_(std::move(sink)), level_(level), format_(format) {}

Logger Logger::With(std::initializer_list<Field> fields) const {
  Logger copy = *this;
  copy.bound_.insert(copy.bound_.end(), fields.begin(), fields.end());
  return copy;
}

void Logger::Debug(std::string_view msg, std::initializer_list<Field> fields) const {
  Log(LogLevel::kDebug, msg, fields);
}
void Logger::Info(std::string_view msg, std::initializer_list<Field> fields) const {
  Log(LogLevel::kInfo, msg, fields);
}
void Logger::Warn(std::string_view msg, std::initializer_list<Field> fields) const {
  Log(LogLevel::kWarn, msg, fields);
}
void Logger::Error(std::string_view msg, std::initializer_list<Field> fields) const {
  Log(LogLevel::kError, msg, fields);
}

void Logger::Log(LogLevel level, std::string_view msg, std::initializer_list<Field> fields) const {
  if (!Enabled(level) || !sink_) {
    return;
  }
  sink_->Write(Format(level, msg, fields));
}

std::string Logger::Format(LogLevel level, std::string_view msg,
                           std::initializer_list<Field> fields) const {
  std::string line;
  line.reserve(128);
  const std::string time = NowRfc3339Millis();
  if (format_ == LogFormat::kJson) {
    line.append("{\"time\":");
    AppendJsonString(line, time);
    line.append(",\"level\":");
    AppendJsonString(line, LevelName(level));
    line.append(",\"msg\":");
    AppendJsonString(line, msg);
    auto add = [&line](const Field& f) {
      line.push_back(',');
      AppendJsonString(line, f.key);
      line.push_back(':');
      if (f.quoted) {
        AppendJsonString(line, f.value);
      } else {
        line.append(f.value);
      }
    };
    for (const Field& f : bound_) {
      add(f);
    }
    for (const Field& f : fields) {
      add(f);
    }
    line.push_back('}');
    return line;
  }
  line.append("time=").append(time).append(" level=").append(LevelName(level)).append(" msg=");
  // msg is always quoted, as logrus does, so that a one-word message still reads as a message.
  AppendJsonString(line, msg);
  auto add = [&line](const Field& f) {
    line.push_back(' ');
    line.append(f.key).push_back('=');
    AppendLogfmtValue(line, f.value);
  };
  for (const Field& f : bound_) {
    add(f);
  }
  for (const Field& f : fields) {
    add(f);
  }
  return line;
}

}  // namespace vmimport::core
