/*
 * tests/test_dlq_cli.c - `eddy dlq` and `eddy stats` against a real store:
 * the library makes dead letters (a durable subscription whose handler
 * always fails), then the eddy binary (EDDY_CLI_PATH) lists, shows, marks
 * for redrive, deletes and purges them, and reports the subscriptions'
 * checkpoints, lag, dead letters and the outbox. A redrive marked by the
 * CLI is then carried out by a fixed handler and removes the dead letter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eddy/durable.h"
#include "eddy/eddy.h"
#include "eddy/outbox.h"

static char tmpdir[] = "/tmp/eddy-dlq-cli-XXXXXX";
static char db_path[600];
static char url[620];

/* Runs `eddy ARGS` (stderr joined to stdout when `with_stderr`); returns
 * the exit status and the output in `out` (malloc'd). */
static int run_cli(char **out, bool with_stderr, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s%s", EDDY_CLI_PATH, args,
             with_stderr ? " 2>&1" : " 2>/dev/null");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    int status = pclose(p);
    *out = buf;
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, needle))
            n++;
        line += len + (end ? 1 : 0);
    }
    return n;
}

/* ---- the handlers ----------------------------------------------------------- */

static atomic_bool mailer_fixed;

static int mailer(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)user;
    if (atomic_load(&mailer_fixed))
        return EDDY_OK;
    return eddy_ctx_fail(ctx, EDDY_ECONNECT, "smtp down for %s",
                         eddy_event_subject(ev));
}

static int audit(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    (void)ctx;
    (void)ev;
    (void)user;
    return EDDY_OK;
}

static eddy_durable *start(eddy_store *s, const char *name, const char *pattern,
                           eddy_handler_fn fn)
{
    eddy_durable_options o = {.name = name,
                              .patterns = (const char *const[]){pattern},
                              .pattern_count = 1, .handler = fn,
                              .workers = 1};
    o.retry.max_attempts = 2;
    o.retry.initial_delay_ms = 1;
    eddy_error err = {0};
    eddy_durable *d = eddy_durable_start(s, &o, &err);
    if (!d)
        fail_msg("durable %s: %s", name, err.message);
    return d;
}

/* The store: 3 order events and a user event; "mailer" dead-letters the
 * orders, "audit" handles everything; 2 outbox rows. */
static void make_store(void)
{
    eddy_error err = {0};
    eddy_store_options so = {.sync = EDDY_SYNC_OFF};
    eddy_store *s = eddy_store_open(url, &so, &err);
    assert_non_null(s);
    for (int i = 1; i <= 3; i++) {
        char subject[16];
        snprintf(subject, sizeof subject, "o-%d", i);
        eddy_event *ev = eddy_event_newf("order.placed", "shop", subject, &err,
                                         "{s:s}", "order_id", subject);
        assert_non_null(ev);
        assert_int_equal(eddy_store_append(s, subject, EDDY_EXPECT_ANY, &ev, 1,
                                           NULL, &err), EDDY_OK);
        eddy_event_unref(ev);
    }
    eddy_event *evs[2];
    evs[0] = eddy_event_newf("user.registered", "shop", "u-1", &err, NULL);
    evs[1] = eddy_event_newf("user.verified", "shop", "u-1", &err, NULL);
    assert_int_equal(eddy_outbox_append(s, "u-1", EDDY_EXPECT_ANY, evs, 2,
                                        "crm", NULL, &err), EDDY_OK);
    eddy_event_unref(evs[0]);
    eddy_event_unref(evs[1]);

    eddy_durable *m = start(s, "mailer", "order.*", mailer);
    eddy_durable *a = start(s, "audit", "*", audit);
    assert_int_equal(eddy_durable_wait_idle(m, 5, 20000), EDDY_OK);
    assert_int_equal(eddy_durable_wait_idle(a, 5, 20000), EDDY_OK);
    assert_int_equal(eddy_durable_stop(m, &err), EDDY_OK);
    assert_int_equal(eddy_durable_stop(a, &err), EDDY_OK);
    eddy_durable_free(m);
    eddy_durable_free(a);
    eddy_store_close(s);
}

