/* src/core/error.c - error codes and messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy/eddy.h"
#include "internal.h"

static const char *const messages[] = {
#define EDDY_ERRNO_MSG_(name, msg) msg,
    EDDY_ERRNO_MAP(EDDY_ERRNO_MSG_)
#undef EDDY_ERRNO_MSG_
};

static const char *const names[] = {
#define EDDY_ERRNO_NAME_(name, msg) #name,
    EDDY_ERRNO_MAP(EDDY_ERRNO_NAME_)
#undef EDDY_ERRNO_NAME_
};

const char *eddy_strerror(int code)
{
    if (code < 0 || code >= EDDY_ERRNO_COUNT_)
        return "unknown error";
    return messages[code];
}

const char *eddy_errname(int code)
{
    if (code < 0 || code >= EDDY_ERRNO_COUNT_)
        return "UNKNOWN";
    return names[code];
}

void eddy_error_clear(eddy_error *err)
{
    if (!err)
        return;
    err->code = EDDY_OK;
    err->message[0] = '\0';
}

int eddyi_verror(eddy_error *err, int code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    if (fmt)
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    else
        snprintf(err->message, sizeof err->message, "%s", eddy_strerror(code));
    return code;
}

int eddy_error_set(eddy_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    eddyi_verror(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int eddyi_error(eddy_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    eddyi_verror(err, code, fmt, ap);
    va_end(ap);
    return code;
}

char *eddyi_strdup(const char *src)
{
    if (!src)
        return NULL;
    size_t n = strlen(src) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, src, n);
    return copy;
}

int eddyi_utf8_valid(const char *s, size_t len)
{
    if (len == 0)
        return 1; /* s may be NULL: no pointer arithmetic on it */
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p++;
        unsigned need;
        unsigned cp;
        if (c == 0)
            return 0;
        if (c < 0x80)
            continue;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - p) < need)
            return 0;
        for (unsigned i = 0; i < need; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        p += need;
        /* overlong, surrogate and out-of-range forms */
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
    }
    return 1;
}

const char *eddy_version(void) { return EDDY_VERSION_STRING; }

int eddy_version_number(void) { return EDDY_VERSION_NUMBER; }
