/*
 * src/core/buf.c - eddyi_buf, the growing byte buffer of the encoders
 * (CloudEvents JSON, PostgreSQL's binary parameters).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool eddyi_buf_reserve(eddyi_buf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->cap > b->n && b->cap - b->n > more)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n <= more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void eddyi_buf_free(eddyi_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
