/*
 * cli/cmd_graph.c - `eddy graph [--format dot|mermaid|svg|png] [--output
 * FILE]`: who publishes and who handles which event type, from the
 * subscriptions recorded in the store and the causation links between
 * stored events.
 *
 * dot and mermaid are text the library writes (eddy_graph_write); svg and
 * png are that DOT text run through Graphviz's `dot` program, found in PATH
 * and fed through a pipe. Without it the command fails before reading the
 * store, naming the program and the package.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "eddy/eddy.h"

extern char **environ;

static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: eddy graph [--store URL] [--format dot|mermaid|svg|png] [--output FILE]\n\n"
            "Draws the flow of the system recorded in the store, left to right:\n"
            "services (the sources of events nothing caused) publish event types;\n"
            "handlers, projections and sagas handle them (from the subscriptions they\n"
            "recorded: a durable handler's types filter counts, and from observed\n"
            "causation); sagas send commands, which lead to events. Each kind of\n"
            "node has its shape and colour, explained in a legend; every edge says\n"
            "what it is and how many stored events or commands show it (\"handles 42\").\n"
            "  --store URL      the store (default: $EDDY_STORE, else %s)\n"
            "  --format FORMAT  dot (Graphviz text, the default), mermaid (a Mermaid\n"
            "                   flowchart, e.g. for Markdown), or svg or png (drawn by\n"
            "                   Graphviz's dot program, which must be installed:\n"
            "                   apt-get install graphviz)\n"
            "  --output FILE    write the graph to FILE instead of standard output (png\n"
            "                   needs it, or a redirection, when the output is a terminal)\n\n"
            "examples:\n"
            "  eddy graph --format svg --output flow.svg\n"
            "  eddy graph | dot -Tpdf -o flow.pdf\n\n"
            "exit status: 0 success, 1 store error or drawing failed (dot missing\n"
            "or failing, FILE not writable), 2 usage error.\n",
            CLI_DEFAULT_STORE_URL);
    return status;
}

enum { FMT_DOT, FMT_MERMAID, FMT_SVG, FMT_PNG };

/* Finds `name` in $PATH (default "/usr/bin:/bin") into `out`. Returns true
 * when an executable file is there. */
static bool find_program(const char *name, char *out, size_t size)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        /* An empty entry is the current directory (POSIX). */
        int len = n ? snprintf(out, size, "%.*s/%s", (int)n, path, name)
                    : snprintf(out, size, "./%s", name);
        if (len > 0 && (size_t)len < size && access(out, X_OK) == 0)
            return true;
        if (!end)
            break;
        path = end + 1;
    }
    return false;
}

/* Writes all of `buf` to `fd`. Returns 0, or -1 with errno set. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Runs `dot -T<format>` on the DOT text `text`, its output going to `fd`.
 * dot's own messages go to our standard error. Returns 0, or 1 after
 * saying why (the pipe, the spawn, dot's exit status).
 */
static int run_dot(const char *dot, const char *format, const char *text,
                   size_t len, int fd)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return cli_fail(1, "graph: cannot make a pipe to dot: %s", strerror(errno));
    char type[16];
    snprintf(type, sizeof type, "-T%s", format);
    char *dot_argv[] = {(char *)"dot", type, NULL};
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    if (rc == 0 && fd != STDOUT_FILENO)
        rc = posix_spawn_file_actions_adddup2(&fa, fd, STDOUT_FILENO);
    pid_t pid = 0;
    if (rc == 0)
        rc = posix_spawn(&pid, dot, &fa, NULL, dot_argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    if (rc != 0) {
        close(in[1]);
        return cli_fail(1, "graph: cannot run %s: %s", dot, strerror(rc));
    }
    /* A dot that exits early (bad input) must not kill us with SIGPIPE:
     * its exit status says what happened. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old);
    int werr = write_all(in[1], text, len) == 0 ? 0 : errno;
    close(in[1]);
    sigaction(SIGPIPE, &old, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE)
        return 1; /* the reader of our output went away (| head): nothing to say */
    if (WIFSIGNALED(status))
        return cli_fail(1, "graph: %s was killed by signal %d", dot, WTERMSIG(status));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cli_fail(1, "graph: %s -T%s failed (exit status %d)", dot, format,
                        WEXITSTATUS(status));
    if (werr)
        return cli_fail(1, "graph: writing to dot: %s", strerror(werr));
    return 0;
}

int cmd_graph(int argc, char **argv)
{
    const char *url = NULL, *output = NULL;
    int format = FMT_DOT;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    static const char *const formats[] = {"dot", "mermaid", "svg", "png"};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:f:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            url = optarg;
            break;
        case 'f':
            format = cli_find_name(optarg, formats, 4, false);
            if (format < 0)
                return cli_fail_unknown(2, "graph", "format", optarg, formats, 4);
            break;
        case 'o':
            if (!*optarg)
                return cli_fail(2, "graph: --output needs a file name");
            output = optarg;
            break;
        case 'h':
            return usage(stdout, 0);
        default:
            return usage(stderr, 2);
        }
    }
    if (optind != argc)
        return usage(stderr, 2);
    bool drawn = format == FMT_SVG || format == FMT_PNG;
    char dot[PATH_MAX];
    if (drawn && !find_program("dot", dot, sizeof dot))
        return cli_fail(1, "graph: --format %s needs Graphviz's dot program, which is "
                        "not in PATH (on Debian: apt-get install graphviz); --format "
                        "dot or mermaid print the graph as text", formats[format]);
    if (format == FMT_PNG && !output && isatty(STDOUT_FILENO))
        return cli_fail(2, "graph: png is binary: use --output FILE or redirect "
                        "standard output");

    url = cli_store_url(url);
    eddy_error err = {0};
    eddy_store *s = cli_store_open_existing(url, false);
    if (!s)
        return 1;
    eddy_graph *g = NULL;
    int rc = eddy_graph_build(s, &g, &err);
    eddy_store_close(s);
    if (rc != EDDY_OK)
        return cli_fail(1, "graph: %s", err.message);

    /* The text first, in memory: written out only when complete, and the
     * input of dot for svg and png. */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        eddy_graph_free(g);
        return cli_fail(1, "graph: out of memory");
    }
    rc = eddy_graph_write(g, format == FMT_MERMAID ? EDDY_GRAPH_MERMAID : EDDY_GRAPH_DOT,
                          mem);
    eddy_graph_free(g);
    if (fclose(mem) != 0 || rc != EDDY_OK) {
        free(text);
        return cli_fail(1, "graph: out of memory");
    }

    int fd = STDOUT_FILENO;
    if (output) {
        fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd < 0) {
            int e = errno;
            free(text);
            return cli_fail(1, "graph: cannot write %s: %s", output, strerror(e));
        }
    }
    int status = 0;
    if (drawn) {
        fflush(stdout);
        status = run_dot(dot, formats[format], text, len, fd);
    } else if (write_all(fd, text, len) != 0) {
        status = cli_fail(1, "graph: cannot write %s: %s", output ? output : "the output",
                          strerror(errno));
    }
    free(text);
    if (output) {
        if (close(fd) != 0 && status == 0)
            status = cli_fail(1, "graph: cannot write %s: %s", output, strerror(errno));
        if (status != 0)
            unlink(output); /* no half-written picture left behind */
    }
    return status;
}
