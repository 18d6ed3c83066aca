/*
 * examples/orders/faults.c - the conditions under which the order system
 * gives up instead of waiting, found while they happen and named with
 * their cause; and the little the demo's processes share about stopping.
 *
 * THE STORE CANNOT WRITE (a full disk, an I/O error, a medium turned
 * read-only). Every write of the domain goes through the store's one
 * writer: appends, the handlers' transactions, checkpoints, retry rows,
 * dead letters. Most of them retry a failed write quietly (a failed
 * handler transaction is parked and retried; a failed bridge append is
 * nacked and redelivered), so the failure itself never reaches the code
 * that waits for the orders: it only sees nothing move, until its timeout.
 * orders_store_probe asks the writer directly: one tiny write (a row of
 * its own table, orders_liveness) in the next group commit, which fails
 * when the writer's commits fail, with the store's own message. The
 * in-process demo and each `eddy service` run it about once a second; a
 * failure is fatal at once (a full disk does not empty itself), and the
 * message says how much room the store's file system has left.
 *
 * THE TRANSPORT IS GONE. The engines reconnect forever, and a server
 * restart takes seconds; eddy_transport_subscription_down_since tells since when a
 * subscription has been cut off, and `eddy service` gives up once that
 * lasted --max-disconnected seconds (service.c).
 *
 * HOW A SERVICE TELLS THE DEMO. A service that gives up prints
 * "eddy service NAME: fatal: CAUSE" on stderr (for a person), the line
 * "fatal CAUSE" on stdout, its control channel to the demo (which already
 * carries "ready NAME"), and exits with ORDERS_EXIT_FATAL; the demo reads
 * the line when it reaps the process and gives up naming that cause
 * (remote.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <eddy/transport.h>

#include "orders/internal.h"

const char *orders_signal_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGKILL: return "SIGKILL";
    default: return "a signal";
    }
}

int orders_temp_dir(char *buf, size_t size)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(buf, size, "%s%seddy-demo-XXXXXX", base,
                     base[strlen(base) - 1] == '/' ? "" : "/");
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return mkdtemp(buf) ? 0 : -1;
}

static int probe_write(eddy_txn *txn, void *user, eddy_error *err)
{
    (void)user;
    int rc = eddy_txn_exec(txn, NULL, err,
                           "CREATE TABLE IF NOT EXISTS orders_liveness ("
                           "id BIGINT PRIMARY KEY, at_us BIGINT NOT NULL)", "");
    if (rc == EDDY_OK)
        rc = eddy_txn_exec(txn, NULL, err,
                           "INSERT INTO orders_liveness (id, at_us) VALUES "
                           "(1, $1) ON CONFLICT (id) DO UPDATE SET at_us = "
                           "excluded.at_us", "I", eddy_txn_now_us(txn));
    return rc;
}

/* " (N KiB free of M KiB on its file system)" for a SQLite store, or "". */
static void free_space(const char *url, char *buf, size_t size)
{
    buf[0] = '\0';
    if (strncmp(url, "sqlite:", 7) == 0)
        url += 7;
    else if (strstr(url, "://"))
        return; /* a server's store: its disk is not ours to look at */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", url);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct statvfs st;
    if (statvfs(dir, &st) != 0)
        return;
    unsigned long long unit = st.f_frsize ? st.f_frsize : st.f_bsize;
    snprintf(buf, size, " (%llu KiB free of %llu KiB on its file system)",
             (unsigned long long)st.f_bavail * unit / 1024,
             (unsigned long long)st.f_blocks * unit / 1024);
}

bool orders_store_fault(const char *url, int rc, const char *msg,
                        char *cause, size_t size)
{
    if (rc != EDDY_EIO && rc != EDDY_ECORRUPT)
        return false;
    char room[128], shown[1024];
    free_space(url, room, sizeof room);
    eddy_url_redact(url, shown, sizeof shown);
    if (!msg || !*msg)
        msg = eddy_strerror(rc);
    if (strstr(msg, "disk is full")) /* SQLite's text for SQLITE_FULL */
        snprintf(cause, size, "the disk under store %s is full: %s%s", shown,
                 msg, room);
    else
        snprintf(cause, size, "store %s cannot write: %s%s", shown, msg, room);
    return true;
}

int orders_store_probe(eddy_store *store, const char *url, char *cause,
                       size_t size)
{
    eddy_error err = {0};
    int rc = eddy_store_transact(store, probe_write, NULL, &err);
    /* Only an I/O error or a corrupt file is a fault; busy, timed out or
     * closing means the writer is alive, just not now, and anything else
     * (two processes creating the table at once) is the probe's own
     * trouble, not the store's. */
    return orders_store_fault(url, rc, err.message, cause, size) ? rc : EDDY_OK;
}
