/*
 * src/http/sse.c - GET /events/stream: Server-Sent Events to many clients
 * without a thread each, and without buffering for a slow client.
 *
 * THE HUB. One store subscription (started with the first client) turns
 * every new record into a FRAME - "id: POSITION\ndata: {record JSON}\n\n",
 * encoded once, reference-counted - and keeps the latest frames in a ring
 * indexed by position (at most sse_buffer_events frames and RING_BYTES
 * bytes). Positions are gap-free, so the ring always holds one contiguous
 * range [oldest, newest].
 *
 * A CLIENT is a cursor: the next position it wants, its type filter, the
 * frame it is in the middle of sending (a reference, so eviction never
 * frees it under its feet) and a small buffer for text of its own (the
 * greeting, catch-up pages, heartbeats, the final event). libmicrohttpd
 * calls its content reader when the socket can take more; the reader then
 *   - sends from the ring while its next position is in the ring;
 *   - when it wants a position older than the ring and has never been
 *     live (a new client resuming with Last-Event-ID or from=), reads it
 *     from the store, one page at a time;
 *   - when it was live and fell behind the ring, it is TOO SLOW: it gets a
 *     final "eddy.dropped" event saying how far behind it was, and the
 *     stream ends (a client reconnecting with Last-Event-ID catches up from
 *     the store);
 *   - when it is up to date, it marks itself suspended and suspends its
 *     connection, under the hub's mutex, and returns 0.
 * So a client costs its connection and a cursor, whatever its speed.
 *
 * WAKING. The subscription callback appends to the ring and resumes the
 * clients that are suspended (idle and up to date). Under a burst of
 * records the clients are busy sending, not suspended, so a burst costs one
 * resume per idle client, not one per record and client. The ticker thread
 * (server.c) resumes idle clients for heartbeats. Suspending and resuming
 * both happen under the hub's mutex, so a wake-up cannot fall between a
 * client's "nothing new" and its suspension.
 * Lock order: hub mutex, then libmicrohttpd's own.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "http/http_internal.h"

#define RING_BYTES ((size_t)64 << 20)
#define DEFAULT_RING_EVENTS 4096
#define DEFAULT_HEARTBEAT_MS 15000
#define CATCHUP_PAGE 64
#define BLOCK_SIZE 8192

typedef struct frame {
    atomic_int refs;
    int64_t position;
    char *type;
    size_t len;
    char text[]; /* "id: ...\ndata: ...\n\n" */
} frame;

struct eddyi_sse_client {
    struct eddyi_sse_hub *hub;
    struct MHD_Connection *conn;
    struct eddyi_sse_client *prev, *next_client;
    bool suspended;   /* under hub->mu */
    bool live;        /* has sent from the ring */
    bool ended;
    int64_t next;     /* next position wanted */
    int64_t remaining; /* events left before the stream ends; -1: no limit */
    char **types;
    size_t ntypes;
    bool exact_types; /* no pattern: the store can filter a catch-up */
    unsigned hb_gen;
    frame *cur;       /* being sent (a reference) */
    size_t off;
    char *pend;       /* text of its own */
    size_t plen, poff, pcap;
};

struct eddyi_sse_hub {
    eddy_http_server *srv;
    pthread_mutex_t mu;
    frame **ring;
    size_t cap;
    int64_t oldest, newest; /* ring range; empty when oldest > newest */
    size_t bytes;
    bool started;
    bool stopping;
    eddy_store_subscription *sub;
    struct eddyi_sse_client *clients;
    size_t nclients;
    unsigned hb_gen;
    int64_t hb_interval_us, next_hb_us;
    atomic_uint_fast64_t dropped;
};

static void frame_unref(frame *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        free(f->type);
        free(f);
    }
}

