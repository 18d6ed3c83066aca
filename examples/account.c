/* account.c: an event-sourced bank account */
#include <eddy/eddy.h>
#include <stdio.h>
#include <string.h>

/* The aggregate: its state, and how each event changes it. Money is in cents. */
typedef struct { bool open; int64_t cents; } account;

static int account_apply(void *state, const eddy_event *ev, eddy_error *err)
{
    account *a = state;
    const char *type = eddy_event_type(ev);
    json_int_t cents;
    if (strcmp(type, "account.opened") == 0)
        a->open = true;
    else if (strcmp(type, "account.deposited") == 0 || strcmp(type, "account.withdrawn") == 0) {
        if (eddy_event_unpack(ev, err, "{s:I}", "cents", &cents) != EDDY_OK)
            return EDDY_EINVAL;
        a->cents += strcmp(type, "account.withdrawn") == 0 ? -cents : cents;
    }
    return EDDY_OK;                                     /* other types: ignored */
}

static const char *event_version(const char *type) { return "1.0"; }

static const eddy_aggregate_type account_type = {
    .name = "account", .state_size = sizeof(account), .apply = account_apply,
    .dataversion = event_version,   /* the schema version of the events it raises */
};

/* Decisions: check the rules against the state, then raise events. */
static int open_account(eddy_aggregate *agg, void *state, void *user, eddy_error *err)
{
    if (((account *)state)->open)
        return eddy_error_set(err, EDDY_EEXIST, "account %s is already open",
                              eddy_aggregate_id(agg));
    return eddy_aggregate_raise(agg, err, "account.opened", NULL);
}

static int move_money(eddy_aggregate *agg, void *state, void *user, eddy_error *err)
{
    const account *a = state;
    int64_t cents = *(const int64_t *)user;            /* < 0: a withdrawal */
    if (!a->open)
        return eddy_error_set(err, EDDY_ESTATE, "account %s is not open", eddy_aggregate_id(agg));
    if (a->cents + cents < 0)                           /* the rule: no overdraft */
        return eddy_error_set(err, EDDY_ESTATE, "balance %.2f, cannot withdraw %.2f "
                              "(no overdraft)", a->cents / 100.0, -cents / 100.0);
    return eddy_aggregate_raise(agg, err, cents < 0 ? "account.withdrawn" : "account.deposited",
                                "{s:I}", "cents", (json_int_t)(cents < 0 ? -cents : cents));
}

static void run(eddy_repository *repo, const char *id, eddy_decide_fn decide, int64_t cents)
{
    eddy_error err = {0};
    int64_t version = 0;
    if (eddy_repository_execute(repo, id, decide, &cents, 5, &version, &err) == EDDY_OK)
        printf("%s: ok, version %lld\n", id, (long long)version);
    else
        printf("%s: refused: %s\n", id, err.message);
}

/* A projection: the read model "balances", kept exactly once in the store. */
static int balances_setup(eddy_txn *txn, void *user, eddy_error *err)
{
    return eddy_txn_exec(txn, NULL, err, "CREATE TABLE IF NOT EXISTS balances("
                         "account TEXT PRIMARY KEY, cents BIGINT NOT NULL)", NULL);
}

static int balances_apply(eddy_txn *txn, const eddy_event *ev, void *user, eddy_error *err)
{
    account change = {0};                    /* the event's effect on a zero balance */
    int rc = account_apply(&change, ev, err);
    return rc ? rc : eddy_txn_exec(txn, NULL, err,
        "INSERT INTO balances(account, cents) VALUES($1, $2) ON CONFLICT(account) "
        "DO UPDATE SET cents = balances.cents + excluded.cents",
        "sI", eddy_event_subject(ev), change.cents);
}

static int balances_reset(eddy_txn *txn, void *user, eddy_error *err)
{
    return eddy_txn_exec(txn, NULL, err, "DELETE FROM balances", NULL);
}

