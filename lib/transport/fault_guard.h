/* SPDX-License-Identifier: MIT */
/* Containment of page faults in mappings of a peer's files (vhost-user
 * guest memory, dirty log and in-flight region; VDUSE IOTLB entries).
 * Shared by the transports. Not installed.
 *
 * A file the peer shares can stop backing the mapping at any time: it is
 * truncated, its hugetlb pool is empty, its filesystem is full under a
 * hole, the VDUSE device is deleted. The next access raises SIGBUS, which
 * by default kills the whole process. The transports register every such
 * mapping here, with the device that owns it. A process-wide SIGBUS
 * handler looks the faulting address up; if it lies in a registered
 * mapping it maps anonymous memory over the faulting page, so the access
 * completes (reads see zeroes, writes go nowhere), and counts the fault on
 * the owner. The transport checks the owner's count where it already
 * synchronises (after a queue run, after a message) and breaks that device.
 * A fault anywhere else goes to the previous handler, or kills the process
 * as before.
 *
 * Nothing here runs on the datapath: registration happens when a mapping
 * is made or removed, and the check is one relaxed atomic load. The core
 * (lib/core) knows nothing of it. */
#ifndef VBLK_FAULT_GUARD_H
#define VBLK_FAULT_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#pragma GCC visibility push(hidden)

/* Whatever owns a set of guarded mappings (one device). */
struct fault_owner {
    atomic_uint faults; /* faults contained in its mappings */
};

/* How many mappings can be guarded at once, process-wide. */
#define FAULT_GUARD_SLOTS 4096u

/* Installs the SIGBUS handler once per process (later calls do nothing).
 * Returns 0 or a negative errno from sigaction(). */
int fault_guard_install(void);

/* Guards [@addr, @addr + @len), which must be a whole mapping made with
 * mmap() and aligned to @page, the size of the pages backing it (a huge
 * page size for hugetlbfs), on behalf of @o. Installs the handler first if
 * needed. Returns 0, or -ENOSPC if every slot is taken (the caller then
 * unmaps: no mapping of a peer's file goes unguarded). */
int fault_guard_add(struct fault_owner *o, void *addr, size_t len, size_t page);

/* Stops guarding the mapping at @addr; call it before munmap(). Does
 * nothing for an address that was never added. */
void fault_guard_remove(void *addr);

/* Faults contained in @o's mappings so far. */
static inline unsigned fault_owner_count(const struct fault_owner *o)
{
    return atomic_load_explicit(&o->faults, memory_order_relaxed);
}

/* Faults contained in the whole process so far. */
unsigned long fault_guard_total(void);

#pragma GCC visibility pop

#endif
