/*
 * tests/test_store_file.c - the SQLite store as a file: after a clean close
 * the .db alone is the whole store; a store on read-only media (a read-only
 * mount, a folder the process may not write) is readable; eddy_store_backup
 * copies a store in use consistently and never overwrites.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "eddy/eddy.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/eddy-file-test-XXXXXX";

static int setup_table(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err,
                         "CREATE TABLE IF NOT EXISTS t(k TEXT PRIMARY KEY)",
                         NULL);
}

static int insert_rows(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    return eddy_txn_exec(txn, NULL, err,
                         "INSERT INTO t(k) VALUES('a'), ('b')", NULL);
}

static eddy_store *append_some(const char *path, int n)
{
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, NULL, &err);
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        eddy_event *ev = eddy_event_newf("t.happened", "test", "s-1", &err,
                                         "{s:i}", "i", i);
        assert_non_null(ev);
        assert_int_equal(eddy_store_append(s, "s-1", EDDY_EXPECT_ANY, &ev, 1,
                                           NULL, &err),
                         EDDY_OK);
        eddy_event_unref(ev);
    }
    return s;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* After a clean close, the .db alone is the whole store. */
static void test_close_leaves_a_complete_file(void **state)
{
    (void)state;
    char path[256], wal[300], copy[300];
    snprintf(path, sizeof path, "%s/closed.db", tmpdir);
    eddy_store *s = append_some(path, 25);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    eddy_store_close(s);
    snprintf(wal, sizeof wal, "%s-wal", path);
    assert_false(exists(wal));

    /* Copy only the main file and read everything from the copy. */
    snprintf(copy, sizeof copy, "%s/copy.db", tmpdir);
    FILE *in = fopen(path, "rb"), *out = fopen(copy, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, k, out), k);
    fclose(in);
    fclose(out);
    eddy_store_options ro = {.read_only = true};
    s = eddy_store_open(copy, &ro, &err);
    assert_non_null(s);
    int64_t head = 0;
    assert_int_equal(eddy_store_head(s, &head, &err), EDDY_OK);
    assert_int_equal(head, 25);
    eddy_store_close(s);
}

/* Reads everything from the store at `path` opened read-only; writes must
 * fail. Returns 0, or 1 with a message on stderr (it may run in a child). */
static int read_only_checks(const char *path)
{
    eddy_store_options ro = {.read_only = true};
    eddy_error err = {0};
    eddy_store *s = eddy_store_open(path, &ro, &err);
    if (!s) {
        fprintf(stderr, "open on read-only media: %s\n", err.message);
        return 1;
    }
    int64_t head = 0, n = 0;
    int bad = eddy_store_head(s, &head, &err) != EDDY_OK || head != 10;
    bad |= eddy_store_sql_int(s, &n, &err, "SELECT count(*) FROM t", NULL) !=
               EDDY_OK ||
           n != 2;
    eddy_cursor *c = NULL;
    int count = 0, rc = eddy_store_read_all(s, 0, 0, &c, &err);
    eddy_record rec;
    if (rc == EDDY_OK) {
        while (eddy_cursor_next(c, &rec, &err))
            count++;
        rc = eddy_cursor_error(c);
    }
    bad |= rc != 0 || count != 10;
    eddy_cursor_free(c);
    eddy_error werr = {0};
    bad |= eddy_store_transact(s, setup_table, NULL, &werr) != EDDY_ESTATE;
    if (bad)
        fprintf(stderr, "read-only checks failed: head %lld, rows %lld, "
                "events %d, last error: %s\n", (long long)head,
                (long long)n, count, err.message);
    eddy_store_close(s);
    return bad;
}

/*
 * A store on media this process cannot write: a read-only bind mount when
 * we may mount (root with CAP_SYS_ADMIN); and a folder without write
 * permission, read by a non-root process (root ignores file modes): this
 * process when it is not root, else a child that drops to user nobody.
 */
static void test_read_only_media(void **state)
{
    (void)state;
    char src[256], mnt[256], path[300];
    snprintf(src, sizeof src, "%s/ro-src", tmpdir);
    snprintf(mnt, sizeof mnt, "%s/ro-mnt", tmpdir);
    assert_int_equal(mkdir(src, 0755), 0);
    assert_int_equal(mkdir(mnt, 0755), 0);
    snprintf(path, sizeof path, "%s/s.db", src);
    eddy_store *s = append_some(path, 10);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, insert_rows, NULL, &err), EDDY_OK);
    eddy_store_close(s);

    bool mounted = false;
    if (geteuid() == 0 && mount(src, mnt, NULL, MS_BIND, NULL) == 0) {
        mounted = mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY,
                        NULL) == 0;
        if (!mounted)
            umount(mnt);
    }
    if (mounted) {
        snprintf(path, sizeof path, "%s/s.db", mnt);
        char probe[320];
        snprintf(probe, sizeof probe, "%s.probe", path);
        FILE *f = fopen(probe, "w"); /* really not writable? */
        int bad = f != NULL || read_only_checks(path) != 0;
        if (f)
            fclose(f);
        assert_int_equal(umount(mnt), 0);
        assert_int_equal(bad, 0);
        snprintf(path, sizeof path, "%s/s.db", src);
    }
    assert_int_equal(chmod(tmpdir, 0755), 0);
    assert_int_equal(chmod(src, 0555), 0);
    if (geteuid() != 0) {
        assert_int_equal(read_only_checks(path), 0);
    } else {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0) {
                perror("dropping to nobody");
                _exit(2);
            }
            _exit(read_only_checks(path));
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    chmod(src, 0755);
}

