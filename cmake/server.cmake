# sd35-server: the HTTP server (Boost.Beast/Asio, header-only from Debian's libboost-dev).
# Kept out of sd35_engine so the engine library stays free of HTTP.
find_package(Boost 1.74 REQUIRED)
set(SD35_SERVER_SOURCES
  src/server/util.cpp
  src/server/log.cpp
  src/server/config.cpp
  src/server/http_server.cpp
  src/server/txt2img.cpp
  src/server/api.cpp
  src/server/api_jobs.cpp
)
add_library(sd35_server STATIC ${SD35_SERVER_SOURCES})
target_link_libraries(sd35_server PUBLIC sd35_engine sd35_workflow sd35_service_media Boost::headers CLI11::CLI11 Threads::Threads)
target_compile_definitions(sd35_server PUBLIC
  SD35_VERSION="${PROJECT_VERSION}"
  # --demo's tiny model, found in the source tree unless SD35_DEMO_MODEL says otherwise.
  SD35_DEMO_MODEL_DIR="${CMAKE_SOURCE_DIR}/tests/data/tiny-a"
  BOOST_ASIO_NO_DEPRECATED)
add_executable(sd35-server src/server/main.cpp)
target_link_libraries(sd35-server PRIVATE sd35_server)
