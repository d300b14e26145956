# Server: helpers, workflow templates and the OpenAPI document without sockets (unit), and
# black-box HTTP tests that start the real `sd35-server --demo` on a loopback port (Python 3
# standard library only; the /docs test also drives headless Chromium).
sd35_add_test(test_server_units LABEL unit SOURCES tests/server/test_server_units.cpp
                                               tests/server/test_server_templates.cpp
                                               tests/server/test_server_outputs.cpp
                                               tests/server/test_server_upload_options.cpp)
target_link_libraries(test_server_units PRIVATE sd35_server)
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  # One black-box script: starts the real sd35-server (the path is its argument).
  function(sd35_add_server_test name script)
    add_test(NAME ${name}
             COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/server/${script}
                     $<TARGET_FILE:sd35-server>)
    set_tests_properties(${name} PROPERTIES LABELS server TIMEOUT 240)
  endfunction()
  # Probes, /prompt, the txt2img route, queue, interrupt, API key, drain, warm-up.
  sd35_add_server_test(server_http test_server_http.py)
  # convert_output and webhooks; signatures checked with the npm standardwebhooks package
  # (node + node_modules from scripts/setup.sh; a missing node fails the test).
  sd35_add_server_test(server_async test_server_async.py)
  # Input images (base64, data: and http(s) URLs, INPUT_DIR), the newer graph nodes, stats.
  sd35_add_server_test(server_inputs test_server_inputs.py)
  # Storage uploads (http_upload, s3 with SigV4 checked in Python) against a loopback store.
  sd35_add_server_test(server_uploads test_server_uploads.py)
  # Templates, WORKFLOW_DIR, /docs/json, /docs rendered in headless Chromium.
  sd35_add_server_test(server_docs test_server_docs.py)
endif()
