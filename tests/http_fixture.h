/*
 * tests/http_fixture.h - a store in a temporary folder served on loopback
 * ports chosen by the kernel, with a tokens file of one token per role, for
 * the HTTP test programs (header only).
 */
#ifndef EDDY_TESTS_HTTP_FIXTURE_H
#define EDDY_TESTS_HTTP_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>

#include "eddy/eddy.h"
#include "eddy/http.h"
#include "http_client.h"
#include "test_util.h"

#define TOK_READ "read-token-0123456789abcdef"
#define TOK_WRITE "write-token-0123456789abcdef"
#define TOK_ADMIN "admin-token-0123456789abcdef"
#define AUTH_READ "Authorization: Bearer " TOK_READ "\r\n"
#define AUTH_WRITE "Authorization: Bearer " TOK_WRITE "\r\n"
#define AUTH_ADMIN "Authorization: Bearer " TOK_ADMIN "\r\n"

typedef struct hfx {
    char dir[64];
    char tokens[128];
    eddy_store *store;
    eddy_http_server *srv;
    int port;       /* events API */
    int admin_port; /* admin listener */
} hfx;

/* Makes the folder, the tokens file and the store (`so` may be NULL). */
static inline void hfx_store(hfx *f, const eddy_store_options *so)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/eddy-http-XXXXXX");
    if (!mkdtemp(f->dir))
        fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(f->tokens, sizeof f->tokens, "%s/tokens", f->dir);
    FILE *t = fopen(f->tokens, "w");
    assert_non_null(t);
    fprintf(t, "# one token per role\nread %s\nwrite %s\n\nadmin %s\n",
            TOK_READ, TOK_WRITE, TOK_ADMIN);
    fclose(t);
    chmod(f->tokens, 0644); /* test_http checks the warning about it */
    char url[128];
    snprintf(url, sizeof url, "sqlite:%s/store.db", f->dir);
    eddy_store_options o = so ? *so : (eddy_store_options){0};
    o.sync = EDDY_SYNC_OFF; /* tests: durability is not what they check */
    eddy_error err = {0};
    f->store = eddy_store_open(url, &o, &err);
    if (!f->store)
        fail_msg("store: %s", err.message);
}

/* Starts the server on the fixture's store: `ho` (may be NULL) gives the
 * options; store, addresses (unless set) and tokens file (unless
 * `no_tokens`) are filled in. */
static inline void hfx_serve(hfx *f, const eddy_http_options *ho,
                             bool no_tokens)
{
    eddy_http_options o = ho ? *ho : (eddy_http_options){0};
    o.store = f->store;
    if (!o.listen)
        o.listen = "127.0.0.1:0";
    if (!o.admin)
        o.admin = "127.0.0.1:0";
    if (!no_tokens && !o.tokens_file)
        o.tokens_file = f->tokens;
    eddy_error err = {0};
    f->srv = eddy_http_server_start(&o, &err);
    if (!f->srv)
        fail_msg("server: %s", err.message);
    f->port = eddy_http_server_port(f->srv, EDDY_HTTP_EVENTS);
    f->admin_port = eddy_http_server_port(f->srv, EDDY_HTTP_ADMIN);
}

static inline void hfx_stop(hfx *f)
{
    eddy_http_server_free(f->srv);
    f->srv = NULL;
    eddy_store_close(f->store);
    f->store = NULL;
    eddyt_rmtree(f->dir);
}

/* A request that must get a response; returns it. */
static inline htc_resp hfx_req(int port, const char *method, const char *path,
                               const char *headers, const char *body)
{
    htc_resp r;
    if (!htc_request(port, method, path, headers, body,
                     body ? strlen(body) : 0, &r))
        fail_msg("%s %s: no response", method, path);
    return r;
}

/* The response body as JSON (fails the test when it is not). */
static inline json_t *hfx_json(const htc_resp *r)
{
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!j)
        fail_msg("status %d, body not JSON (%s): %s", r->status, jerr.text,
                 r->body);
    return j;
}

/* Asserts the status, printing the body when it differs. */
#define HFX_STATUS(resp, want)                                                 \
    do {                                                                       \
        if ((resp).status != (want))                                           \
            fail_msg("status %d, want %d; body: %s", (resp).status, (want),    \
                     (resp).body ? (resp).body : "");                          \
    } while (0)

/* The string member `key` of `j` ("" when absent). */
static inline const char *hfx_str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

/* Asserts that `hay` contains `needle`. */
#define HFX_HAS(hay, needle)                                                   \
    do {                                                                       \
        if (!strstr((hay), (needle)))                                          \
            fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));       \
    } while (0)

#endif
