/*
 * src/core/uuid.c - UUIDv7 (RFC 9562 section 5.7), monotonic within the
 * process.
 *
 * Layout: 48-bit big-endian Unix milliseconds, version 7, 12-bit rand_a used
 * as a counter (RFC 9562 section 6.2, method 1), variant 10, 62 random bits.
 * The counter is seeded with 11 random bits on every new millisecond (the
 * top bit left clear so that it has room to count) and bumped when the
 * millisecond repeats or the clock steps back; when it overflows the
 * timestamp is advanced by one millisecond. One mutex guards the
 * (timestamp, counter) pair, so ids compare strictly increasing as strings
 * across all threads of the process.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "eddy/event.h"
#include "internal.h"

#define RANDOM_BUF 256

/* Per-thread pool of random bytes, refilled with one getrandom() call. */
static _Thread_local unsigned char rnd_buf[RANDOM_BUF];
static _Thread_local size_t rnd_pos = RANDOM_BUF;
static _Thread_local uint64_t rnd_fallback;

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ms;
static unsigned counter;

/* splitmix64: only used if the kernel refuses getrandom(), which does not
 * happen on a supported Linux; ids stay unique through the counter and the
 * clock, only less unpredictable. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void refill(void)
{
    size_t got = 0;
    while (got < RANDOM_BUF) {
        ssize_t n = getrandom(rnd_buf + got, RANDOM_BUF - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    if (got < RANDOM_BUF) {
        EDDYI_LOG(EDDY_LOG_WARN, "uuid",
                  "getrandom failed (errno %d); using a weaker generator",
                  errno);
        if (rnd_fallback == 0)
            rnd_fallback = (uint64_t)eddy_now_us() ^ ((uint64_t)getpid() << 32) ^
                           (uint64_t)(uintptr_t)&rnd_fallback;
        for (size_t i = got; i < RANDOM_BUF; i += 8) {
            uint64_t r = splitmix64(&rnd_fallback);
            size_t n = RANDOM_BUF - i < 8 ? RANDOM_BUF - i : 8;
            memcpy(rnd_buf + i, &r, n);
        }
    }
    rnd_pos = 0;
}

static void random_bytes(unsigned char *out, size_t n)
{
    if (RANDOM_BUF - rnd_pos < n)
        refill();
    memcpy(out, rnd_buf + rnd_pos, n);
    rnd_pos += n;
}

void eddy_uuid7(char out[EDDY_UUID_STRLEN])
{
    unsigned char rnd[10];
    random_bytes(rnd, sizeof rnd); /* 2 for the counter seed, 8 for rand_b */
    unsigned seed = ((unsigned)rnd[0] << 8 | rnd[1]) & 0x7FF;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

    pthread_mutex_lock(&uuid_lock);
    if (now_ms > last_ms) {
        last_ms = now_ms;
        counter = seed;
    } else if (++counter > 0xFFF) {
        last_ms++;
        counter = seed;
    }
    uint64_t ms = last_ms;
    unsigned ctr = counter;
    pthread_mutex_unlock(&uuid_lock);

    uuid_t u;
    u[0] = (unsigned char)(ms >> 40);
    u[1] = (unsigned char)(ms >> 32);
    u[2] = (unsigned char)(ms >> 24);
    u[3] = (unsigned char)(ms >> 16);
    u[4] = (unsigned char)(ms >> 8);
    u[5] = (unsigned char)ms;
    u[6] = (unsigned char)(0x70 | (ctr >> 8));
    u[7] = (unsigned char)(ctr & 0xFF);
    u[8] = (unsigned char)(0x80 | (rnd[2] & 0x3F));
    memcpy(u + 9, rnd + 3, 7);
    uuid_unparse_lower(u, out);
}

void eddy_id_derive(const char *base, const char *salt, char out[37])
{
    /* A fixed namespace of eddy's own, so derived ids never collide with
     * another application's version-5 ids of the same names. */
    static const uuid_t eddy_ns = {0x65, 0x64, 0x64, 0x79, 0x2d, 0x69, 0x44, 0x73,
                                   0x9e, 0x2a, 0x31, 0x70, 0x6b, 0x5c, 0x11, 0x07};
    base = base ? base : "";
    salt = salt ? salt : "";
    size_t nb = strlen(base), ns = strlen(salt);
    char stack[512];
    char *name = nb + ns + 1 <= sizeof stack ? stack : malloc(nb + ns + 1);
    uuid_t id;
    if (!name) {
        /* Out of memory for a huge name: hash the parts in two steps, which
         * still gives a stable id (it can't fail, as the header promises). */
        uuid_t inner;
        uuid_generate_sha1(inner, eddy_ns, base, nb);
        uuid_generate_sha1(id, inner, salt, ns);
    } else {
        memcpy(name, base, nb);
        name[nb] = '/';
        memcpy(name + nb + 1, salt, ns);
        uuid_generate_sha1(id, eddy_ns, name, nb + ns + 1);
        if (name != stack)
            free(name);
    }
    /* A UUIDv7 base gives a UUIDv7: its 48-bit time, then hash bits. The
     * id sorts beside its base, so a store's id index grows at its end
     * instead of taking a random page per derived event. */
    uuid_t b;
    if (nb == 36 && uuid_parse(base, b) == 0 && (b[6] >> 4) == 7) {
        memcpy(id, b, 6);
        id[6] = (unsigned char)(0x70 | (id[6] & 0x0f));
        id[8] = (unsigned char)(0x80 | (id[8] & 0x3f));
    }
    uuid_unparse_lower(id, out);
}
