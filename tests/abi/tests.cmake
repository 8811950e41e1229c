# The shared library exports exactly the documented API, under version nodes.
if(TARGET virtioblk)
  add_test(NAME abi_symbols
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/check-symbols.sh ${VBLK_MAP} $<TARGET_FILE:virtioblk>
                   ${VBLK_PUBLIC_HEADERS})
  set_tests_properties(abi_symbols PROPERTIES LABELS unit TIMEOUT 60)
endif()
