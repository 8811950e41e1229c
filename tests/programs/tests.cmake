# Command-line behaviour of the programs (label "unit": no guest needed).
if(TARGET vblk-vhost-user)
  add_test(NAME vhost_user_cli
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/vhost-user-cli.sh $<TARGET_FILE:vblk-vhost-user>)
  set_tests_properties(vhost_user_cli PROPERTIES LABELS unit TIMEOUT 120)
endif()
