/* SPDX-License-Identifier: MIT */
/* Counts the process's open file descriptors, so that a test can check that
 * what it ran leaked none. Include after cmocka.h. */
#ifndef VBLK_TEST_FD_COUNT_H
#define VBLK_TEST_FD_COUNT_H

#include <dirent.h>

static inline int count_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    int n = 0;
    while (readdir(dir))
        n++;
    closedir(dir);
    return n;
}

#endif
