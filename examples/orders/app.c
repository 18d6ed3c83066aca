/*
 * examples/orders/app.c - starting and stopping the order domain on a
 * store: the repository, the command bus, the services' subscriptions, the
 * OrderReadModel projection and the OrderProcessingSaga.
 */
#include <stdlib.h>
#include <string.h>

#include "orders/internal.h"

orders_app *orders_app_start(eddy_store *store, const orders_config *cfg,
                             eddy_error *err)
{
    orders_app *app = calloc(1, sizeof *app);
    if (!app) {
        if (err) {
            err->code = EDDY_ENOMEM;
            snprintf(err->message, sizeof err->message, "out of memory");
        }
        return NULL;
    }
    app->store = store;
    app->cfg = *cfg;
    if (app->cfg.workers == 0)
        app->cfg.workers = 4;
    if (app->cfg.saga_timeout_ms <= 0)
        app->cfg.saga_timeout_ms = 120000;
    app->saga_def = orders_saga_def;
    app->saga_def.user = &app->cfg;
    if (!(app->orders = eddy_repository_new(store, &orders_order_type, err)))
        goto fail;
    if (!(app->commands = eddy_command_bus_new())) {
        if (err) {
            err->code = EDDY_ENOMEM;
            snprintf(err->message, sizeof err->message, "out of memory");
        }
        goto fail;
    }
    if (orders_services_register(app, err) != EDDY_OK ||
        orders_services_start(app, err) != EDDY_OK)
        goto fail;
    if (ORDERS_RUNS(app, ORDERS_PART_ORDERS) &&
        (orders_read_model_upgrade(store, &app->read_model_rebuilt, err) != EDDY_OK ||
         !(app->read_model = eddy_projection_start(store, &orders_read_model_def,
                                                   err))))
        goto fail;
    eddy_saga_options so = {.event_max_attempts = 10};
    if (ORDERS_RUNS(app, ORDERS_PART_SAGA) &&
        !(app->saga = eddy_saga_start(store, &app->saga_def, app->commands,
                                      &so, err)))
        goto fail;
    return app;
fail:
    orders_app_free(app);
    return NULL;
}

int orders_app_stop(orders_app *app, eddy_error *err)
{
    if (!app || app->stopped)
        return EDDY_OK;
    app->stopped = true;
    int rc = EDDY_OK, r;
    eddy_error e = {0};
    /* the saga first: its command handlers append through the store */
    if (app->saga && (r = eddy_saga_stop(app->saga, &e)) != EDDY_OK && !rc) {
        rc = r;
        if (err)
            *err = e;
    }
    eddy_durable *subs[] = {app->payment, app->inventory, app->welcome_mail,
                            app->confirm_mail, app->order_requests};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (subs[i] && (r = eddy_durable_stop(subs[i], &e)) != EDDY_OK && !rc) {
            rc = r;
            if (err)
                *err = e;
        }
    if (app->read_model && (r = eddy_projection_stop(app->read_model, &e)) != EDDY_OK &&
        !rc) {
        rc = r;
        if (err)
            *err = e;
    }
    return rc;
}

void orders_app_free(orders_app *app)
{
    if (!app)
        return;
    orders_app_stop(app, NULL);
    eddy_saga_free(app->saga);
    eddy_durable_free(app->payment);
    eddy_durable_free(app->inventory);
    eddy_durable_free(app->welcome_mail);
    eddy_durable_free(app->confirm_mail);
    eddy_durable_free(app->order_requests);
    eddy_projection_free(app->read_model);
    eddy_command_bus_free(app->commands);
    eddy_repository_free(app->orders);
    free(app);
}

int orders_app_wait_idle(orders_app *app, int timeout_ms)
{
    int64_t deadline = eddy_now_us() + (int64_t)timeout_ms * 1000;
    /* Handling an event may append more (a command's result, a follow-up):
     * wait for everyone until the head stops moving. */
    for (;;) {
        int64_t head = 0;
        eddy_error e = {0};
        if (eddy_store_head(app->store, &head, &e) != EDDY_OK)
            return e.code ? e.code : EDDY_EIO;
        int left = (int)((deadline - eddy_now_us()) / 1000);
        if (left <= 0)
            return EDDY_ETIMEDOUT;
        int rc = eddy_saga_wait_idle(app->saga, head, left);
        eddy_durable *subs[] = {app->payment, app->inventory,
                                app->welcome_mail, app->confirm_mail};
        for (size_t i = 0; rc == EDDY_OK && i < 4; i++) {
            left = (int)((deadline - eddy_now_us()) / 1000);
            rc = left > 0 ? eddy_durable_wait_idle(subs[i], head, left)
                          : EDDY_ETIMEDOUT;
        }
        left = (int)((deadline - eddy_now_us()) / 1000);
        if (rc == EDDY_OK)
            rc = left > 0 ? eddy_projection_wait_idle(app->read_model, head, left)
                          : EDDY_ETIMEDOUT;
        if (rc != EDDY_OK)
            return rc;
        int64_t now_head = 0;
        if (eddy_store_head(app->store, &now_head, &e) != EDDY_OK)
            return e.code ? e.code : EDDY_EIO;
        if (now_head == head)
            return EDDY_OK;
    }
}

static int count_dead(const eddy_dead_letter *dl, void *user)
{
    (void)dl;
    (*(long *)user)++;
    return 0;
}

long orders_dead_letters(eddy_store *store)
{
    long n = 0;
    eddy_error e = {0};
    if (eddy_dlq_list(store, NULL, count_dead, &n, &e) != EDDY_OK)
        return -1;
    return n;
}
