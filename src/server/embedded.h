// Files compiled into sd35-server at build time (cmake/embed.cmake): the built-in workflow
// templates (src/server/workflows) and the /docs page (our index.html plus the Swagger UI files
// of the npm package swagger-ui-dist). A deployed binary needs neither the source tree nor
// node_modules.
#pragma once

#include <span>
#include <string_view>

namespace sd35::server {

struct EmbeddedFile {
  std::string_view name;  // path relative to the embedded folder, e.g. "sd3.5-medium/txt2img.json"
  std::string_view data;
};

// Generated sources (build/embedded/*.cpp).
std::span<const EmbeddedFile> builtin_workflow_files();
std::span<const EmbeddedFile> docs_asset_files();

}  // namespace sd35::server
