#pragma once

// Structured logging: constant lowercase messages, data in key=value fields.
//   time=2026-11-24T05:46:25.123Z level=info msg="disk stream finished" import=default/web-1
//   bytes=42
// Fields are bound once with With() and carried by the returned Logger. Loggers are cheap values;
// all of them share one thread-safe sink. Never log Secret data, tokens or credentialed URLs.

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmimport::core {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kLogfmt, kJson };

//! Parses "debug", "info", "warn"/"warning", "error"; false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel& out);
bool ParseLogFormat(std::string_view text, LogFormat& out);

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  template <std::integral T>
  Field(std::string_view k, T v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, double v);

  std::string key;
  std::string value;
  bool quoted = true;  // JSON: emit as a string; false for numbers and booleans
};

//! Where formatted lines go. Implementations are thread-safe.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Write(std::string_view line) = 0;
};

class StderrSink final : public LogSink {
 public:
  // core::LogSink
  void Write(std::string_view line) override;

 private:
  std::mutex mu_;  // serialises writes so lines never interleave
};

//! Keeps every line in memory; for tests.
class MemorySink final : public LogSink {
 public:
  // core::LogSink
  void Write(std::string_view line) override;
  std::vector<std::string> Lines() const;

 private:
  mutable std::mutex mu_;  // guards lines_
  std::vector<std::string> lines_;
};

class Logger {
 public:
  //! A logger writing to stderr at info level in logfmt.
  Logger();
  Logger(std::shared_ptr<LogSink> sink, LogLevel level, LogFormat format);

  //! A logger that adds `fields` to every line, after the ones already bound.
  Logger With(std::initializer_list<Field> fields) const;

  void Debug(std::string_view msg, std::initializer_list<Field> fields = {}) const;
  void Info(std::string_view msg, std::initializer_list<Field> fields = {}) const;
  void Warn(std::string_view msg, std::initializer_list<Field> fields = {}) const;
  void Error(std::string_view msg, std::initializer_list<Field> fields = {}) const;
  void Log(LogLevel level, std::string_view msg, std::initializer_list<Field> fields) const;

  bool Enabled(LogLevel level) const { return level >= level_; }

  //! Formats one line without writing it (used by Log; public for tests).
  std::string Format(LogLevel level, std::string_view msg,
                     std::initializer_list<Field> fields) const;

 private:
  std::shared_ptr<LogSink> sink_;
  LogLevel level_ = LogLevel::kInfo;
  LogFormat format_ = LogFormat::kLogfmt;
  std::vector<Field> bound_;
};

//! Appends `value` to `out` in logfmt form: bare when safe, otherwise quoted and escaped.
void AppendLogfmtValue(std::string& out, std::string_view value);

}  // namespace vmimport::core
