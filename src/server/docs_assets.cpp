#include "server/docs_assets.h"

#include <cstdint>
#include <cstdio>
#include <map>

#include "server/embedded.h"

namespace sd35::server {

namespace {

std::string content_type_for(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

// FNV-1a: a content hash for ETags (not security relevant).
std::string etag_of(std::string_view data) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

const std::map<std::string, DocsAsset, std::less<>>& assets() {
  static const auto table = [] {
    std::map<std::string, DocsAsset, std::less<>> m;
    for (const auto& f : docs_asset_files()) {
      DocsAsset a;
      a.body = f.data;
      a.content_type = content_type_for(f.name);
      // The page is tiny and names the other files: revalidate it every time. The files only
      // change with the binary; a day of caching, then the ETag answers 304.
      a.cache_control = f.name == "index.html" ? "no-cache" : "public, max-age=86400";
      a.etag = etag_of(f.data);
      m.emplace(std::string(f.name), std::move(a));
    }
    return m;
  }();
  return table;
}

}  // namespace

const DocsAsset* find_docs_asset(std::string_view path) {
  std::string_view name;
  if (path == "/docs" || path == "/docs/" || path == "/docs/index.html") {
    name = "index.html";
  } else if (path.rfind("/docs/static/", 0) == 0) {
    name = path.substr(13);
    if (name == "index.html") return nullptr;  // one address for the page
  } else {
    return nullptr;
  }
  auto it = assets().find(name);
  return it == assets().end() ? nullptr : &it->second;
}

bool etag_matches(std::string_view header, std::string_view etag) {
  if (header.empty()) return false;
  if (header == "*") return true;
  // A comma-separated list; weak validators (W/"…") match too for GET (RFC 9110 13.1.2).
  size_t pos = 0;
  while (pos <= header.size()) {
    size_t end = header.find(',', pos);
    if (end == std::string_view::npos) end = header.size();
    std::string_view item = header.substr(pos, end - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.rfind("W/", 0) == 0) item.remove_prefix(2);
    if (item == etag) return true;
    pos = end + 1;
  }
  return false;
}

}  // namespace sd35::server
