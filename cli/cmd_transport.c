/*
 * cli/cmd_transport.c - talking to the engines from the command line:
 *   eddy publish    --transport URL --type T --source S [--data JSON | stdin]
 *   eddy subscribe  --transport URL [--group G] PATTERN...
 *   eddy transport info URL [--group G]...
 * like kcat -P / -C / -L and nats pub / sub / consumer info. Every URL
 * printed goes through eddy_url_redact.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <pthread.h>

#include "cli.h"
#include "eddy/eddy.h"
#include "eddy/transport.h"

#define TRANSPORT_HELP_URLS                                                    \
    "URL: mem:, redis://[USER:PASSWORD@]HOST:PORT, kafka://HOST:PORT[,...],\n" \
    "nats://[USER:PASSWORD@]HOST:PORT (see 'eddy transport --help' for\n"      \
    "credentials, TLS and the engines this eddy has). Without --transport,\n"  \
    "$EDDY_TRANSPORT is used: it keeps the URL out of the process list.\n"

/* The URL: --transport, else $EDDY_TRANSPORT. */
static const char *transport_url(const char *opt)
{
    if (opt)
        return opt;
    const char *env = getenv("EDDY_TRANSPORT");
    return env && *env ? env : NULL;
}

/* Opens `url` or prints why (the URL redacted) and returns NULL. */
static eddy_transport *open_transport(const char *cmd, const char *url,
                                      const char *config)
{
    eddy_transport_options o = {.config_file = config};
    eddy_error err = {0};
    eddy_transport *t = eddy_transport_open(url, &o, &err);
    if (!t) {
        char shown[1024];
        cli_fail(1, "%s: cannot open transport %s: %s", cmd,
                 eddy_url_redact(url, shown, sizeof shown), err.message);
    }
    return t;
}

/* ---- eddy publish ----------------------------------------------------------- */

static void publish_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy publish --transport URL --type TYPE --source SOURCE\n"
            "                    [--subject SUBJECT] [--data JSON]\n"
            "                    [--transport-config FILE]\n\n"
            "Publishes CloudEvents to the engine, each to its type's topic,\n"
            "keyed by its subject, and prints each event's id once the engine\n"
            "acknowledged it. With --data JSON one event is published; without\n"
            "it every line of standard input is the data (JSON) of one event\n"
            "(blank lines are skipped). Exit status: 0 when every event was\n"
            "acknowledged, 1 at the first failure (what was printed is stored),\n"
            "2 for a usage error.\n\n"
            "  --transport URL          the engine (default: $EDDY_TRANSPORT)\n"
            "  --transport-config FILE  key=value lines merged into the URL's\n"
            "                           query (credentials, librdkafka properties)\n"
            "  --type TYPE              the events' type (order.placed)\n"
            "  --source SOURCE          the events' source (order-service)\n"
            "  --subject SUBJECT        the events' subject (partition key)\n"
            "  --data JSON              the one event's data\n\n"
            TRANSPORT_HELP_URLS
            "\nexample:\n"
            "  printf '{\"n\":1}\\n{\"n\":2}\\n' |\n"
            "    EDDY_TRANSPORT='redis://app@127.0.0.1:6379?password_file=/run/secrets/redis' \\\n"
            "    eddy publish --type order.placed --source shop --subject o-1\n");
}

/* Publishes one event with `data_text` as its data; prints its id. */
static int publish_one(eddy_transport *t, const char *type, const char *source,
                       const char *subject, const char *data_text,
                       const char *where)
{
    json_error_t jerr;
    json_t *data = json_loads(data_text, JSON_DECODE_ANY, &jerr);
    if (!data)
        return cli_fail(1, "publish: %s: not JSON: %s", where, jerr.text);
    eddy_event_init init = {.type = type, .source = source, .subject = subject,
                            .data = data};
    eddy_error err = {0};
    eddy_event *ev = eddy_event_new(&init, &err);
    json_decref(data);
    if (!ev)
        return cli_fail(1, "publish: %s: %s", where, err.message);
    int rc = eddy_transport_publish(t, ev, &err);
    if (rc == EDDY_OK) {
        printf("%s\n", eddy_event_id(ev));
        fflush(stdout);
    } else {
        cli_fail(1, "publish: %s: event %s: %s", where, eddy_event_id(ev),
                 err.message);
    }
    eddy_event_unref(ev);
    return rc == EDDY_OK ? 0 : 1;
}

