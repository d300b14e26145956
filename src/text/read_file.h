// Reads a whole tokenizer data file; errors name the path. Internal to src/text.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "sd35/status.h"

namespace sd35::text {

inline Result<std::string> read_data_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return not_found("cannot open tokenizer file " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return io_error("cannot read tokenizer file " + path);
  return ss.str();
}

}  // namespace sd35::text
