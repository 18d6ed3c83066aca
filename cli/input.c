/*
 * cli/input.c - reading event input for `eddy events check` and `eddy schema
 * check`: one JSON value, a batch, or JSON lines, from a file or standard
 * input, within the limits every eddy input path applies.
 *
 * Only what deciding the input's shape needs is read into memory: at most
 * EDDY_EVENT_MAX_BYTES + 1 bytes (one event, or the start of JSON lines), or
 * EDDY_BATCH_MAX_BYTES + 1 for a batch. JSON lines are then read one bounded
 * line at a time by an eddy_line_reader, which first serves what was read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_input_open(cli_input *in, const char *path)
{
    memset(in, 0, sizeof *in);
    in->fd = STDIN_FILENO;
    in->name = "standard input";
    if (!path || strcmp(path, "-") == 0)
        return 0;
    in->name = path;
    in->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (in->fd < 0)
        return cli_fail(2, "cannot open %s: %s", path, strerror(errno));
    in->close_fd = true;
    return 0;
}

void cli_input_close(cli_input *in)
{
    eddy_line_reader_free(in->lines);
    free(in->head);
    if (in->close_fd)
        close(in->fd);
    memset(in, 0, sizeof *in);
}

/* Reads more of the input into the head, up to `limit` bytes in all.
 * Returns 0, or 2 with the reason on stderr. */
static int read_head(cli_input *in, size_t limit)
{
    while (!in->eof && in->head_len < limit) {
        size_t want = limit - in->head_len;
        if (want > ((size_t)1 << 20))
            want = (size_t)1 << 20;
        char *p = realloc(in->head, in->head_len + want + 1);
        if (!p)
            return cli_fail(2, "out of memory reading %s", in->name);
        in->head = p;
        ssize_t n = read(in->fd, in->head + in->head_len, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cli_fail(2, "cannot read %s: %s", in->name, strerror(errno));
        if (n == 0)
            in->eof = true;
        in->head_len += (size_t)n;
        in->head[in->head_len] = '\0';
    }
    return 0;
}

int cli_input_shape(cli_input *in, json_t **root, eddy_error *err)
{
    *root = NULL;
    if (read_head(in, EDDY_EVENT_MAX_BYTES + 1) != 0)
        return -1;
    size_t start = 0;
    while (start < in->head_len && in->head[start] && strchr(" \t\r\n", in->head[start]))
        start++;
    if (start < in->head_len && in->head[start] == '[') {
        /* An array is a batch, whether it parses or not. */
        if (read_head(in, EDDY_BATCH_MAX_BYTES + 1) != 0)
            return -1;
        if (in->head_len > EDDY_BATCH_MAX_BYTES) { /* not read to its end */
            err->code = EDDY_ETOOBIG;
            snprintf(err->message, sizeof err->message,
                     "batch: larger than the %zu-byte limit (EDDY_BATCH_MAX_BYTES)",
                     EDDY_BATCH_MAX_BYTES);
            return CLI_INPUT_BATCH;
        }
        *root = eddy_json_decode_batch(in->head, in->head_len, err);
        return CLI_INPUT_BATCH;
    }
    if (in->eof && in->head_len <= EDDY_EVENT_MAX_BYTES) {
        /* One value, possibly over several lines? Else JSON lines. */
        *root = eddy_json_decode(in->head, in->head_len, err);
        if (*root)
            return CLI_INPUT_VALUE;
        /* `err` keeps why the whole input is not one value */
    }
    return CLI_INPUT_LINES;
}

/* eddy_read_fn: the head first, then the rest of the file descriptor. */
static long input_read(void *user, void *buf, size_t size)
{
    cli_input *in = user;
    if (in->head_pos < in->head_len) {
        size_t n = in->head_len - in->head_pos;
        if (n > size)
            n = size;
        memcpy(buf, in->head + in->head_pos, n);
        in->head_pos += n;
        return (long)n;
    }
    if (in->eof)
        return 0;
    for (;;) {
        ssize_t n = read(in->fd, buf, size);
        if (n >= 0 || errno != EINTR)
            return (long)n;
    }
}

eddy_line_reader *cli_input_lines(cli_input *in)
{
    if (!in->lines)
        in->lines = eddy_line_reader_new(input_read, in, EDDY_EVENT_MAX_BYTES);
    if (!in->lines)
        cli_fail(2, "out of memory reading %s", in->name);
    return in->lines;
}

bool cli_line_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r", p[i]) || p[i] == '\0')
            return false;
    return true;
}
