/*
 * tests/test_disk_full.c - a real full disk: a store on a 2 MiB tmpfs is
 * appended to until the file system is full. The failing append returns an
 * error that says so, nothing acknowledged is lost, the same store handle
 * appends again once space is freed (the tmpfs is grown), and the file
 * passes PRAGMA integrity_check. Needs root (mount); as another user it
 * says it cannot run and fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/eddy-diskfull-test-XXXXXX";
static char mnt[128];
static bool mounted;

static int append_blob(eddy_store *s, int i, char *id_out, eddy_error *err)
{
    char blob[1024];
    memset(blob, 'x', sizeof blob - 1);
    blob[sizeof blob - 1] = '\0';
    eddy_event *ev = eddy_event_newf("disk.filled", "test", "fill", err,
                                     "{s:i, s:s}", "i", i, "blob", blob);
    if (!ev)
        return err->code;
    int rc = eddy_store_append(s, "fill", EDDY_EXPECT_ANY, &ev, 1, NULL, err);
    if (rc == EDDY_OK)
        snprintf(id_out, EDDY_UUID_STRLEN, "%s", eddy_event_id(ev));
    eddy_event_unref(ev);
    return rc;
}

static void test_disk_full(void **state)
{
    (void)state;
    if (geteuid() != 0)
        fail_msg("this test mounts a small tmpfs and needs root");
    snprintf(mnt, sizeof mnt, "%s/small", tmpdir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("eddy-test", mnt, "tmpfs", 0, "size=2m") != 0)
        fail_msg("cannot mount a tmpfs at %s (needs CAP_SYS_ADMIN)", mnt);
    mounted = true;

    char path[256];
    snprintf(path, sizeof path, "%s/s.db", mnt);
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, NULL, &err);
    assert_non_null(s);
    static char ids[8192][EDDY_UUID_STRLEN];
    int acked = 0, rc = EDDY_OK;
    for (int i = 0; i < 8192 && rc == EDDY_OK; i++) {
        err = (eddy_error){0};
        rc = append_blob(s, i, ids[acked], &err);
        if (rc == EDDY_OK)
            acked++;
    }
    assert_int_not_equal(rc, EDDY_OK);
    print_message("  full after %d acknowledged appends: %s: %s\n", acked,
                  eddy_errname(rc), err.message);
    assert_non_null(strstr(err.message, "full"));
    assert_true(acked > 20);

    /* Space comes back: the same handle appends again. */
    assert_int_equal(mount("eddy-test", mnt, "tmpfs", MS_REMOUNT, "size=16m"),
                     0);
    rc = EDDY_EIO;
    for (int tries = 0; tries < 50 && rc != EDDY_OK; tries++) {
        err = (eddy_error){0};
        rc = append_blob(s, 100000 + tries, ids[acked], &err);
        if (rc != EDDY_OK)
            usleep(20000);
    }
    if (rc != EDDY_OK)
        fail_msg("no append after the disk had room again: %s", err.message);
    acked++;
    eddy_store_close(s);

    eddy_store_options ro = {.read_only = true};
    s = eddy_store_open(path, &ro, &err);
    assert_non_null(s);
    int64_t ok = 0, n = 0;
    assert_int_equal(eddy_store_sql_int(s, &ok, &err,
                                        "SELECT count(*) FROM "
                                        "pragma_integrity_check WHERE "
                                        "integrity_check = 'ok'",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(ok, 1);
    for (int i = 0; i < acked; i++) {
        assert_int_equal(eddy_store_sql_int(s, &n, &err,
                                            "SELECT count(*) FROM events "
                                            "WHERE id = $1",
                                            "s", ids[i]),
                         EDDY_OK);
        if (n != 1)
            fail_msg("acknowledged event %d (%s) is lost", i, ids[i]);
    }
    eddy_store_close(s);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (mounted)
        umount2(mnt, MNT_DETACH);
    return eddyt_rmtree(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
