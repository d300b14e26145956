# Server: helpers, workflow templates and the OpenAPI document without sockets (unit), and
# black-box HTTP tests that start the real `sd35-server --demo` on a loopback port (Python 3
# standard library only; the /docs test also drives headless Chromium).
sd35_add_test(test_server_units LABEL unit SOURCES tests/server/test_server_units.cpp
                                               tests/server/test_server_templates.cpp
                                               tests/server/test_server_outputs.cpp)
target_link_libraries(test_server_units PRIVATE sd35_server)
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME server_http
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/server/test_server_http.py
                   $<TARGET_FILE:sd35-server>)
  set_tests_properties(server_http PROPERTIES LABELS server TIMEOUT 180)
  # convert_output and webhooks; signatures checked with the npm standardwebhooks package
  # (node + node_modules from scripts/setup.sh; a missing node fails the test).
  add_test(NAME server_async
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/server/test_server_async.py
                   $<TARGET_FILE:sd35-server>)
  set_tests_properties(server_async PROPERTIES LABELS server TIMEOUT 240)
  # Input images (base64, data: and http(s) URLs, INPUT_DIR), the newer graph nodes, stats.
  add_test(NAME server_inputs
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/server/test_server_inputs.py
                   $<TARGET_FILE:sd35-server>)
  set_tests_properties(server_inputs PROPERTIES LABELS server TIMEOUT 240)
  add_test(NAME server_docs
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/server/test_server_docs.py
                   $<TARGET_FILE:sd35-server>)
  set_tests_properties(server_docs PROPERTIES LABELS server TIMEOUT 240)
endif()
