# Consumers of the build (label "install"): a find_package() project against
# an installed tree, an add_subdirectory() project, and a configure with no
# optional package present (see check.sh).
foreach(mode find-package add-subdirectory minimal)
  add_test(NAME consumer_${mode}
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/check.sh ${mode} ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}
            ${CMAKE_C_COMPILER} ${CMAKE_GENERATOR})
  set_tests_properties(consumer_${mode} PROPERTIES LABELS install TIMEOUT 600)
endforeach()
