vblk_program(vblk-vduse ${PROJECT_SOURCE_DIR}/programs/vblk-vduse.c ${PROJECT_SOURCE_DIR}/programs/cli.c)
