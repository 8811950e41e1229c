add_test(NAME core_freestanding COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/check.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(core_freestanding PROPERTIES LABELS unit TIMEOUT 120)