static void test_dlq_commands(void **state)
{
    (void)state;
    make_store();
    char *out = NULL;

    /* list: a header and one row per dead letter. */
    assert_int_equal(run_cli(&out, false, "dlq list --store %s", url), 0);
    assert_int_equal(count_lines(out, "mailer"), 3);
    assert_int_equal(count_lines(out, "order.placed"), 3);
    assert_int_equal(count_lines(out, "smtp down for o-"), 3);
    assert_int_equal(count_lines(out, "audit"), 0);
    free(out);

    /* jsonl: every field, and the event. */
    assert_int_equal(run_cli(&out, false, "dlq list --store %s --handler mailer "
                             "--format jsonl", url), 0);
    size_t rows = 0;
    for (char *line = out, *next; *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen(line);
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o)
            fail_msg("not JSON: %s (%s)", line, jerr.text);
        const char *handler, *status, *error, *type, *subject;
        json_int_t id, position;
        int attempts;
        if (json_unpack(o, "{s:I, s:s, s:I, s:s, s:s, s:i, s:{s:s, s:s}}", "id",
                        &id, "handler", &handler, "position", &position,
                        "status", &status, "error", &error, "attempts",
                        &attempts, "event", "type", &type, "subject",
                        &subject) != 0)
            fail_msg("missing fields: %s", line);
        rows++;
        assert_string_equal(handler, "mailer");
        assert_string_equal(status, "dead");
        assert_string_equal(type, "order.placed");
        assert_int_equal(attempts, 2);
        assert_int_equal(position, atoi(subject + 2)); /* o-N at position N */
        assert_non_null(strstr(error, subject));
        json_decref(o);
    }
    free(out);
    assert_int_equal(rows, 3);
    assert_int_equal(run_cli(&out, false, "dlq list --store %s --handler audit "
                             "--format jsonl", url), 0);
    assert_string_equal(out, "");
    free(out);

    /* show. Which order is dead letter 1 depends on which key's retries
     * ran out first (keys are retried in parallel): any of o-1..o-3. */
    assert_int_equal(run_cli(&out, false, "dlq show 1 --store %s", url), 0);
    assert_non_null(strstr(out, "handler:        mailer"));
    assert_non_null(strstr(out, "attempts:       2"));
    assert_non_null(strstr(out, "ECONNECT"));
    assert_non_null(strstr(out, "\"subject\": \"o-"));
    free(out);
    assert_int_equal(run_cli(&out, false, "dlq show 1 --format json --store %s", url), 0);
    json_error_t jerr;
    json_t *shown = json_loads(out, 0, &jerr);
    if (!shown)
        fail_msg("dlq show --format json is not JSON: %s (%s)", out, jerr.text);
    const char *shown_handler, *shown_subject;
    json_int_t shown_id, shown_position;
    if (json_unpack(shown, "{s:I, s:s, s:I, s:{s:s}}", "id", &shown_id, "handler",
                    &shown_handler, "position", &shown_position, "event", "subject",
                    &shown_subject) != 0)
        fail_msg("dlq show --format json lacks fields: %s", out);
    assert_int_equal(shown_id, 1);
    assert_string_equal(shown_handler, "mailer");
    assert_int_equal(strncmp(shown_subject, "o-", 2), 0);
    assert_int_equal(shown_position, atoi(shown_subject + 2)); /* o-N at position N */
    json_decref(shown);
    free(out);
    assert_int_equal(run_cli(&out, true, "dlq show 999 --store %s", url), 1);
    assert_non_null(strstr(out, "no dead letter 999"));
    free(out);

    /* stats: checkpoints at the head, dead letters per subscription. */
    assert_int_equal(run_cli(&out, false, "stats --store %s", url), 0);
    assert_non_null(strstr(out, "head 5"));
    assert_int_equal(count_lines(out, "mailer "), 1);
    char *line = strstr(out, "mailer ");
    long long cp, head, lag, retries, dead, redrive;
    assert_int_equal(sscanf(line, "mailer %lld %lld %lld %lld %lld %lld", &cp,
                            &head, &lag, &retries, &dead, &redrive), 6);
    assert_int_equal(cp, 5);
    assert_int_equal(head, 5);
    assert_int_equal(lag, 0);
    assert_int_equal(retries, 0);
    assert_int_equal(dead, 3);
    assert_int_equal(redrive, 0);
    line = strstr(out, "crm ");
    assert_non_null(line);
    long long pend, sent;
    assert_int_equal(sscanf(line, "crm %lld %lld", &pend, &sent), 2);
    assert_int_equal(pend, 2);
    assert_int_equal(sent, 0);
    free(out);

    /* redrive one: marked, then a fixed handler redrives it and it is gone. */
    assert_int_equal(run_cli(&out, false, "dlq redrive 2 --store %s", url), 0);
    /* Marking redelivers nothing: it says which handler must run. */
    assert_non_null(strstr(out, "marked dead letter 2 for redrive: handler "
                                "\"mailer\" redelivers it when it runs"));
    free(out);
    assert_int_equal(run_cli(&out, false, "stats --store %s --format prometheus",
                             url), 0);
    assert_non_null(strstr(out, "eddy_subscription_dead_letters{subscription="
                                "\"mailer\"} 2"));
    assert_non_null(strstr(out, "eddy_subscription_redrive_pending{subscription="
                                "\"mailer\"} 1"));
    assert_non_null(strstr(out, "eddy_subscription_lag_events{subscription="
                                "\"audit\"} 0"));
    assert_non_null(strstr(out, "eddy_outbox_pending_rows{destination=\"crm\"} 2"));
    assert_non_null(strstr(out, "# TYPE eddy_store_head_position gauge"));
    free(out);

    eddy_error err = {0};
    eddy_store *s = eddy_store_open(url, NULL, &err);
    assert_non_null(s);
    atomic_store(&mailer_fixed, true);
    /* The mark is taken when the subscription starts, and wait_idle
     * waits for it: no polling. */
    eddy_durable *m = start(s, "mailer", "order.*", mailer);
    assert_int_equal(eddy_durable_wait_idle(m, 5, 20000), EDDY_OK);
    eddy_dead_letter *dl = NULL;
    assert_int_equal(eddy_dlq_get(s, 2, &dl, &err), EDDY_ENOTFOUND);
    assert_null(dl);
    eddy_durable_free(m);
    eddy_store_close(s);
    atomic_store(&mailer_fixed, false);

    assert_int_equal(run_cli(&out, false, "dlq list --store %s", url), 0);
    assert_int_equal(count_lines(out, "mailer"), 2);
    free(out);

    /* redrive --all marks the rest; delete one; purge the handler. */
    /* An unknown handler is a usage error naming the known ones (audit is a
     * recorded subscription without dead letters: known, nothing to mark). */
    assert_int_equal(run_cli(&out, true, "dlq redrive --all --handler nobody "
                             "--store %s", url), 2);
    assert_non_null(strstr(out, "unknown handler \"nobody\" (valid: audit, mailer)"));
    free(out);
    assert_int_equal(run_cli(&out, true, "dlq purge --handler nobody --store %s", url), 2);
    assert_non_null(strstr(out, "unknown handler \"nobody\""));
    free(out);
    /* `retry`, the old name of `redrive`, is the same command. */
    assert_int_equal(run_cli(&out, false, "dlq retry --all --handler audit "
                             "--store %s", url), 0);
    assert_non_null(strstr(out, "0 dead letters marked"));
    free(out);
    assert_int_equal(run_cli(&out, false, "dlq redrive --all --store %s", url), 0);
    assert_non_null(strstr(out, "2 dead letters marked for redrive: handler "
                                "\"mailer\" redelivers them when it runs"));
    free(out);
    assert_int_equal(run_cli(&out, false, "dlq delete 1 --store %s", url), 0);
    free(out);
    assert_int_equal(run_cli(&out, true, "dlq delete 1 --store %s", url), 1);
    assert_non_null(strstr(out, "no dead letter 1"));
    free(out);
    assert_int_equal(run_cli(&out, false, "dlq purge --handler mailer --store %s",
                             url), 0);
    assert_non_null(strstr(out, "1 dead letter deleted"));
    free(out);
    assert_int_equal(run_cli(&out, false, "dlq list --store %s --format jsonl",
                             url), 0);
    assert_string_equal(out, "");
    free(out);

    /* $EDDY_STORE is the default store. */
    char env[700];
    snprintf(env, sizeof env, "EDDY_STORE='%s' '%s' stats", url, EDDY_CLI_PATH);
    FILE *p = popen(env, "r");
    assert_non_null(p);
    char buf[256] = "";
    assert_non_null(fgets(buf, sizeof buf, p));
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(buf, "head 5"));
}

