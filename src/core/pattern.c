/* src/core/pattern.c - event type patterns ("x.y", "x.*", "*"). */
#include <string.h>

#include "internal.h"
#include "pattern.h"

int eddyi_pattern_parse(const char *text, eddyi_pattern *out, eddy_error *err)
{
    size_t len = strlen(text);
    if (len == 0)
        return eddyi_error(err, EDDY_EINVAL, "pattern: empty");
    if (len > EDDYI_PATTERN_MAX)
        return eddyi_error(err, EDDY_EINVAL, "pattern: longer than %u bytes",
                           EDDYI_PATTERN_MAX);
    if (!eddyi_utf8_valid(text, len))
        return eddyi_error(err, EDDY_EINVAL, "pattern: not valid UTF-8");
    if (strcmp(text, "*") == 0) {
        *out = (eddyi_pattern){EDDYI_PATTERN_ALL, 0};
        return EDDY_OK;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c == 0x7f)
            return eddyi_error(err, EDDY_EINVAL,
                               "pattern \"%s\": space or control character "
                               "at offset %zu", text, i);
        if (c == '*' && !(i == len - 1 && i >= 2 && text[i - 1] == '.'))
            return eddyi_error(err, EDDY_EINVAL,
                               "pattern \"%s\": '*' is only allowed alone or "
                               "as a final \".*\" after a prefix", text);
    }
    if (text[len - 1] == '*')
        *out = (eddyi_pattern){EDDYI_PATTERN_PREFIX, len - 1};
    else
        *out = (eddyi_pattern){EDDYI_PATTERN_EXACT, 0};
    return EDDY_OK;
}

bool eddyi_pattern_match(const eddyi_pattern *p, const char *text,
                         const char *type)
{
    switch (p->kind) {
    case EDDYI_PATTERN_ALL:
        return true;
    case EDDYI_PATTERN_EXACT:
        return strcmp(type, text) == 0;
    case EDDYI_PATTERN_PREFIX:
        return strncmp(type, text, p->prefix_len) == 0 &&
               type[p->prefix_len] != '\0';
    }
    return false;
}

bool eddyi_pattern_match_text(const char *text, const char *type)
{
    if (!text)
        return true;
    if (!type)
        return false;
    size_t n = strlen(text);
    eddyi_pattern p = {EDDYI_PATTERN_EXACT, 0};
    if (n == 1 && text[0] == '*')
        p.kind = EDDYI_PATTERN_ALL;
    else if (n >= 3 && text[n - 1] == '*' && text[n - 2] == '.')
        p = (eddyi_pattern){EDDYI_PATTERN_PREFIX, n - 1};
    return eddyi_pattern_match(&p, text, type);
}
