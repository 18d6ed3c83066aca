/*
 * cli/cmd_serve.c - `eddy serve`: a store over HTTP (eddy/http.h) until
 * SIGINT or SIGTERM.
 *
 * The signals are blocked before the server starts its threads, so that
 * they all inherit the mask and only this thread takes them (sigwait).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eddy/eddy.h"
#include "eddy/http.h"
#include "orders/orders.h"

#define MAX_ORIGINS 64

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy serve [--store URL] [--listen HOST:PORT] [--admin HOST:PORT]\n"
            "                  [--tokens FILE] [--max-body BYTES] [--schemas DIR]\n"
            "                  [--webhook-origin HOST]... [--webhook-rate N]\n"
            "                  [--threads N] [--request-timeout MS] [--quiet]\n\n"
            "Serves a store over HTTP until SIGINT or SIGTERM.\n\n"
            "The events API (--listen) speaks the CloudEvents HTTP binding:\n"
            "  POST /streams/STREAM       append: binary mode (ce-* headers, body =\n"
            "                             data), structured mode (Content-Type\n"
            "                             application/cloudevents+json) or a batch\n"
            "                             (application/cloudevents-batch+json, all or\n"
            "                             nothing); header Eddy-Expected-Version: N,\n"
            "                             no-stream, exists or any. 201 with each\n"
            "                             event's position; the same event again: 200\n"
            "  GET  /streams/STREAM?from=V&limit=N\n"
            "  GET  /events?from=POS&type=T&since=TIME&limit=N\n"
            "  GET  /events/ID\n"
            "  GET  /events/stream?from=POS&type=T   Server-Sent Events (id: is the\n"
            "                             position; resume with Last-Event-ID)\n"
            "  OPTIONS /streams/STREAM    the CloudEvents web-hook handshake\n"
            "The admin listener (--admin) serves the dashboard at /, /metrics\n"
            "(Prometheus text format), /healthz and /readyz.\n\n"
            "  --store URL           the store, created if missing (default:\n"
            "                        $EDDY_STORE, else %s)\n"
            "  --listen HOST:PORT    the events API (default 127.0.0.1:8080; off:\n"
            "                        none; port 0: any free port)\n"
            "  --admin HOST:PORT     dashboard and metrics (default 127.0.0.1:8081;\n"
            "                        off: none)\n"
            "  --tokens FILE         one \"ROLE TOKEN\" per line, roles read, write,\n"
            "                        admin (write allows read, admin everything);\n"
            "                        clients send \"Authorization: Bearer TOKEN\".\n"
            "                        Without it nothing can be written and both\n"
            "                        listeners stay on loopback\n"
            "  --max-body BYTES      largest request body, K and M suffixes allowed\n"
            "                        (default 1M, at least 64K); larger is 413\n"
            "  --schemas DIR         validate appended events against DIR's\n"
            "                        TYPE@VERSION.json schemas (400 names the path)\n"
            "                        and upcast what is read\n"
            "  --webhook-origin HOST grant the web-hook handshake to HOST only\n"
            "                        (repeatable; default: every origin)\n"
            "  --webhook-rate N      requests per minute granted (default: *)\n"
            "  --threads N           threads per listener (default 2)\n"
            "  --request-timeout MS  a request must arrive whole within MS, and an\n"
            "                        idle connection closes after MS (default 30000)\n"
            "  --quiet               log warnings only (default: info on stderr)\n\n"
            "On start it prints the URLs it serves, e.g.\n"
            "  eddy serve: events API on http://127.0.0.1:8080\n"
            "  eddy serve: dashboard on http://127.0.0.1:8081/\n\n"
            "Try it:\n"
            "  printf 'write %%s\\n' \"$(head -c 24 /dev/urandom | base64)\" > tokens\n"
            "  eddy serve --store sqlite:demo.db --tokens tokens &\n"
            "  curl -X POST http://127.0.0.1:8080/streams/order-1 \\\n"
            "       -H \"Authorization: Bearer $(cut -d' ' -f2 tokens)\" \\\n"
            "       -H 'ce-specversion: 1.0' -H 'ce-id: 1' -H 'ce-source: shop' \\\n"
            "       -H 'ce-type: order.placed' -H 'Content-Type: application/json' \\\n"
            "       -d '{\"amount\": 9.5}'\n\n"
            "exit status: 0 stopped by SIGINT or SIGTERM, 1 store or listener\n"
            "error, 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
}

/* "65536", "64K", "1M" -> bytes; false when malformed. */
static bool parse_size(const char *text, size_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return false;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    if (*end || v > (1ULL << 40) / mul)
        return false;
    *out = (size_t)(v * mul);
    return true;
}

