/* SPDX-License-Identifier: MIT */
/**
 * @file version.h
 * @brief The library's version, on its own so that virtioblk-core users
 *        need not include the whole API.
 */
#ifndef VIRTIOBLK_VERSION_H
#define VIRTIOBLK_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

/** Library version as "MAJOR.MINOR.PATCH". */
const char *vblk_version(void);

#ifdef __cplusplus
}
#endif
#endif
