// One JSON object per line on stdout (SPEC-api.md §5): {"time","level","msg",...fields}.
// Lines are written whole under a lock so concurrent requests never interleave.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sd35::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn"/"warning", "error" (pino's "trace" counts as debug, "fatal" as
// error). False for anything else.
bool parse_log_level(std::string_view name, LogLevel* out);

class Logger {
 public:
  void set_level(LogLevel level) { level_ = level; }
  bool enabled(LogLevel level) const { return level >= level_; }
  // `fields` (an object or null) are merged after time, level and msg.
  void log(LogLevel level, std::string_view msg, const nlohmann::json& fields = nullptr) const;
  void debug(std::string_view m, const nlohmann::json& f = nullptr) const {
    log(LogLevel::kDebug, m, f);
  }
  void info(std::string_view m, const nlohmann::json& f = nullptr) const {
    log(LogLevel::kInfo, m, f);
  }
  void warn(std::string_view m, const nlohmann::json& f = nullptr) const {
    log(LogLevel::kWarn, m, f);
  }
  void error(std::string_view m, const nlohmann::json& f = nullptr) const {
    log(LogLevel::kError, m, f);
  }

 private:
  LogLevel level_ = LogLevel::kInfo;
};

}  // namespace sd35::server
