/*
 * src/schema/format.c - the "format" values eddy asserts: email, date-time,
 * date, time, uri and uuid. Each check is a pure function of the string, so
 * they are thread-safe. Strings holding a NUL byte never pass.
 */
#include <string.h>

#include "schema_internal.h"

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_alpha(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_hex(int ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* Reads exactly `n` digits at s[*i]; returns the number or -1. */
static int digits(const char *s, size_t len, size_t *i, int n)
{
    int v = 0;
    for (int k = 0; k < n; k++, (*i)++) {
        if (*i >= len || !is_digit(s[*i]))
            return -1;
        v = v * 10 + (s[*i] - '0');
    }
    return v;
}

static int expect(const char *s, size_t len, size_t *i, char ch)
{
    if (*i >= len || s[*i] != ch)
        return 0;
    (*i)++;
    return 1;
}

/* ---- RFC 3339 ---------------------------------------------------------------- */

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* full-date = YYYY-MM-DD */
static int parse_date(const char *s, size_t len, size_t *i)
{
    int y = digits(s, len, i, 4);
    if (y < 0 || !expect(s, len, i, '-'))
        return 0;
    int m = digits(s, len, i, 2);
    if (m < 1 || m > 12 || !expect(s, len, i, '-'))
        return 0;
    int d = digits(s, len, i, 2);
    return d >= 1 && d <= days_in_month(y, m);
}

/* full-time = HH:MM:SS[.frac](Z|+hh:mm|-hh:mm); a leap second (60) only
 * where the time is 23:59 in UTC. */
static int parse_time(const char *s, size_t len, size_t *i)
{
    int h = digits(s, len, i, 2);
    if (h < 0 || h > 23 || !expect(s, len, i, ':'))
        return 0;
    int m = digits(s, len, i, 2);
    if (m < 0 || m > 59 || !expect(s, len, i, ':'))
        return 0;
    int sec = digits(s, len, i, 2);
    if (sec < 0 || sec > 60)
        return 0;
    if (*i < len && s[*i] == '.') {
        (*i)++;
        size_t start = *i;
        while (*i < len && is_digit(s[*i]))
            (*i)++;
        if (*i == start)
            return 0;
    }
    if (*i >= len)
        return 0;
    int off_min = 0;
    if (s[*i] == 'Z' || s[*i] == 'z') {
        (*i)++;
    } else if (s[*i] == '+' || s[*i] == '-') {
        int sign = s[*i] == '+' ? 1 : -1;
        (*i)++;
        int oh = digits(s, len, i, 2);
        if (oh < 0 || oh > 23 || !expect(s, len, i, ':'))
            return 0;
        int om = digits(s, len, i, 2);
        if (om < 0 || om > 59)
            return 0;
        off_min = sign * (oh * 60 + om);
    } else {
        return 0;
    }
    if (sec == 60) {
        int utc = ((h * 60 + m - off_min) % 1440 + 1440) % 1440;
        if (utc != 23 * 60 + 59)
            return 0;
    }
    return 1;
}

static int check_date_time(const char *s, size_t len)
{
    size_t i = 0;
    if (!parse_date(s, len, &i))
        return 0;
    if (i >= len || (s[i] != 'T' && s[i] != 't'))
        return 0;
    i++;
    return parse_time(s, len, &i) && i == len;
}

static int check_date(const char *s, size_t len)
{
    size_t i = 0;
    return parse_date(s, len, &i) && i == len;
}

static int check_time(const char *s, size_t len)
{
    size_t i = 0;
    return parse_time(s, len, &i) && i == len;
}

/* ---- email (RFC 5321 Mailbox, ASCII) -------------------------------------------- */

/* RFC 1123 host name: dot-separated labels of letters, digits and inner
 * hyphens, each 1-63 bytes, 253 in all. */
static int check_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!(is_alpha(ch) || is_digit(ch) || ch == '-'))
            return 0;
        if (ch == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && s[len - 1] != '-';
}

static int check_ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0 && !expect(s, len, &i, '.'))
            return 0;
        size_t start = i;
        int v = 0;
        while (i < len && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (s[i++] - '0');
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
            return 0;
    }
    return i == len;
}

static int is_atext(int ch)
{
    return is_alpha(ch) || is_digit(ch) || (ch && strchr("!#$%&'*+-/=?^_`{|}~", ch));
}

