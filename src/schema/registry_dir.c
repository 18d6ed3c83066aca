/*
 * src/schema/registry_dir.c - filling a schema registry from a directory of
 * TYPE@VERSION.json files (`eddy serve --schemas DIR`), through the
 * registry's public API only.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "eddy/schema.h"

int eddy_schema_registry_add_dir(eddy_schema_registry *reg, const char *dir,
                                 size_t *count, eddy_error *err)
{
    if (count)
        *count = 0;
    if (!reg || !dir)
        return eddyi_error(err, EDDY_EINVAL, "schema directory: NULL argument");
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return eddyi_error(err, EDDY_EIO, "schema directory %s: %s", dir,
                           strerror(errno));
    int rc = EDDY_OK;
    size_t loaded = 0, dlen = strlen(dir);
    char *path = NULL;
    for (int i = 0; i < n && rc == EDDY_OK; i++) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        if (name[0] == '.' || len < 5 || strcmp(name + len - 5, ".json") != 0)
            continue;
        free(path);
        if (!(path = malloc(dlen + len + 2))) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
            break;
        }
        memcpy(path, dir, dlen);
        path[dlen] = '/';
        memcpy(path + dlen + 1, name, len + 1);
        const char *at = strrchr(name, '@');
        size_t stem = len - 5;
        if (!at || at == name || (size_t)(at - name) + 1 >= stem) {
            rc = eddyi_error(err, EDDY_EINVAL,
                             "%s: not named TYPE@VERSION.json", path);
            break;
        }
        char *type = strndup(name, (size_t)(at - name));
        char *version = strndup(at + 1, stem - (size_t)(at - name) - 1);
        if (!type || !version) {
            rc = eddyi_error(err, EDDY_ENOMEM, "out of memory");
        } else {
            eddy_error e = {0};
            rc = eddy_schema_registry_add_file(reg, type, version, path, &e);
            if (rc != EDDY_OK)
                eddyi_error(err, rc, "%s: %s", path, e.message);
            else
                loaded++;
        }
        free(type);
        free(version);
    }
    free(path);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == EDDY_OK && loaded == 0)
        rc = eddyi_error(err, EDDY_ENOTFOUND,
                         "schema directory %s holds no TYPE@VERSION.json file",
                         dir);
    if (count)
        *count = loaded;
    return rc;
}