int cmd_publish(int argc, char **argv)
{
    const char *url = NULL, *config = NULL, *type = NULL, *source = NULL,
               *subject = NULL, *data = NULL;
    static const struct option longs[] = {
        {"transport", required_argument, NULL, 't'},
        {"transport-config", required_argument, NULL, 'c'},
        {"type", required_argument, NULL, 'y'},
        {"source", required_argument, NULL, 's'},
        {"subject", required_argument, NULL, 'j'},
        {"data", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 't': url = optarg; break;
        case 'c': config = optarg; break;
        case 'y': type = optarg; break;
        case 's': source = optarg; break;
        case 'j': subject = optarg; break;
        case 'd': data = optarg; break;
        case 'h': publish_usage(stdout); return 0;
        default:
            return cli_fail(2, "publish: unknown option or missing value '%s' "
                            "(see 'eddy publish --help')", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_fail(2, "publish: unexpected argument '%s'", argv[optind]);
    if (!(url = transport_url(url)))
        return cli_fail(2, "publish: which engine? give --transport URL or set "
                        "$EDDY_TRANSPORT");
    if (!type || !source)
        return cli_fail(2, "publish: --type and --source are required");
    eddy_transport *t = open_transport("publish", url, config);
    if (!t)
        return 1;
    int status = 0;
    if (data) {
        status = publish_one(t, type, source, subject, data, "--data");
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0;
        while (status == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
            if (strspn(line, " \t") == (size_t)n)
                continue;
            char where[64];
            snprintf(where, sizeof where, "line %ld", lineno);
            status = publish_one(t, type, source, subject, line, where);
        }
        free(line);
    }
    eddy_transport_close(t);
    return status;
}

/* ---- eddy subscribe ------------------------------------------------------------ */

static void subscribe_usage(FILE *out)
{
    fprintf(out,
            "usage: eddy subscribe --transport URL [--group G] [--from-latest]\n"
            "                      [--count N] [--idle-timeout MS]\n"
            "                      [--transport-config FILE] PATTERN...\n\n"
            "Receives events as a member of consumer group G and prints each as\n"
            "one line of CloudEvents JSON, acknowledging it once printed. Runs\n"
            "until interrupted (SIGINT, SIGTERM), N events were printed, or no\n"
            "event came for MS milliseconds.\n\n"
            "PATTERN: an event type (order.placed), or a glob (order.*, *) that\n"
            "is matched against the topics the engine holds when the command\n"
            "starts ('eddy transport info' lists them); a type first published\n"
            "later is not seen by a glob.\n\n"
            "  --transport URL          the engine (default: $EDDY_TRANSPORT)\n"
            "  --transport-config FILE  key=value lines merged into the URL's query\n"
            "  --group G                consumer group (default: eddy-cli); members\n"
            "                           of one group share the events, a group\n"
            "                           resumes where it stopped\n"
            "  --from-latest            a NEW group starts after the events\n"
            "                           already stored (default: from the oldest)\n"
            "  --count N                exit after N events\n"
            "  --idle-timeout MS        exit when no event came for MS ms\n\n"
            "Exit status: 0; 1 if the engine failed or a glob matched nothing;\n"
            "2 for a usage error. Events arrive at least once.\n\n"
            TRANSPORT_HELP_URLS
            "\nexample:\n"
            "  eddy subscribe --transport nats://127.0.0.1:4222 --group audit 'order.*'\n");
}

typedef struct sub_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t printed;
    uint64_t limit;       /* 0: none */
    int64_t last_ms;      /* when the last event came */
} sub_state;

static volatile sig_atomic_t sub_stop;

static void on_signal(int sig)
{
    (void)sig;
    sub_stop = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Prints the event (the subscription's thread). Past --count, refuses the
 * rest so that the group keeps them for its next reader. */
static int print_handler(eddy_delivery *d, const eddy_event *ev, void *user)
{
    sub_state *s = user;
    pthread_mutex_lock(&s->mu);
    if (s->limit && s->printed >= s->limit) {
        pthread_mutex_unlock(&s->mu);
        eddy_delivery_nack(d, 0);
        return 0;
    }
    size_t len = 0;
    char *text = eddy_event_encode(ev, &len);
    if (text) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(text);
        s->printed++;
        s->last_ms = now_ms();
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return text ? 0 : EDDY_ENOMEM;
}

static void print_dead(const eddy_transport_dead_letter *dl, void *user)
{
    fprintf(stderr, "eddy: subscribe: %s: message dropped: %s\n", dl->topic,
            dl->reason);
}

static bool is_glob(const char *p)
{
    return strpbrk(p, "*?[") != NULL;
}

/* Adds the types matching `pattern` (among the topics `info` lists) to
 * types[]. Returns how many matched. */
static size_t match_topics(const eddy_transport_info *info, const char *prefix,
                           const char *pattern, char ***types, size_t *n)
{
    size_t plen = strlen(prefix), matched = 0;
    for (size_t i = 0; i < info->topic_count; i++) {
        const char *name = info->topics[i].name;
        if (strncmp(name, prefix, plen) != 0)
            continue;
        const char *type = name + plen;
        if (fnmatch(pattern, type, 0) != 0)
            continue;
        bool dup = false;
        for (size_t k = 0; k < *n; k++)
            dup |= strcmp((*types)[k], type) == 0;
        matched++;
        if (dup)
            continue;
        char **grown = realloc(*types, (*n + 1) * sizeof **types);
        if (!grown)
            return matched;
        *types = grown;
        if (((*types)[*n] = strdup(type)))
            (*n)++;
    }
    return matched;
}

int cmd_subscribe(int argc, char **argv)
{
    const char *url = NULL, *config = NULL, *group = "eddy-cli";
    eddy_start_from start_from = EDDY_START_BEGINNING;
    long long count = 0, idle_ms = 0;
    static const struct option longs[] = {
        {"transport", required_argument, NULL, 't'},
        {"transport-config", required_argument, NULL, 'c'},
        {"group", required_argument, NULL, 'g'},
        {"from-latest", no_argument, NULL, 'l'},
        {"count", required_argument, NULL, 'n'},
        {"idle-timeout", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 't': url = optarg; break;
        case 'c': config = optarg; break;
        case 'g': group = optarg; break;
        case 'l': start_from = EDDY_START_END; break;
        case 'n':
        case 'i': {
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno || end == optarg || *end || v <= 0)
                return cli_fail(2, "subscribe: --%s: expected a positive "
                                "number, got '%s'",
                                c == 'n' ? "count" : "idle-timeout", optarg);
            if (c == 'n')
                count = v;
            else
                idle_ms = v;
            break;
        }
        case 'h': subscribe_usage(stdout); return 0;
        default:
            return cli_fail(2, "subscribe: unknown option or missing value '%s' "
                            "(see 'eddy subscribe --help')", argv[optind - 1]);
        }
    }
    if (!(url = transport_url(url)))
        return cli_fail(2, "subscribe: which engine? give --transport URL or "
                        "set $EDDY_TRANSPORT");
    if (optind >= argc)
        return cli_fail(2, "subscribe: which events? give a type or a pattern "
                        "(see 'eddy subscribe --help')");
    eddy_transport *t = open_transport("subscribe", url, config);
    if (!t)
        return 1;
    int status = 1;
    char **types = NULL;
    size_t ntypes = 0;
    eddy_transport_info *info = NULL;
    eddy_transport_subscription *sub = NULL;
    eddy_error err = {0};
    char prefix[512] = "";
    eddy_transport_topic(t, "x", prefix, sizeof prefix);
    prefix[strlen(prefix) > 0 ? strlen(prefix) - 1 : 0] = '\0';
    for (int i = optind; i < argc; i++) {
        if (!is_glob(argv[i])) {
            char **grown = realloc(types, (ntypes + 1) * sizeof *types);
            if (!grown || !(grown[ntypes] = strdup(argv[i]))) {
                types = grown ? grown : types;
                cli_fail(1, "subscribe: out of memory");
                goto out;
            }
            types = grown;
            ntypes++;
            continue;
        }
        if (!info && eddy_transport_info_get(t, NULL, 0, &info, &err) != EDDY_OK) {
            cli_fail(1, "subscribe: listing the topics of %s: %s",
                     eddy_transport_url(t), err.message);
            goto out;
        }
        if (match_topics(info, prefix, argv[i], &types, &ntypes) == 0) {
            cli_fail(1, "subscribe: no topic of %s matches '%s' (a glob "
                     "matches the types already published; name a type to "
                     "wait for its first event)", eddy_transport_url(t),
                     argv[i]);
            goto out;
        }
    }
    sub_state s = {.limit = (uint64_t)count, .last_ms = now_ms()};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    eddy_transport_subscription_options so = {
        .types = (const char *const *)types, .type_count = ntypes,
        .group = group, .handler = print_handler, .user = &s,
        .dead_letter = print_dead, .start_from = start_from,
        /* with --count, fetch one at a time: what is fetched past the
         * count goes back to the group (a nack, so it may show a delivery
         * attempt more when read again) */
        .batch = count ? 1 : 0, .retry = {.initial_delay_ms = 1, .max_delay_ms = 1},
    };
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sub_stop = 0;
    if (eddy_transport_subscribe(t, &so, &sub, &err) != EDDY_OK) {
        cli_fail(1, "subscribe: %s: %s", eddy_transport_url(t), err.message);
    } else {
        status = 0;
        pthread_mutex_lock(&s.mu);
        while (!sub_stop && !(s.limit && s.printed >= s.limit) &&
               !(idle_ms && now_ms() - s.last_ms >= idle_ms)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 50 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s.cv, &s.mu, &until);
        }
        pthread_mutex_unlock(&s.mu);
        eddy_transport_subscription_free(sub);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
out:
    eddy_transport_info_free(info);
    for (size_t i = 0; i < ntypes; i++)
        free(types[i]);
    free(types);
    eddy_transport_close(t);
    return status;
}

/* ---- eddy transport ------------------------------------------------------------- */

static void transport_usage(FILE *out)
{
    size_t n = 0;
    const eddy_transport_engine_info *e = eddy_transport_engines(&n);
    fprintf(out,
            "usage: eddy transport info URL [--group G]... [--format table|json]\n"
            "                           [--transport-config FILE]\n\n"
            "Shows what the engine holds under eddy's topic prefix: each topic\n"
            "(Redis stream, Kafka topic, NATS subject) with its message count and\n"
            "partitions, and each consumer group on it with its members, pending\n"
            "(delivered, not acknowledged) and lag (stored, not yet delivered);\n"
            "'-' where the engine does not tell. --group: only these groups\n"
            "(and, on a Kafka broker that cannot list groups, these by name).\n\n"
            "engines in this eddy:");
    for (size_t i = 0; i < n; i++)
        fprintf(out, " %s%s", e[i].name, e[i].built_in ? "" : " (not built in)");
    fprintf(out,
            "\n\nCREDENTIALS AND TLS (every engine):\n"
            "  user:password@ in the URL, or ?user=NAME with ?password_file=PATH\n"
            "  (the file's one line) or ?password_env=VARIABLE, or all of it in a\n"
            "  --transport-config FILE of key=value lines. Passwords are never\n"
            "  printed: URLs are shown as redis://app:***@host.\n"
            "  redis  user:password@ is an ACL user (AUTH user password);\n"
            "         :password@ the default user (requirepass). No TLS: this\n"
            "         eddy's hiredis (0.14) has none, so rediss:// is refused;\n"
            "         use a TLS tunnel (stunnel) to a TLS-only server.\n"
            "  kafka  librdkafka's properties: ?security.protocol=sasl_ssl&\n"
            "         sasl.mechanism=SCRAM-SHA-512&ssl.ca.location=FILE, or a\n"
            "         properties file (as kcat -F); user:password@ sets\n"
            "         sasl.username/sasl.password (PLAIN over sasl_ssl by default).\n"
            "  nats   user:password@, TOKEN@ or ?token_file=, ?nkey=U...&nkey_seed=\n"
            "         FILE, ?creds=FILE; TLS: ?tls_ca=FILE [&tls_cert=FILE&\n"
            "         tls_key=FILE] or ?tls=on.\n\n"
            "examples:\n"
            "  eddy transport info 'redis://app@127.0.0.1:6379?password_env=REDIS_PASSWORD'\n"
            "  eddy transport info kafka://broker:9093 --transport-config client.properties\n"
            "  eddy transport info 'nats://app@nats:4222?password_file=/run/secrets/nats&tls_ca=/etc/nats/ca.pem'\n");
}

static void count_out(char *buf, size_t size, int64_t v)
{
    if (v < 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%" PRId64, v);
}

static json_t *count_json(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

static void print_info(const eddy_transport_info *info, bool json)
{
    if (json) {
        json_t *topics = json_array();
        for (size_t i = 0; i < info->topic_count; i++) {
            const eddy_transport_topic_info *tp = &info->topics[i];
            json_t *groups = json_array();
            for (size_t k = 0; k < tp->group_count; k++) {
                const eddy_transport_group_info *g = &tp->groups[k];
                json_array_append_new(groups, json_pack(
                    "{s:s, s:o, s:o, s:o}", "name", g->name, "consumers",
                    count_json(g->consumers), "pending", count_json(g->pending),
                    "lag", count_json(g->lag)));
            }
            json_array_append_new(topics, json_pack(
                "{s:s, s:o, s:i, s:o}", "name", tp->name, "messages",
                count_json(tp->messages), "partitions", tp->partitions,
                "groups", groups));
        }
        json_t *root = json_pack("{s:s, s:s, s:o}", "engine", info->engine,
                                 "url", info->url, "topics", topics);
        if (info->note)
            json_object_set_new(root, "note", json_string(info->note));
        char *text = json_dumps(root, JSON_COMPACT);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(root);
        return;
    }
    printf("%s %s: %zu topic%s\n", info->engine, info->url, info->topic_count,
           info->topic_count == 1 ? "" : "s");
    if (info->note)
        printf("note: %s\n", info->note);
    for (size_t i = 0; i < info->topic_count; i++) {
        const eddy_transport_topic_info *tp = &info->topics[i];
        char m[32];
        count_out(m, sizeof m, tp->messages);
        printf("\ntopic %s: %s messages, %d partition%s\n", tp->name, m,
               tp->partitions, tp->partitions == 1 ? "" : "s");
        if (!tp->group_count) {
            printf("  (no consumer group)\n");
            continue;
        }
        printf("  %-40s %9s %9s %9s\n", "GROUP", "CONSUMERS", "PENDING", "LAG");
        for (size_t k = 0; k < tp->group_count; k++) {
            const eddy_transport_group_info *g = &tp->groups[k];
            char cs[32], ps[32], ls[32];
            count_out(cs, sizeof cs, g->consumers);
            count_out(ps, sizeof ps, g->pending);
            count_out(ls, sizeof ls, g->lag);
            printf("  %-40s %9s %9s %9s\n", g->name, cs, ps, ls);
        }
    }
}

static int transport_info(int argc, char **argv)
{
    const char *url = NULL, *config = NULL, *format = "table";
    const char **groups = NULL;
    size_t ngroups = 0;
    static const struct option longs[] = {
        {"group", required_argument, NULL, 'g'},
        {"format", required_argument, NULL, 'f'},
        {"transport-config", required_argument, NULL, 'c'},
        {"transport", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c, status = 2;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'g': {
            const char **grown = realloc(groups, (ngroups + 1) * sizeof *groups);
            if (!grown) {
                free(groups);
                return cli_fail(1, "transport info: out of memory");
            }
            groups = grown;
            groups[ngroups++] = optarg;
            break;
        }
        case 'f': format = optarg; break;
        case 'c': config = optarg; break;
        case 't': url = optarg; break;
        case 'h': transport_usage(stdout); free(groups); return 0;
        default:
            free(groups);
            return cli_fail(2, "transport info: unknown option or missing value "
                            "'%s' (see 'eddy transport --help')",
                            argv[optind - 1]);
        }
    }
    if (optind < argc)
        url = argv[optind++];
    if (optind < argc) {
        free(groups);
        return cli_fail(2, "transport info: unexpected argument '%s'",
                        argv[optind]);
    }
    if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0) {
        free(groups);
        return cli_fail(2, "transport info: unknown format '%s' (expected table "
                        "or json)", format);
    }
    if (!(url = transport_url(url))) {
        free(groups);
        return cli_fail(2, "transport info: which engine? give URL or set "
                        "$EDDY_TRANSPORT");
    }
    eddy_transport *t = open_transport("transport info", url, config);
    if (!t) {
        free(groups);
        return 1;
    }
    eddy_transport_info *info = NULL;
    eddy_error err = {0};
    if (eddy_transport_info_get(t, groups, ngroups, &info, &err) != EDDY_OK) {
        status = cli_fail(1, "transport info: %s: %s", eddy_transport_url(t),
                          err.message);
    } else {
        print_info(info, strcmp(format, "json") == 0);
        status = 0;
    }
    eddy_transport_info_free(info);
    eddy_transport_close(t);
    free(groups);
    return status;
}

int cmd_transport(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        transport_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "info") == 0)
        return transport_info(argc - 1, argv + 1);
    return cli_fail(2, "transport: unknown subcommand '%s' (expected info; see "
                    "'eddy transport --help')", argv[1]);
}
