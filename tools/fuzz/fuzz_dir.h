/* fuzz_dir.h - the scratch directory every libFuzzer target works in:
 * made under $SHMX_FUZZ_TMP (default /tmp) at initialisation, and removed,
 * with the one region file a target keeps there, at exit. */
#ifndef SHMX_FUZZ_DIR_H
#define SHMX_FUZZ_DIR_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char g_dir[256];
static char g_path[320]; /* g_dir/<file> */

static void fuzz_dir_cleanup(void)
{
    if (g_path[0]) unlink(g_path);
    if (g_dir[0]) rmdir(g_dir);
}

/* Make the directory and name the file in it that is removed at exit. */
static void fuzz_dir_init(const char *file)
{
    const char *base = getenv("SHMX_FUZZ_TMP");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/shmxfuzz-XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, file);
    atexit(fuzz_dir_cleanup);
}

#endif /* SHMX_FUZZ_DIR_H */
