add_test(NAME install COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/check.sh ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
set_tests_properties(install PROPERTIES LABELS install TIMEOUT 300)