static const eddy_projection_def balances = {
    .name = "balances", .pattern = "account.*", .setup = balances_setup,
    .apply = balances_apply, .reset = balances_reset,
};

static int print_balance(const eddy_row *row, void *user)
{
    printf("  %-4s %10.2f\n", eddy_row_text(row, 0), eddy_row_int(row, 1) / 100.0);
    return 0;
}

/* A durable handler: a notifier whose mail server refuses bob. */
static int notify(eddy_ctx *ctx, const eddy_event *ev, void *user)
{
    const char *who = eddy_event_subject(ev);
    if (!who || strcmp(who, "bob") == 0)
        return eddy_ctx_fail(ctx, EDDY_EIO, "mail server refused %s", who ? who : "nobody");
    printf("mail to %s: %s\n", who, eddy_event_type(ev));
    return EDDY_OK;
}

static int print_dead(const eddy_dead_letter *dl, void *user)
{
    printf("dead letter %lld: %s of %s after %d attempts: %s\n", (long long)dl->id,
           eddy_event_type(dl->event), eddy_event_subject(dl->event), dl->attempts, dl->error);
    return 0;
}

int main(int argc, char **argv)
{
    eddy_error err = {0};
    eddy_store *store = eddy_store_open(argc > 1 ? argv[1] : "sqlite:account.db", NULL, &err);
    eddy_repository *repo = store ? eddy_repository_new(store, &account_type, &err) : NULL;
    eddy_projection *view = repo ? eddy_projection_start(store, &balances, &err) : NULL;
    eddy_durable_options notifier = {
        .name = "notifier", .patterns = (const char *const[]){"account.*"},
        .pattern_count = 1, .mode = EDDY_DELIVERY_INBOX,
        .handler = notify, .retry = {.max_attempts = 3, .initial_delay_ms = 20},
    };
    eddy_durable *mailer = view ? eddy_durable_start(store, &notifier, &err) : NULL;
    eddy_aggregate *teller1 = NULL, *teller2 = NULL;
    int64_t fee = -500, refund = 1000, head = 0;
    int status = 1;
    if (!mailer)
        goto done;

    run(repo, "ada", open_account, 0);
    run(repo, "ada", move_money, 10000);
    run(repo, "ada", move_money, -25000);            /* refused: no overdraft */
    run(repo, "bob", open_account, 0);
    run(repo, "bob", move_money, 5000);

    /* Two tellers load ada's account at the same version: the second save
     * conflicts, and is retried on a fresh load by eddy_repository_execute. */
    if (!(teller1 = eddy_repository_load(repo, "ada", &err)) ||
        !(teller2 = eddy_repository_load(repo, "ada", &err)) ||
        move_money(teller1, eddy_aggregate_state(teller1), &fee, &err) ||
        eddy_repository_save(repo, teller1, &err) ||
        move_money(teller2, eddy_aggregate_state(teller2), &refund, &err))
        goto done;
    if (eddy_repository_save(repo, teller2, &err) == EDDY_ECONFLICT) {
        printf("conflict: %s; retrying\n", err.message);
        run(repo, "ada", move_money, refund);
    }

    /* Wait until the projection and the notifier have seen everything. */
    if (eddy_store_head(store, &head, &err) ||
        eddy_projection_wait_idle(view, head, 10000) ||
        eddy_durable_wait_idle(mailer, head, 10000))
        goto done;
    printf("balances:\n");
    if (eddy_store_sql_query(store, print_balance, NULL, &err,
                             "SELECT account, cents FROM balances ORDER BY account", NULL) ||
        eddy_dlq_list(store, "notifier", print_dead, NULL, &err))
        goto done;
    status = 0;
done:
    if (status)
        fprintf(stderr, "account: %s\n", err.message[0] ? err.message : "failed");
    eddy_aggregate_free(teller1);
    eddy_aggregate_free(teller2);
    eddy_durable_free(mailer);
    eddy_projection_free(view);
    eddy_repository_free(repo);
    eddy_store_close(store);
    return status;
}
