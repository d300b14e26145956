# sd35-server: the HTTP server (Boost.Beast/Asio, header-only from Debian's libboost-dev).
# Kept out of sd35_engine so the engine library stays free of HTTP.
find_package(Boost 1.74 REQUIRED)
include(cmake/embed.cmake)
set(SD35_SERVER_SOURCES
  src/server/util.cpp
  src/server/log.cpp
  src/server/config.cpp
  src/server/http_server.cpp
  src/server/templates.cpp
  src/server/workflow_registry.cpp
  src/server/txt2img.cpp
  src/server/openapi.cpp
  src/server/docs_assets.cpp
  src/server/api.cpp
  src/server/api_jobs.cpp
  src/server/outputs.cpp
  src/server/uploads.cpp
)
add_library(sd35_server STATIC ${SD35_SERVER_SOURCES})
target_link_libraries(sd35_server PUBLIC sd35_engine sd35_workflow sd35_service_media Boost::headers CLI11::CLI11 Threads::Threads)
target_compile_definitions(sd35_server PUBLIC
  SD35_VERSION="${PROJECT_VERSION}"
  # --demo's tiny model, found in the source tree unless SD35_DEMO_MODEL says otherwise.
  SD35_DEMO_MODEL_DIR="${CMAKE_SOURCE_DIR}/tests/data/tiny-a"
  BOOST_ASIO_NO_DEPRECATED)

# The built-in workflow templates (src/server/workflows) and the /docs page are compiled in.
set(SD35_WORKFLOWS_DIR ${CMAKE_SOURCE_DIR}/src/server/workflows)
sd35_embed_files(sd35_server builtin_workflow_files BASE ${SD35_WORKFLOWS_DIR} FILES
  ${SD35_WORKFLOWS_DIR}/sd3.5-medium/txt2img.json
  ${SD35_WORKFLOWS_DIR}/sd3.5-medium/img2img.json
  ${SD35_WORKFLOWS_DIR}/sd3.5-medium/txt2img-advanced.json
)
# Swagger UI comes from the npm package swagger-ui-dist, pinned in package-lock.json and
# installed into node_modules by scripts/setup.sh (npm ci) before CMake runs.
set(SD35_SWAGGER_UI_DIR ${CMAKE_SOURCE_DIR}/node_modules/swagger-ui-dist)
if(NOT EXISTS ${SD35_SWAGGER_UI_DIR}/swagger-ui-bundle.js)
  message(FATAL_ERROR
    "sd35-server serves Swagger UI at /docs from the npm package swagger-ui-dist, but "
    "${SD35_SWAGGER_UI_DIR}/swagger-ui-bundle.js does not exist. Install the npm packages "
    "first: `npm ci --ignore-scripts` in ${CMAKE_SOURCE_DIR} (scripts/setup.sh does it).")
endif()
sd35_embed_files(sd35_server docs_asset_files BASE ${SD35_SWAGGER_UI_DIR} FILES
  ${CMAKE_SOURCE_DIR}/src/server/docs/index.html
  ${CMAKE_SOURCE_DIR}/src/server/docs/sd35-docs.js
  ${SD35_SWAGGER_UI_DIR}/swagger-ui.css
  ${SD35_SWAGGER_UI_DIR}/swagger-ui-bundle.js
  ${SD35_SWAGGER_UI_DIR}/favicon-32x32.png
  ${SD35_SWAGGER_UI_DIR}/favicon-16x16.png
)

add_executable(sd35-server src/server/main.cpp)
target_link_libraries(sd35-server PRIVATE sd35_server)
