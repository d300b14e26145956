# Workflow graphs: validation (unit) and the recipe graph run end to end on tiny-a (model).
sd35_add_test(test_workflow LABEL unit SOURCES tests/unit/test_workflow.cpp
  tests/unit/test_image_scale.cpp)
target_link_libraries(test_workflow PRIVATE sd35_workflow)
sd35_add_test(test_workflow_run LABEL model SOURCES tests/models/test_workflow_run.cpp
  tests/models/test_workflow_nodes_run.cpp)
target_link_libraries(test_workflow_run PRIVATE sd35_workflow)
# test_workflow_run also runs the real `sd35 generate --workflow`.
add_dependencies(test_workflow_run sd35)
target_compile_definitions(test_workflow_run PRIVATE SD35_EXE="$<TARGET_FILE:sd35>")
# The job queue with fake jobs (no engine, no HTTP).
sd35_add_test(test_job_queue LABEL unit SOURCES tests/unit/test_job_queue.cpp)
