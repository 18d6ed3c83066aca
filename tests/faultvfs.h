/*
 * tests/faultvfs.h - a test-only SQLite VFS that fails the Nth read, write,
 * sync or truncate with an I/O error or "disk full", the way SQLite's own
 * tests inject I/O faults (test/malloc_common.tcl, test_vfs.c).
 *
 * faultvfs_install() wraps the default VFS ("unix") and makes the wrapper
 * the default, so every connection the process opens afterwards (the store
 * opens its own) goes through it. Counting and failing are process-wide and
 * thread-safe (the store writes from its writer thread).
 *
 * Header only: every test is its own program.
 */
#ifndef EDDY_TESTS_FAULTVFS_H
#define EDDY_TESTS_FAULTVFS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include <sqlite3.h>

/* What to fail. */
enum {
    FAULT_READ = 1,
    FAULT_WRITE = 2,
    FAULT_SYNC = 4,
    FAULT_TRUNCATE = 8,
    FAULT_ANY = 15
};

static struct {
    sqlite3_vfs vfs;
    sqlite3_vfs *base;
    atomic_int ops;         /* which operations count (FAULT_*) */
    atomic_long countdown;  /* counted operations left before the fault;
                               0: disarmed (or a one-shot fault fired) */
    atomic_bool persistent; /* keep failing after the first (a full disk) */
    atomic_bool tripped;    /* the fault fired */
    atomic_int code;        /* SQLITE_IOERR or SQLITE_FULL */
    atomic_long failures;   /* faults injected */
} faultvfs;

typedef struct fault_file {
    sqlite3_file base;  /* first: SQLite sees this */
    sqlite3_file *real; /* the wrapped file, allocated right after us */
} fault_file;

/* Arms a fault at the `n`th (n >= 1) operation of kind `ops` from now,
 * failing with `code` (SQLITE_IOERR: an I/O error; SQLITE_FULL: disk full,
 * for writes); `persistent`: every counted operation from then on fails
 * too, until faultvfs_clear(). */
static inline void faultvfs_arm(int ops, long n, int code, bool persistent)
{
    atomic_store(&faultvfs.countdown, 0);
    atomic_store(&faultvfs.tripped, false);
    atomic_store(&faultvfs.ops, ops);
    atomic_store(&faultvfs.code, code);
    atomic_store(&faultvfs.persistent, persistent);
    atomic_store(&faultvfs.failures, 0);
    atomic_store(&faultvfs.countdown, n);
}

static inline void faultvfs_clear(void)
{
    atomic_store(&faultvfs.countdown, 0);
    atomic_store(&faultvfs.tripped, false);
    atomic_store(&faultvfs.persistent, false);
}

/* Whether this operation fails. */
static inline bool fault_hit(int op)
{
    if (!(atomic_load(&faultvfs.ops) & op))
        return false;
    if (atomic_load(&faultvfs.tripped) && atomic_load(&faultvfs.persistent)) {
        atomic_fetch_add(&faultvfs.failures, 1);
        return true;
    }
    if (atomic_load(&faultvfs.countdown) <= 0)
        return false;
    if (atomic_fetch_sub(&faultvfs.countdown, 1) != 1)
        return false;
    atomic_store(&faultvfs.tripped, true);
    atomic_fetch_add(&faultvfs.failures, 1);
    return true;
}

/* The code a failing operation returns: disk full only for writes. */
static inline int fault_code(int io_code)
{
    int c = atomic_load(&faultvfs.code);
    return c == SQLITE_FULL && io_code == SQLITE_IOERR_WRITE ? SQLITE_FULL
                                                            : io_code;
}

#define REAL(f) (((fault_file *)(f))->real)

static int ff_close(sqlite3_file *f)
{
    return REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
}

static int ff_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    if (fault_hit(FAULT_READ))
        return fault_code(SQLITE_IOERR_READ);
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int ff_write(sqlite3_file *f, const void *buf, int n,
                    sqlite3_int64 off)
{
    if (fault_hit(FAULT_WRITE))
        return fault_code(SQLITE_IOERR_WRITE);
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (fault_hit(FAULT_TRUNCATE))
        return fault_code(SQLITE_IOERR_TRUNCATE);
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int ff_sync(sqlite3_file *f, int flags)
{
    if (fault_hit(FAULT_SYNC))
        return fault_code(SQLITE_IOERR_FSYNC);
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

/* The rest pass straight through. */
static int ff_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int ff_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int ff_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int ff_check_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int ff_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int ff_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int ff_caps(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int ff_shm_map(sqlite3_file *f, int pg, int sz, int extend,
                      void volatile **p)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, p);
}
static int ff_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void ff_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int ff_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p)
{
    *p = NULL; /* no memory mapping: every read goes through xRead */
    (void)f;
    (void)off;
    (void)n;
    return SQLITE_OK;
}
static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    (void)f;
    (void)off;
    (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods ff_methods = {
    3,           ff_close,   ff_read,    ff_write,     ff_truncate,
    ff_sync,     ff_size,    ff_lock,    ff_unlock,    ff_check_lock,
    ff_control,  ff_sector,  ff_caps,    ff_shm_map,   ff_shm_lock,
    ff_shm_barrier, ff_shm_unmap, ff_fetch, ff_unfetch,
};

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file,
                   int flags, int *out_flags)
{
    fault_file *ff = (fault_file *)file;
    ff->real = (sqlite3_file *)(ff + 1);
    memset(ff->real, 0, (size_t)faultvfs.base->szOsFile);
    int rc = faultvfs.base->xOpen(faultvfs.base, name, ff->real, flags,
                                  out_flags);
    ff->base.pMethods = rc == SQLITE_OK ? &ff_methods : NULL;
    (void)vfs;
    return rc;
}

static int fv_delete(sqlite3_vfs *v, const char *name, int sync)
{
    (void)v;
    return faultvfs.base->xDelete(faultvfs.base, name, sync);
}
static int fv_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return faultvfs.base->xAccess(faultvfs.base, name, flags, out);
}
static int fv_full(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return faultvfs.base->xFullPathname(faultvfs.base, name, n, out);
}
static int fv_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return faultvfs.base->xRandomness(faultvfs.base, n, out);
}
static int fv_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return faultvfs.base->xSleep(faultvfs.base, us);
}
static int fv_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return faultvfs.base->xCurrentTime(faultvfs.base, out);
}
static int fv_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return faultvfs.base->xGetLastError
               ? faultvfs.base->xGetLastError(faultvfs.base, n, out)
               : 0;
}
static int fv_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return faultvfs.base->xCurrentTimeInt64(faultvfs.base, out);
}

/* Wraps the default VFS and makes the wrapper the default. Returns
 * SQLITE_OK or an SQLite error code. */
static inline int faultvfs_install(void)
{
    faultvfs.base = sqlite3_vfs_find(NULL);
    if (!faultvfs.base)
        return SQLITE_ERROR;
    faultvfs_clear();
    sqlite3_vfs *v = &faultvfs.vfs;
    v->iVersion = 2;
    v->szOsFile = (int)sizeof(fault_file) + faultvfs.base->szOsFile;
    v->mxPathname = faultvfs.base->mxPathname;
    v->zName = "eddy-faults";
    v->xOpen = fv_open;
    v->xDelete = fv_delete;
    v->xAccess = fv_access;
    v->xFullPathname = fv_full;
    v->xRandomness = fv_random;
    v->xSleep = fv_sleep;
    v->xCurrentTime = fv_time;
    v->xGetLastError = fv_last_error;
    v->xCurrentTimeInt64 = fv_time64;
    return sqlite3_vfs_register(v, 1);
}

#endif
