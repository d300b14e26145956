// The files of GET /docs: our index.html and sd35-docs.js, and Swagger UI's CSS, bundle and
// favicons from the npm package swagger-ui-dist, all compiled into the binary
// (cmake/embed.cmake), with their Content-Type and caching headers.
#pragma once

#include <string>
#include <string_view>

namespace sd35::server {

struct DocsAsset {
  std::string_view body;
  std::string content_type;
  std::string cache_control;
  std::string etag;  // quoted, strong: a hash of the body
};

// The asset for a request path: "/docs", "/docs/" and "/docs/index.html" give the page,
// "/docs/static/<file>" the files it loads. nullptr for anything else.
const DocsAsset* find_docs_asset(std::string_view path);

// Whether an If-None-Match header value matches `etag` ("*" or a list containing it).
bool etag_matches(std::string_view if_none_match, std::string_view etag);

}  // namespace sd35::server
