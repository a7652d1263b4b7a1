# Issue 22 (#8, #18): the manifest rules as Classifier::load applies them, and dnx-classify's user
# errors (validated numbers, no unbounded reads, one line each). Included by tests/CMakeLists.txt.
add_executable(dnx_manifest_rules_tests test_manifest_rules.cpp)
target_link_libraries(dnx_manifest_rules_tests PRIVATE dnx_runtime_objects dnx_tensorrt_objects GTest::gtest GTest::gtest_main)
target_include_directories(dnx_manifest_rules_tests PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_compile_options(dnx_manifest_rules_tests PRIVATE ${DNX_WARNINGS})
target_compile_definitions(dnx_manifest_rules_tests PRIVATE DNX_FIXTURES="${DNX_FIXTURES}")
gtest_discover_tests(dnx_manifest_rules_tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)

if(TARGET dnx-classify)
  set(_model ${DNX_FIXTURES}/fp32.onnx)
  set(_image ${PROJECT_SOURCE_DIR}/../../dnx/assets/photos/chelsea.jpg)
  set(_cases
    "dev-zero-image|${_model}|/dev/zero|IMAGE /dev/zero is not a regular file"
    "folder-image|${_model}|${PROJECT_SOURCE_DIR}|is not a regular file"
    "missing-image|${_model}|/nonexistent.jpg|IMAGE /nonexistent.jpg does not exist"
    "dev-zero-model|/dev/zero|${_image}|MODEL /dev/zero is not a regular file"
    "negative-threads|--threads|-5|${_model}|${_image}|--threads takes an integer from 0 to 1024, got '-5'"
    "top-not-a-number|--top|abc|${_model}|${_image}|--top takes an integer from 1 to 100000, got 'abc'"
    "top-trailing-junk|--top|5x|${_model}|${_image}|--top takes an integer.*got '5x'"
    "top-zero|--top|0|${_model}|${_image}|--top takes an integer.*got '0'"
    "top-above-classes|--top|11|${_model}|${_image}|top_k must be an integer from 1 to 10"
    "threads-overflow|--threads|99999999999|${_model}|${_image}|--threads takes an integer"
    "batch-zero|--bench|--batch|0|${_model}|${_image}|--batch takes an integer from 1 to 4096"
    "duration-nan|--bench|--duration|nan|${_model}|${_image}|--duration takes seconds"
    "value-missing|${_model}|${_image}|--top|--top needs a value"
    "unknown-option|--frobnicate|${_model}|${_image}|unknown option --frobnicate")
  foreach(case IN LISTS _cases)
    string(REPLACE "|" ";" parts "${case}")
    list(GET parts 0 name)
    list(POP_BACK parts regex)
    list(REMOVE_AT parts 0)
    string(REPLACE ";" "|" args "${parts}")
    add_test(NAME cli.${name} COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:dnx-classify> "-DARGS=${args}"
             -DCODE=1 "-DREGEX=${regex}" -P ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.cmake)
    set_tests_properties(cli.${name} PROPERTIES LABELS cli TIMEOUT 60)
  endforeach()
endif()
