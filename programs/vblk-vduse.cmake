vblk_program(vblk-vduse ${CMAKE_SOURCE_DIR}/programs/vblk-vduse.c)