/* Appends `n` events from a thread while a backup runs. */
struct appender {
    eddy_store *s;
    int n;
    int rc;
};

static void *append_main(void *arg)
{
    struct appender *a = arg;
    eddy_error err = {0};
    for (int i = 0; i < a->n && a->rc == EDDY_OK; i++) {
        eddy_event *ev = eddy_event_newf("t.more", "test", "s-2", &err,
                                         "{s:i}", "i", i);
        a->rc = ev ? eddy_store_append(a->s, "s-2", EDDY_EXPECT_ANY, &ev, 1,
                                       NULL, &err)
                   : EDDY_ENOMEM;
        eddy_event_unref(ev);
    }
    return NULL;
}

static void test_backup(void **state)
{
    (void)state;
    char path[256], dest[256];
    snprintf(path, sizeof path, "%s/live.db", tmpdir);
    snprintf(dest, sizeof dest, "%s/backup.db", tmpdir);
    eddy_store *s = append_some(path, 200);
    eddy_error err = {0};
    assert_int_equal(eddy_store_transact(s, setup_table, NULL, &err), EDDY_OK);
    assert_int_equal(eddy_store_transact(s, insert_rows, NULL, &err), EDDY_OK);

    /* A backup while another thread appends: a consistent prefix. */
    struct appender a = {.s = s, .n = 300};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_main, &a), 0);
    int rc = eddy_store_backup(s, dest, &err);
    pthread_join(t, NULL);
    assert_int_equal(a.rc, EDDY_OK);
    if (rc != EDDY_OK)
        fail_msg("backup: %s", err.message);

    /* Never overwrite, a missing folder is named, nothing partial left. */
    err = (eddy_error){0};
    assert_int_equal(eddy_store_backup(s, dest, &err), EDDY_EEXIST);
    assert_non_null(strstr(err.message, "never overwrites"));
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no/such/dir/b.db", tmpdir);
    err = (eddy_error){0};
    assert_int_equal(eddy_store_backup(s, bad, &err), EDDY_EIO);
    assert_non_null(strstr(err.message, bad));
    assert_int_equal(eddy_store_backup(s, "", &err), EDDY_EINVAL);
    eddy_store_close(s);

    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", dest);
    assert_false(exists(wal));
    eddy_store_options ro = {.read_only = true};
    eddy_store *b = eddy_store_open(dest, &ro, &err);
    assert_non_null(b);
    int64_t head = 0, rows = 0, count = 0, maxpos = 0;
    assert_int_equal(eddy_store_head(b, &head, &err), EDDY_OK);
    assert_true(head >= 200 && head <= 500);
    assert_int_equal(eddy_store_sql_int(b, &count, &err,
                                        "SELECT count(*) FROM events", NULL),
                     EDDY_OK);
    assert_int_equal(eddy_store_sql_int(b, &maxpos, &err,
                                        "SELECT max(position) FROM events",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(count, head); /* gap-free */
    assert_int_equal(maxpos, head);
    assert_int_equal(eddy_store_sql_int(b, &rows, &err,
                                        "SELECT count(*) FROM t", NULL),
                     EDDY_OK);
    assert_int_equal(rows, 2);
    int64_t ok = 0;
    assert_int_equal(eddy_store_sql_int(b, &ok, &err,
                                        "SELECT count(*) FROM "
                                        "pragma_integrity_check "
                                        "WHERE integrity_check = 'ok'",
                                        NULL),
                     EDDY_OK);
    assert_int_equal(ok, 1);
    /* A backup of a read-only store works too. */
    char dest2[300];
    snprintf(dest2, sizeof dest2, "%s/backup2.db", tmpdir);
    assert_int_equal(eddy_store_backup(b, dest2, &err), EDDY_OK);
    eddy_store_close(b);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

EDDYT_RMTREE_TEARDOWN(group_teardown, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_leaves_a_complete_file),
        cmocka_unit_test(test_read_only_media),
        cmocka_unit_test(test_backup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