static void test_dlq_errors(void **state)
{
    (void)state;
    char *out = NULL;
    char missing[700];
    snprintf(missing, sizeof missing, "%s/missing.db", tmpdir);
    /* A missing store is an error, and is not created. */
    assert_int_equal(run_cli(&out, true, "dlq list --store %s", missing), 1);
    assert_non_null(strstr(out, "cannot open store"));
    free(out);
    struct stat sb;
    assert_int_not_equal(stat(missing, &sb), 0);
    assert_int_equal(run_cli(&out, true, "stats --store %s", missing), 1);
    free(out);
    assert_int_not_equal(stat(missing, &sb), 0);

    /* Usage errors: exit status 2, with the reason. */
    static const char *const bad[] = {
        "dlq", "dlq frob", "dlq show", "dlq show abc", "dlq show 0",
        "dlq redrive", "dlq redrive 1 2", "dlq retry", "dlq retry 1 2",
        "dlq list extra", "dlq show 1 --handler x",
        "dlq purge --all", "dlq list --format xml", "dlq list --bogus",
        "stats --format xml", "stats extra", "dlq redrive 1 --format jsonl",
        "dlq list --format JSON",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int status = run_cli(&out, true, "%s --store %s", bad[i], url);
        if (status != 2)
            fail_msg("\"eddy %s\" exited %d, not 2: %s", bad[i], status, out);
        assert_non_null(strstr(out, "eddy"));
        free(out);
    }
    assert_int_equal(run_cli(&out, false, "dlq --help"), 0);
    assert_non_null(strstr(out, "usage: eddy dlq list"));
    free(out);
    assert_int_equal(run_cli(&out, false, "stats --help"), 0);
    assert_non_null(strstr(out, "usage: eddy stats"));
    free(out);
}

static int setup_dir(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/dlq.db", tmpdir);
    snprintf(url, sizeof url, "sqlite:%s", db_path);
    return 0;
}

EDDYT_RMTREE_TEARDOWN(remove_dir, tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlq_commands),
        cmocka_unit_test(test_dlq_errors),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
