/*
 * examples/hello_bus.c - the in-process bus in one page.
 *
 * Two handlers: "welcome" sends a (pretend) welcome mail for every
 * user.registered and publishes mail.sent as a follow-up; "audit" sees every
 * event. Handlers run on the bus's worker threads, so shared counters are
 * atomic.
 */
#include <stdatomic.h>
#include <stdio.h>

#include <eddy/eddy.h>

static int on_user_registered(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    const char *email;
    if (eddy_event_unpack(ev, NULL, "{s:s}", "email", &email) != EDDY_OK)
        return eddy_ctx_fail(ctx, EDDY_EINVAL, "user.registered without email");
    printf("welcome mail to %s (user %s)\n", email, eddy_event_subject(ev));
    /* The follow-up inherits the subject and gets correlation/causation ids. */
    return eddy_ctx_publish(ctx, "mail.sent", "{s:s, s:s}", "to", email,
                            "template", "welcome");
}

static int on_any(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
    return EDDY_OK;
}

int main(void)
{
    static const char *const users[][2] = {
        {"u-1", "ada@example.org"}, {"u-2", "linus@example.org"},
        {"u-3", "grace@example.org"}};
    atomic_int audited = 0;
    eddy_error err = {0};

    eddy_log_set(eddy_log_stderr, EDDY_LOG_WARN, NULL);
    eddy_bus_options opts = {.source = "hello-bus"}; /* zero: defaults */
    eddy_bus *bus = eddy_bus_new(&opts, &err);
    if (!bus) {
        fprintf(stderr, "bus: %s\n", err.message);
        return 1;
    }
    if (eddy_bus_subscribe(bus, "user.registered", "welcome",
                           on_user_registered, NULL, NULL, &err) != EDDY_OK ||
        eddy_bus_subscribe(bus, "*", "audit", on_any, &audited, NULL, &err) !=
            EDDY_OK ||
        eddy_bus_start(bus) != EDDY_OK)
        goto fail;

    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        eddy_event *ev = eddy_event_newf("user.registered", "signup",
                                         users[i][0], &err, "{s:s}", "email",
                                         users[i][1]);
        if (!ev)
            goto fail;
        int rc = eddy_bus_publish(bus, ev); /* the bus takes its own ref */
        eddy_event_unref(ev);
        if (rc != EDDY_OK) {
            fprintf(stderr, "publish: %s\n", eddy_strerror(rc));
            eddy_bus_free(bus);
            return 1;
        }
    }

    eddy_bus_stop(bus); /* waits until every accepted event is handled */
    printf("audit saw %d events (3 registrations + 3 mails)\n",
           atomic_load(&audited));
    eddy_bus_free(bus);
    return atomic_load(&audited) == 6 ? 0 : 1;
fail:
    fprintf(stderr, "hello_bus: %s\n", err.message);
    eddy_bus_free(bus);
    return 1;
}
