/* SPDX-License-Identifier: MIT */
/* Fuzz target: a packed virtqueue whose guest memory is the fuzz input. */
#include "fuzz_common.h"
#include "ring_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return ring_fuzz_one(data, size, true);
}
