# The raw ring writer (ring_writer.h), shared by the unit tests and the
# fuzzers. Included by tests/support/CMakeLists.txt and fuzz/CMakeLists.txt,
# which may need a copy built with their own instrumentation.
set(VBLK_RING_WRITER_SRC ${CMAKE_CURRENT_LIST_DIR}/ring_writer.c)
set(VBLK_TEST_SUPPORT_DIR ${CMAKE_CURRENT_LIST_DIR})

# Creates the static library @name from the ring writer's sources.
function(vblk_ring_writer_library name)
  add_library(${name} STATIC ${VBLK_RING_WRITER_SRC})
  target_include_directories(${name} PUBLIC ${VBLK_TEST_SUPPORT_DIR} ${PROJECT_SOURCE_DIR}/include)
endfunction()