static int check_email(const char *s, size_t len)
{
    /* The local part may be quoted and hold '@', so split at the last one. */
    size_t at = len;
    for (size_t i = len; i > 0; i--)
        if (s[i - 1] == '@') {
            at = i - 1;
            break;
        }
    if (at == len || at == 0 || at > 64 || at + 1 == len)
        return 0;
    const char *local = s;
    if (local[0] == '"') {
        /* quoted-string: printable ASCII, with \ escaping one character */
        if (at < 2 || local[at - 1] != '"')
            return 0;
        for (size_t i = 1; i < at - 1; i++) {
            unsigned char ch = (unsigned char)local[i];
            if (ch == '\\') {
                if (++i >= at - 1 || (unsigned char)local[i] < 32 || (unsigned char)local[i] > 126)
                    return 0;
            } else if (ch == '"' || ch < 32 || ch > 126) {
                return 0;
            }
        }
    } else {
        /* dot-atom: atext runs separated by single dots */
        for (size_t i = 0; i < at; i++) {
            if (local[i] == '.') {
                if (i == 0 || i + 1 == at || local[i + 1] == '.')
                    return 0;
            } else if (!is_atext((unsigned char)local[i])) {
                return 0;
            }
        }
    }
    const char *domain = s + at + 1;
    size_t dlen = len - at - 1;
    if (domain[0] == '[')
        return dlen > 2 && domain[dlen - 1] == ']' && check_ipv4(domain + 1, dlen - 2);
    return check_hostname(domain, dlen);
}

/* ---- uri (RFC 3986 absolute URI) -------------------------------------------------- */

static int check_uri(const char *s, size_t len)
{
    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
    size_t i = 0;
    if (len == 0 || !is_alpha(s[0]))
        return 0;
    while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' ||
                       s[i] == '.'))
        i++;
    if (i >= len || s[i] != ':')
        return 0;
    i++;
    int fragment = 0;
    size_t auth_start = 0, auth_end = 0;
    if (i + 1 < len && s[i] == '/' && s[i + 1] == '/') {
        auth_start = i + 2;
        auth_end = auth_start;
        while (auth_end < len && s[auth_end] != '/' && s[auth_end] != '?' && s[auth_end] != '#')
            auth_end++;
    }
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= len || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
                return 0;
            i += 2;
            continue;
        }
        if (ch == '#') {
            if (fragment)
                return 0;
            fragment = 1;
            continue;
        }
        if (ch == '[' || ch == ']') {
            /* only around an IP literal host in the authority */
            if (!(i >= auth_start && i < auth_end))
                return 0;
            continue;
        }
        if (is_alpha(ch) || is_digit(ch) || strchr("-._~:/?@!$&'()*+,;=", ch))
            continue;
        return 0; /* space, control, non-ASCII, <>"{}|\^` */
    }
    if (auth_end > auth_start) {
        /* a port, if any, is digits: the last ':' after any ']' */
        size_t host_start = auth_start;
        for (size_t k = auth_start; k < auth_end; k++)
            if (s[k] == '@')
                host_start = k + 1;
        size_t colon = 0;
        int in_brackets = 0;
        for (size_t k = host_start; k < auth_end; k++) {
            if (s[k] == '[')
                in_brackets = 1;
            else if (s[k] == ']')
                in_brackets = 0;
            else if (s[k] == ':' && !in_brackets)
                colon = k;
        }
        if (colon)
            for (size_t k = colon + 1; k < auth_end; k++)
                if (!is_digit(s[k]))
                    return 0;
    }
    return 1;
}

/* ---- uuid ---------------------------------------------------------------------- */

static int check_uuid(const char *s, size_t len)
{
    if (len != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!is_hex(s[i])) {
            return 0;
        }
    }
    return 1;
}

/* ---- lookup ---------------------------------------------------------------------- */

int eddyi_format_lookup(const char *name)
{
    static const struct {
        const char *name;
        int id;
    } formats[] = {
        {"email", EDDYI_FORMAT_EMAIL}, {"date-time", EDDYI_FORMAT_DATE_TIME},
        {"date", EDDYI_FORMAT_DATE},   {"time", EDDYI_FORMAT_TIME},
        {"uri", EDDYI_FORMAT_URI},     {"uuid", EDDYI_FORMAT_UUID},
    };
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].name, name) == 0)
            return formats[i].id;
    return EDDYI_FORMAT_NONE;
}

int eddyi_format_check(int id, const char *s, size_t len)
{
    if (memchr(s, '\0', len))
        return 0;
    switch (id) {
    case EDDYI_FORMAT_EMAIL:
        return check_email(s, len);
    case EDDYI_FORMAT_DATE_TIME:
        return check_date_time(s, len);
    case EDDYI_FORMAT_DATE:
        return check_date(s, len);
    case EDDYI_FORMAT_TIME:
        return check_time(s, len);
    case EDDYI_FORMAT_URI:
        return check_uri(s, len);
    case EDDYI_FORMAT_UUID:
        return check_uuid(s, len);
    default:
        return 1;
    }
}