/* Formats one record as a frame; NULL when out of memory. */
static frame *frame_new(const eddy_record *rec)
{
    json_t *o = eddyi_record_json(rec);
    char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!data)
        return NULL;
    size_t dlen = strlen(data);
    frame *f = malloc(sizeof *f + dlen + 48);
    char *type = strdup(eddy_event_type(rec->event));
    if (!f || !type) {
        free(data);
        free(f);
        free(type);
        return NULL;
    }
    atomic_init(&f->refs, 1);
    f->position = rec->position;
    f->type = type;
    f->len = (size_t)snprintf(f->text, dlen + 48, "id: %" PRId64 "\ndata: %s\n\n",
                              rec->position, data);
    free(data);
    return f;
}

/* ---- the hub ------------------------------------------------------------------ */

static void ring_drop_oldest(struct eddyi_sse_hub *h)
{
    frame **slot = &h->ring[h->oldest % (int64_t)h->cap];
    if (*slot) {
        h->bytes -= (*slot)->len;
        frame_unref(*slot);
        *slot = NULL;
    }
    h->oldest++;
}

/* Resumes every suspended client. Caller holds h->mu. */
static void resume_all(struct eddyi_sse_hub *h)
{
    for (struct eddyi_sse_client *c = h->clients; c; c = c->next_client)
        if (c->suspended) {
            c->suspended = false;
            MHD_resume_connection(c->conn);
        }
}