static bool parse_uint(const char *text, unsigned long min, unsigned long max,
                       unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int cmd_serve(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"listen", required_argument, NULL, 'l'},
        {"admin", required_argument, NULL, 'a'},
        {"tokens", required_argument, NULL, 't'},
        {"max-body", required_argument, NULL, 'b'},
        {"schemas", required_argument, NULL, 'S'},
        {"webhook-origin", required_argument, NULL, 'o'},
        {"webhook-rate", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 'T'},
        {"request-timeout", required_argument, NULL, 'R'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL, *listen = "127.0.0.1:8080",
               *admin = "127.0.0.1:8081", *schemas_dir = NULL;
    const char *origins[MAX_ORIGINS];
    eddy_http_options ho = {0};
    bool quiet = false;
    unsigned long n = 0;
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'l': listen = optarg; break;
        case 'a': admin = optarg; break;
        case 't': ho.tokens_file = optarg; break;
        case 'S': schemas_dir = optarg; break;
        case 'q': quiet = true; break;
        case 'b':
            if (!parse_size(optarg, &ho.max_body))
                return cli_fail(2, "serve: --max-body: expected bytes (65536, "
                                "64K, 1M), got \"%s\"", optarg);
            if (ho.max_body < EDDY_HTTP_MIN_MAX_BODY)
                return cli_fail(2, "serve: --max-body %s is below the minimum "
                                "of 64K (%zu bytes)", optarg,
                                EDDY_HTTP_MIN_MAX_BODY);
            break;
        case 'o':
            if (ho.webhook_origin_count == MAX_ORIGINS)
                return cli_fail(2, "serve: at most %d --webhook-origin",
                                MAX_ORIGINS);
            if (!*optarg)
                return cli_fail(2, "serve: --webhook-origin needs a host name");
            origins[ho.webhook_origin_count++] = optarg;
            break;
        case 'r':
            if (!parse_uint(optarg, 1, 1000000000, &n))
                return cli_fail(2, "serve: --webhook-rate: expected requests "
                                "per minute (1 or more), got \"%s\"", optarg);
            ho.webhook_rate = (unsigned)n;
            break;
        case 'T':
            if (!parse_uint(optarg, 1, 64, &n))
                return cli_fail(2, "serve: --threads: expected 1 to 64, got "
                                "\"%s\"", optarg);
            ho.threads = (unsigned)n;
            break;
        case 'R':
            if (!parse_uint(optarg, 100, 3600000, &n))
                return cli_fail(2, "serve: --request-timeout: expected 100 to "
                                "3600000 ms, got \"%s\"", optarg);
            ho.request_timeout_ms = (unsigned)n;
            break;
        case 'h': serve_usage(stdout); return 0;
        default:
            return cli_fail(2, "serve: unknown or incomplete option \"%s\" "
                            "(see 'eddy serve --help')", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_fail(2, "serve: unexpected argument \"%s\" (see 'eddy "
                        "serve --help')", argv[optind]);
    ho.listen = strcmp(listen, "off") == 0 ? NULL : listen;
    ho.admin = strcmp(admin, "off") == 0 ? NULL : admin;
    if (!ho.listen && !ho.admin)
        return cli_fail(2, "serve: --listen off and --admin off: nothing to "
                        "serve");
    ho.webhook_origins = origins;
    url = cli_store_url(url);

    eddy_log_set(eddy_log_stderr, quiet ? EDDY_LOG_WARN : EDDY_LOG_INFO, NULL);
    eddy_error err = {0};
    int status = 1;
    eddy_schema_registry *reg = NULL;
    eddy_store *store = NULL;
    eddy_http_server *srv = NULL;
    if (schemas_dir) {
        size_t count = 0;
        if (!(reg = eddy_schema_registry_new())) {
            cli_fail(1, "out of memory");
            goto done;
        }
        if (eddy_schema_registry_add_dir(reg, schemas_dir, &count, &err) !=
            EDDY_OK) {
            status = cli_fail(2, "serve: --schemas %s: %s", schemas_dir,
                              err.message);
            goto done;
        }
        fprintf(stderr, "eddy serve: %zu schemas from %s\n", count,
                schemas_dir);
    }
    eddy_store_options so = {0};
    if (reg) { /* validation happens in the server (400 naming the path) */
        so.transform = eddy_schema_registry_upcast_hook;
        so.transform_user = reg;
    }
    if (!(store = eddy_store_open(url, &so, &err))) {
        cli_fail(1, "cannot open store %s: %s", cli_url_shown(url), err.message);
        goto done;
    }
    /* the projections this program can rebuild from the dashboard */
    orders_register_projections();
    ho.store = store;
    ho.schemas = reg;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (!(srv = eddy_http_server_start(&ho, &err))) {
        cli_fail(err.code == EDDY_EINVAL ? 2 : 1, "serve: %s", err.message);
        status = err.code == EDDY_EINVAL ? 2 : 1;
        goto done;
    }
    if (ho.listen)
        printf("eddy serve: events API on %s\n",
               eddy_http_server_url(srv, EDDY_HTTP_EVENTS));
    if (ho.admin)
        printf("eddy serve: dashboard on %s/ (metrics: %s/metrics)\n",
               eddy_http_server_url(srv, EDDY_HTTP_ADMIN),
               eddy_http_server_url(srv, EDDY_HTTP_ADMIN));
    printf("eddy serve: store %s%s; stop with Ctrl-C\n", cli_url_shown(url),
           ho.tokens_file ? "" : " (no --tokens: read-only)");
    fflush(stdout);
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    fprintf(stderr, "eddy serve: %s, stopping\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
done:
    eddy_http_server_free(srv);
    eddy_store_close(store);
    eddy_schema_registry_free(reg);
    eddy_log_set(NULL, EDDY_LOG_OFF, NULL);
    return status;
}
