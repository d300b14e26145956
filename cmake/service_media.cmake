# Media codecs (PNG/JPEG/WebP encode + decode, base64, data: URLs) and webhook delivery for the
# HTTP server. A library of its own, not engine code: the engine must not depend on libcurl,
# libjpeg, libwebp or OpenSSL, and only the server (and its tests) link these.
find_package(JPEG REQUIRED)      # libjpeg62-turbo-dev
find_package(CURL REQUIRED)      # libcurl4-openssl-dev
find_package(OpenSSL REQUIRED)   # libssl-dev: HMAC-SHA256 for webhook signatures and S3 SigV4
find_package(PkgConfig REQUIRED)
pkg_check_modules(WEBP REQUIRED IMPORTED_TARGET libwebp)  # libwebp-dev ships no CMake config

add_library(sd35_service_media STATIC
  src/service/media/base64.cpp
  src/service/media/image_codec.cpp
  src/service/media/image_decode.cpp
  src/service/media/image_input.cpp
  src/service/media/convert_output.cpp
  src/service/media/http_client.cpp
  src/service/media/s3_sign.cpp
  src/service/media/webhook.cpp
  src/service/media/webhook_events.cpp
)
# sd35_engine brings src/ and include/ on the include path, Status/Tensor and the libpng writer.
target_link_libraries(sd35_service_media PUBLIC sd35_engine nlohmann_json::nlohmann_json
                      Threads::Threads
                      PRIVATE JPEG::JPEG PkgConfig::WEBP CURL::libcurl OpenSSL::Crypto PNG::PNG)

if(SD35_TESTS)
  sd35_add_test(test_service_media LABEL service SOURCES
    tests/service/test_base64.cpp
    tests/service/test_image_codec.cpp
    tests/service/test_convert_output.cpp
  )
  # The tests also write odd files (gray, CMYK, RGBA) with the libraries directly.
  target_link_libraries(test_service_media PRIVATE sd35_service_media JPEG::JPEG PkgConfig::WEBP)
  # Outbound HTTP: webhooks, and the S3 SigV4 signer against the AWS documentation's examples.
  sd35_add_test(test_webhook LABEL service SOURCES
    tests/service/test_webhook.cpp
    tests/service/test_s3_sign.cpp
  )
  target_link_libraries(test_webhook PRIVATE sd35_service_media)
endif()
