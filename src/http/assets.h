/*
 * src/http/assets.h - the dashboard's files, compiled into the library by
 * cmake/embed_files.cmake (generated: eddy_dashboard_assets.c in the build
 * folder) from src/http/dashboard/. Not public.
 */
#ifndef EDDY_SRC_HTTP_ASSETS_H
#define EDDY_SRC_HTTP_ASSETS_H

#include <stddef.h>

/* One embedded file: plain data, static storage. */
typedef struct eddyi_http_asset {
    const char *path;         /* URL path: "/" + file name ("/app.js") */
    const char *content_type; /* from the extension */
    const unsigned char *data;
    size_t size;              /* bytes of data (a NUL follows them) */
    const char *etag;         /* quoted, from the content's SHA-256 */
} eddyi_http_asset;

extern const eddyi_http_asset eddyi_http_assets[];
extern const size_t eddyi_http_asset_count;

#endif
