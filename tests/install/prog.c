/* SPDX-License-Identifier: MIT */
/* Built out of tree against an installed libvirtioblk via pkg-config. */
#include <stdio.h>
#include <string.h>

#include <virtioblk/virtioblk.h>

int main(void)
{
    struct vblk_backend be;
    if (vblk_backend_memory_create(1 << 20, &be) < 0)
        return 1;
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1 << 20);
    struct vblk_loopback *lb;
    if (vblk_loopback_create(&p, &be, NULL, &lb) < 0)
        return 1;
    char *buf = vblk_loopback_alloc(lb, 4096);
    strcpy(buf, "installed");
    int w = vblk_loopback_rw(lb, 0, VBLK_T_OUT, 0, buf, 4096);
    memset(buf, 0, 4096);
    int r = vblk_loopback_rw(lb, 0, VBLK_T_IN, 0, buf, 4096);
    int ok = w == VBLK_S_OK && r == VBLK_S_OK && strcmp(buf, "installed") == 0;
    printf("libvirtioblk %s: %s\n", vblk_version(), ok ? "ok" : "FAILED");
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&be);
    return ok ? 0 : 1;
}
