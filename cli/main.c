/* cli/main.c - the eddy command: subcommand dispatch, help and version. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"

const struct cli_command cli_commands[] = {
    {"demo", "run the order system end to end and check its invariants", cmd_demo},
    {"service", "run one service of the order system as a process (see demo --transport)", cmd_service},
    {"events", "check CloudEvents JSON; list or follow the stored events", cmd_events},
    {"schema", "validate JSON against a JSON Schema (draft-07)", cmd_schema},
    {"append", "append events to a stream of the store", cmd_append},
    {"streams", "list the streams of the store, or show one", cmd_streams},
    {"store", "show information about the store", cmd_store},
    {"dlq", "list, show, redrive and purge dead letters", cmd_dlq},
    {"stats", "subscriptions' checkpoints, lag, retries, dead letters; outbox", cmd_stats},
    {"projections", "list projections; rebuild a read model from the store", cmd_projections},
    {"sagas", "list saga instances; show one with its commands and timeouts", cmd_sagas},
    {"trace", "print the causal tree of a flow (event, correlation or subject id)", cmd_trace},
    {"graph", "draw who publishes and who handles which event type (dot, mermaid, svg, png)", cmd_graph},
    {"publish", "publish events to Redis, Kafka or NATS (--data JSON or stdin lines)", cmd_publish},
    {"subscribe", "print events from Redis, Kafka or NATS as CloudEvents JSON lines", cmd_subscribe},
    {"transport", "show an engine's topics and consumer groups with their lag", cmd_transport},
    {"serve", "serve a store over HTTP: CloudEvents in and out, SSE, metrics, dashboard", cmd_serve},
    {NULL, NULL, NULL},
};

int cli_fail(int status, const char *fmt, ...)
{
    va_list ap;
    fputs("eddy: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

const char *cli_store_url(const char *opt)
{
    if (opt)
        return opt;
    const char *env = getenv("EDDY_STORE");
    return env && *env ? env : CLI_DEFAULT_STORE_URL;
}

eddy_store *cli_store_open_existing(const char *url, bool write)
{
    eddy_error err = {0};
    eddy_store_options ro = {.read_only = true};
    eddy_store *s = eddy_store_open(url, &ro, &err);
    if (!s) {
        cli_fail(1, "cannot open store %s: %s", cli_url_shown(url), err.message);
        return NULL;
    }
    if (!write)
        return s;
    eddy_store_close(s);
    s = eddy_store_open(url, NULL, &err);
    if (!s)
        cli_fail(1, "cannot open store %s for writing: %s", cli_url_shown(url),
                 err.message);
    return s;
}

const char *cli_url_shown(const char *url)
{
    static char bufs[4][1024];
    static unsigned next;
    char *b = bufs[next++ % 4];
    return eddy_url_redact(url, b, sizeof bufs[0]);
}

int cli_is_help(const char *arg)
{
    return arg && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0);
}

char *cli_read_file(const char *path, size_t *len)
{
    int from_stdin = !path || strcmp(path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        cli_fail(1, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int failed = !buf || ferror(f);
    if (!from_stdin)
        fclose(f);
    if (failed) {
        free(buf);
        cli_fail(1, "cannot read %s", from_stdin ? "standard input" : path);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* A command's output that could not be written (a full disk, a closed
 * pipe) is a failure, whatever the command returned: `eddy x > /dev/full`
 * must not exit 0. */
static int finish(int status)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        if (status == 0)
            status = cli_fail(1, "cannot write standard output: %s",
                              strerror(e ? e : EIO));
    }
    return status;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: eddy COMMAND [ARGS...]\n"
                 "       eddy COMMAND --help\n"
                 "       eddy --version\n\n"
                 "eddy is an event-driven architecture toolkit: an event store on\n"
                 "embedded SQLite, an in-process bus, and the tools around them.\n\n"
                 "commands:\n");
    for (const struct cli_command *c = cli_commands; c->name; c++)
        fprintf(out, "  %-12s %s\n", c->name, c->summary);
    fprintf(out, "  %-12s %s\n", "help", "show this help, or a command's help");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("eddy %s\n", eddy_version());
        /* which engines this build has, and what a missing one needs */
        size_t n = 0, missing = 0;
        const eddy_transport_engine_info *e = eddy_transport_engines(&n);
        printf("transports:");
        for (size_t i = 0; i < n; i++)
            if (e[i].built_in)
                printf(" %s", e[i].name);
            else
                missing++;
        printf("\n");
        if (missing) {
            printf("built without:");
            for (size_t i = 0; i < n; i++)
                if (!e[i].built_in)
                    printf(" %s (%s)", e[i].name, e[i].library);
            printf("\n");
        }
        return 0;
    }
    if (cli_is_help(name) || strcmp(name, "help") == 0) {
        if (strcmp(name, "help") == 0 && argc > 2) {
            for (const struct cli_command *c = cli_commands; c->name; c++)
                if (strcmp(c->name, argv[2]) == 0) {
                    char *help_argv[] = {argv[2], "--help", NULL};
                    return c->run(2, help_argv);
                }
            return cli_fail(2, "unknown command '%s' (see 'eddy help')", argv[2]);
        }
        usage(stdout);
        return 0;
    }
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return finish(c->run(argc - 1, argv + 1));
    return cli_fail(2, "unknown command '%s' (see 'eddy help')", name);
}
