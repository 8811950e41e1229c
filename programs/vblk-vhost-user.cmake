vblk_program(vblk-vhost-user ${CMAKE_SOURCE_DIR}/programs/vblk-vhost-user.c)