static int on_record(const eddy_record *rec, void *user)
{
    struct eddyi_sse_hub *h = user;
    frame *f = frame_new(rec);
    pthread_mutex_lock(&h->mu);
    if (rec->position != h->newest + 1) { /* never expected: start over */
        while (h->oldest <= h->newest)
            ring_drop_oldest(h);
        h->oldest = rec->position;
        h->newest = rec->position - 1;
    }
    while (h->oldest <= h->newest &&
           (h->newest - h->oldest + 1 >= (int64_t)h->cap ||
            (f && h->bytes + f->len > RING_BYTES)))
        ring_drop_oldest(h);
    h->newest = rec->position;
    if (f) {
        h->ring[rec->position % (int64_t)h->cap] = f;
        h->bytes += f->len;
    } else {
        /* out of memory: a hole clients cannot read from the ring; move
         * the ring past it so that they catch up from the store */
        EDDYI_LOG(EDDY_LOG_WARN, "http", "out of memory encoding event at "
                  "position %" PRId64 " for streams", rec->position);
        while (h->oldest <= h->newest)
            ring_drop_oldest(h);
        h->oldest = h->newest + 1;
    }
    resume_all(h);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

int eddyi_sse_hub_new(eddy_http_server *srv, eddy_error *err)
{
    (void)err;
    struct eddyi_sse_hub *h = calloc(1, sizeof *h);
    if (!h)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    h->srv = srv;
    pthread_mutex_init(&h->mu, NULL);
    atomic_init(&h->dropped, 0);
    srv->hub = h;
    return EDDY_OK;
}

static size_t ring_events(eddy_http_server *srv);
static int64_t heartbeat_us(eddy_http_server *srv);

/* Starts the subscription at the store's head. Caller holds h->mu. */
static int hub_start(struct eddyi_sse_hub *h, eddy_error *err)
{
    eddy_http_server *srv = h->srv;
    int64_t head = 0;
    int rc = eddy_store_head(srv->store, &head, err);
    if (rc != EDDY_OK)
        return rc;
    h->cap = ring_events(srv);
    h->ring = calloc(h->cap, sizeof *h->ring);
    if (!h->ring)
        return eddyi_error(err, EDDY_ENOMEM, "out of memory");
    h->oldest = head + 1;
    h->newest = head;
    h->hb_interval_us = heartbeat_us(srv);
    h->next_hb_us = eddyi_http_now_us() + h->hb_interval_us;
    /* the callback takes h->mu, held here: it waits until we return */
    rc = eddy_store_subscribe(srv->store, head, on_record, h, NULL, &h->sub,
                              err);
    if (rc != EDDY_OK) {
        free(h->ring);
        h->ring = NULL;
        return rc;
    }
    h->started = true;
    return EDDY_OK;
}

void eddyi_sse_hub_stop(eddy_http_server *srv)
{
    struct eddyi_sse_hub *h = srv->hub;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    resume_all(h);
    pthread_mutex_unlock(&h->mu);
    /* not under h->mu: the callback takes it */
    eddy_store_subscription_free(h->sub);
    h->sub = NULL;
}

void eddyi_sse_hub_free(eddy_http_server *srv)
{
    struct eddyi_sse_hub *h = srv->hub;
    if (!h)
        return;
    eddyi_sse_hub_stop(srv);
    if (h->ring) {
        while (h->oldest <= h->newest)
            ring_drop_oldest(h);
        free(h->ring);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
    srv->hub = NULL;
}

size_t eddyi_sse_clients(eddy_http_server *srv)
{
    struct eddyi_sse_hub *h = srv->hub;
    if (!h)
        return 0;
    pthread_mutex_lock(&h->mu);
    size_t n = h->nclients;
    pthread_mutex_unlock(&h->mu);
    return n;
}

uint64_t eddyi_sse_dropped(eddy_http_server *srv)
{
    return srv->hub ? atomic_load(&srv->hub->dropped) : 0;
}

void eddyi_sse_tick(eddy_http_server *srv, int64_t now_us)
{
    struct eddyi_sse_hub *h = srv->hub;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    if (h->started && !h->stopping && now_us >= h->next_hb_us) {
        h->hb_gen++;
        h->next_hb_us = now_us + h->hb_interval_us;
        resume_all(h);
    }
    pthread_mutex_unlock(&h->mu);
}

/* ---- a client --------------------------------------------------------------- */

/* Appends printf text to the client's own buffer. False when out of
 * memory. */
static bool pend_printf(struct eddyi_sse_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool pend_printf(struct eddyi_sse_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return false;
    if (c->plen + (size_t)n + 1 > c->pcap) {
        size_t cap = c->pcap ? c->pcap : 256;
        while (cap < c->plen + (size_t)n + 1)
            cap *= 2;
        char *bigger = realloc(c->pend, cap);
        if (!bigger)
            return false;
        c->pend = bigger;
        c->pcap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(c->pend + c->plen, c->pcap - c->plen, fmt, ap);
    va_end(ap);
    c->plen += (size_t)n;
    return true;
}

/* Ends the stream with a final event `name` whose reason is `reason`. */
static void end_with(struct eddyi_sse_client *c, const char *name,
                     const char *reason)
{
    json_t *o = json_pack("{s:s, s:I}", "reason", reason, "next",
                          (json_int_t)c->next);
    char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pend_printf(c, "event: %s\ndata: %s\n\n", name,
                data ? data : "{\"reason\":\"out of memory\"}");
    free(data);
    c->ended = true;
}

/* Reads the next page of the store up to `upto` into the client's buffer. */
static void catch_up(struct eddyi_sse_client *c, int64_t upto)
{
    eddy_store *store = c->hub->srv->store;
    eddy_query q = {
        .types = c->exact_types ? (const char *const *)c->types : NULL,
        .type_count = c->exact_types ? c->ntypes : 0,
        .min_position = c->next,
        .max_position = upto,
        .limit = CATCHUP_PAGE,
    };
    eddy_error e = {0};
    eddy_cursor *cur = NULL;
    eddy_record rec;
    int rc = eddy_store_query(store, &q, &cur, &e);
    int64_t last = 0;
    size_t n = 0;
    while (rc == EDDY_OK && eddy_cursor_next(cur, &rec, &e)) {
        last = rec.position;
        n++;
        if (!eddyi_type_matches(c->types, c->ntypes, eddy_event_type(rec.event)))
            continue;
        json_t *o = eddyi_record_json(&rec);
        char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        bool ok = data && pend_printf(c, "id: %" PRId64 "\ndata: %s\n\n",
                                      rec.position, data);
        free(data);
        if (!ok) {
            rc = EDDY_ENOMEM;
            snprintf(e.message, sizeof e.message, "out of memory");
            break;
        }
        if (c->remaining > 0 && --c->remaining == 0)
            break;
    }
    if (rc == EDDY_OK)
        rc = eddy_cursor_error(cur);
    eddy_cursor_free(cur);
    if (rc != EDDY_OK) {
        end_with(c, "eddy.error", e.message[0] ? e.message : eddy_strerror(rc));
        return;
    }
    c->next = n == CATCHUP_PAGE || (c->remaining == 0) ? last + 1 : upto + 1;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct eddyi_sse_client *c = cls;
    struct eddyi_sse_hub *h = c->hub;
    size_t fill = 0;
    while (fill < max) {
        if (c->cur) {
            size_t n = c->cur->len - c->off;
            if (n > max - fill)
                n = max - fill;
            memcpy(buf + fill, c->cur->text + c->off, n);
            fill += n;
            c->off += n;
            if (c->off == c->cur->len) {
                frame_unref(c->cur);
                c->cur = NULL;
            }
            continue;
        }
        if (c->poff < c->plen) {
            size_t n = c->plen - c->poff;
            if (n > max - fill)
                n = max - fill;
            memcpy(buf + fill, c->pend + c->poff, n);
            fill += n;
            c->poff += n;
            if (c->poff == c->plen)
                c->poff = c->plen = 0;
            continue;
        }
        if (c->ended)
            return fill ? (ssize_t)fill : MHD_CONTENT_READER_END_OF_STREAM;
        if (c->remaining == 0) {
            end_with(c, "eddy.end", "the requested number of events was sent");
            continue;
        }
        pthread_mutex_lock(&h->mu);
        if (h->stopping) {
            pthread_mutex_unlock(&h->mu);
            end_with(c, "eddy.closing", "the server is stopping");
            continue;
        }
        if (c->hb_gen != h->hb_gen) {
            c->hb_gen = h->hb_gen;
            pthread_mutex_unlock(&h->mu);
            if (fill == 0)
                pend_printf(c, ": keepalive\n\n");
            continue;
        }
        if (c->next >= h->oldest && c->next <= h->newest) {
            frame *f = h->ring[c->next % (int64_t)h->cap];
            c->next++;
            if (f && eddyi_type_matches(c->types, c->ntypes, f->type)) {
                atomic_fetch_add(&f->refs, 1);
                c->cur = f;
                c->off = 0;
                if (c->remaining > 0)
                    c->remaining--;
            }
            c->live = true;
            pthread_mutex_unlock(&h->mu);
            continue;
        }
        if (c->next > h->newest) {
            if (fill > 0) {
                pthread_mutex_unlock(&h->mu);
                return (ssize_t)fill;
            }
            c->suspended = true;
            MHD_suspend_connection(c->conn);
            pthread_mutex_unlock(&h->mu);
            return 0;
        }
        /* c->next < h->oldest: older than the ring */
        if (c->live) {
            int64_t behind = h->newest - c->next + 1;
            size_t cap = h->cap;
            pthread_mutex_unlock(&h->mu);
            atomic_fetch_add(&h->dropped, 1);
            char reason[256];
            snprintf(reason, sizeof reason,
                     "client too slow: %" PRId64 " events behind the live "
                     "stream, more than the %zu the server keeps; reconnect "
                     "with Last-Event-ID to catch up from the store",
                     behind, cap);
            EDDYI_LOG(EDDY_LOG_INFO, "http", "stream client dropped: %s",
                      reason);
            end_with(c, "eddy.dropped", reason);
            continue;
        }
        int64_t upto = h->oldest - 1;
        pthread_mutex_unlock(&h->mu);
        catch_up(c, upto);
    }
    return (ssize_t)fill;
}

void eddyi_sse_client_free(struct eddyi_sse_client *c)
{
    if (!c)
        return;
    struct eddyi_sse_hub *h = c->hub;
    pthread_mutex_lock(&h->mu);
    if (c->prev)
        c->prev->next_client = c->next_client;
    else
        h->clients = c->next_client;
    if (c->next_client)
        c->next_client->prev = c->prev;
    h->nclients--;
    pthread_mutex_unlock(&h->mu);
    frame_unref(c->cur);
    free(c->pend);
    eddyi_strv_free(c->types, c->ntypes);
    free(c);
}

enum MHD_Result eddyi_sse_start(eddyi_req *r)
{
    eddy_http_server *srv = r->l->srv;
    struct eddyi_sse_hub *h = srv->hub;
    int64_t from = -1, limit = -1;
    if (!eddyi_arg_int(r, "from", 0, INT64_MAX, &from) ||
        !eddyi_arg_int(r, "limit", 1, INT64_MAX, &limit))
        return MHD_YES;
    const char *last_id = eddyi_header(r, "Last-Event-ID");
    if (last_id && *last_id) {
        char *end = NULL;
        long long n = strtoll(last_id, &end, 10);
        if (end == last_id || *end || n < 0)
            return eddyi_reply_error(r, 400, "invalid_header",
                                     json_pack("{s:s}", "header",
                                               "Last-Event-ID"),
                                     "Last-Event-ID: expected the position of "
                                     "the last event received (an id: line), "
                                     "got \"%.64s\"",
                                     last_id);
        from = n + 1;
    }
    char **types = NULL;
    size_t ntypes = 0;
    if (!eddyi_arg_list(r, "type", &types, &ntypes))
        return MHD_YES;
    eddy_error e = {0};
    int64_t head = 0;
    if (from < 0 && eddy_store_head(srv->store, &head, &e) != EDDY_OK) {
        eddyi_strv_free(types, ntypes);
        return eddyi_reply_error(r, eddyi_status_of(e.code),
                                 eddyi_error_token(e.code), NULL, "%s",
                                 e.message);
    }
    struct eddyi_sse_client *c = calloc(1, sizeof *c);
    if (!c) {
        eddyi_strv_free(types, ntypes);
        return eddyi_reply_error(r, 500, "internal", NULL, "out of memory");
    }
    c->hub = h;
    c->conn = r->conn;
    c->types = types;
    c->ntypes = ntypes;
    c->exact_types = ntypes > 0;
    for (size_t i = 0; i < ntypes; i++)
        if (strchr(types[i], '*'))
            c->exact_types = false;
    c->next = from < 0 ? head + 1 : from < 1 ? 1 : from;
    c->remaining = limit;
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        eddyi_strv_free(types, ntypes);
        free(c);
        return eddyi_reply_error(r, 503, "unavailable", NULL,
                                 "the server is stopping");
    }
    if (!h->started && hub_start(h, &e) != EDDY_OK) {
        pthread_mutex_unlock(&h->mu);
        eddyi_strv_free(types, ntypes);
        free(c);
        return eddyi_reply_error(r, eddyi_status_of(e.code),
                                 eddyi_error_token(e.code), NULL,
                                 "cannot follow the store: %s", e.message);
    }
    c->hb_gen = h->hb_gen;
    c->next_client = h->clients;
    if (h->clients)
        h->clients->prev = c;
    h->clients = c;
    h->nclients++;
    pthread_mutex_unlock(&h->mu);
    r->sse = c;
    pend_printf(c, "retry: 3000\n: eddy events from position %" PRId64 "\n\n",
                c->next);
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, BLOCK_SIZE, sse_read, c, NULL);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        r->answered = true;
        eddyi_count_status(r->l, 200);
    }
    return ok;
}

/* ---- options ------------------------------------------------------------------ */

static size_t ring_events(eddy_http_server *srv)
{
    return srv->sse_buffer_events ? srv->sse_buffer_events
                                  : DEFAULT_RING_EVENTS;
}

static int64_t heartbeat_us(eddy_http_server *srv)
{
    return (int64_t)(srv->sse_heartbeat_ms ? srv->sse_heartbeat_ms
                                           : DEFAULT_HEARTBEAT_MS) * 1000;
}
