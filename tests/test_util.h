/*
 * tests/test_util.h - small helpers shared by the test programs (header
 * only: every test is its own program).
 */
#ifndef EDDY_TESTS_TEST_UTIL_H
#define EDDY_TESTS_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

static inline int eddyt_rm_entry(const char *path, const struct stat *sb, int flag,
                          struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes `dir` and everything below it (no shell, no quoting). Returns 0,
 * or -1 with a message on stderr. */
static inline int eddyt_rmtree(const char *dir)
{
    if (nftw(dir, eddyt_rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        perror(dir);
        return -1;
    }
    return 0;
}

/* A cmocka group teardown removing the directory named by a char array. */
#define EDDYT_RMTREE_TEARDOWN(name, dir)                                       \
    static int name(void **state)                                              \
    {                                                                          \
        (void)state;                                                           \
        return eddyt_rmtree(dir);                                              \
    }

#endif
