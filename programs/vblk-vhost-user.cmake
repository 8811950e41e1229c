vblk_program(vblk-vhost-user ${PROJECT_SOURCE_DIR}/programs/vblk-vhost-user.c ${PROJECT_SOURCE_DIR}/programs/cli.c)
