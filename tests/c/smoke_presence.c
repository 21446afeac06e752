/*
 * C smoke test 8: presence (RFC 3856 over RFC 6665 subscriptions, RFC 3903 PUBLISH) and a
 * busy-lamp field (RFC 4235 dialog package) through the C ABI, against the embedded server's
 * presence agent.
 *
 * An embedded server (udp:127.0.0.1:0, users alice, bob, carol) and three endpoints that
 * register to it. Then:
 *   1. alice subscribes to bob's presence (rvoip_account_subscribe, PRESENCE): SUBSCRIPTION_STATE
 *      SUBSCRIBING first, then ACTIVE, and a first BUDDY_PRESENCE offline (bob never published)
 *      naming bob as the entity;
 *   2. bob publishes online with activity "away" and note "Away"
 *      (rvoip_account_publish_presence): bob gets PUBLISH_RESULT 200 for his account, alice a
 *      BUDDY_PRESENCE online with that activity and note; bob publishes again online without
 *      note and activity (NULL): alice sees online with both empty; bob unpublishes
 *      (rvoip_account_unpublish_presence): alice sees him offline;
 *   3. alice subscribes to bob's dialog package (DIALOG, another id): LINE_STATE IDLE; carol
 *      calls bob: RINGING; bob answers: IN_CALL; carol hangs up: IDLE again (the lamp's states,
 *      repeats left out, are exactly idle, ringing, in-call, idle);
 *   4. alice unsubscribes both (rvoip_endpoint_unsubscribe): each ends with SUBSCRIPTION_STATE
 *      TERMINATED, reason "unsubscribed"; a second unsubscribe is NOT_FOUND;
 *   5. nobody else gets presence events, and every presence event alice gets names one of her
 *      two subscriptions.
 * Bad arguments to the four functions give the documented codes and leave out-parameters alone.
 * (MESSAGE both ways is smoke_message.c's.)
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#define SENTINEL_ID ((uint64_t)0x5151515151515151ULL)
#define NO_SUCH_ID ((uint64_t)999999)
static const char BAD_UTF8[] = "\xff\xfe";
static const char *const BOB = "sip:bob@127.0.0.1";

static rvoip_call_opts quiet_opts(void) {
    rvoip_call_opts o;
    rvoip_call_opts_default(&o);
    o.source = silence_source();
    o.sink = discard_sink();
    return o;
}

static void dump_fail(party *p, const char *what) {
    char seq[4096];
    party_sequence(p, seq, sizeof seq);
    FAIL("%s: timed out waiting for %s; events: %s", p->name, what, seq);
}

/* An event of `kind` on subscription `sub` (0: any) with `state` (-1: any). */
typedef struct want_ev {
    rvoip_event_kind kind;
    uint64_t sub;
    int state;
} want_ev;
static int is_want(const rec_event *e, const void *arg) {
    const want_ev *w = (const want_ev *)arg;
    return e->kind == w->kind && (w->sub == 0 || e->subscription_id == w->sub) &&
           (w->state < 0 || e->state == w->state);
}

/* Waits for the next matching event at or after *cursor; returns a copy. */
static rec_event wait_for(party *p, int *cursor, rvoip_event_kind kind, uint64_t sub, int state,
                          const char *what) {
    want_ev w;
    rec_event e;
    int i;
    w.kind = kind;
    w.sub = sub;
    w.state = state;
    i = party_wait(p, cursor, is_want, &w, WAIT_MS);
    if (i < 0) dump_fail(p, what);
    pthread_mutex_lock(&p->mu);
    e = p->ev[i];
    pthread_mutex_unlock(&p->mu);
    return e;
}

static int count_kind(party *p, rvoip_event_kind kind) {
    int i, n = 0;
    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->n; i++) n += p->ev[i].kind == kind;
    pthread_mutex_unlock(&p->mu);
    return n;
}

static int is_presence_kind(rvoip_event_kind k) {
    return k == RVOIP_EVENT_SUBSCRIPTION_STATE || k == RVOIP_EVENT_BUDDY_PRESENCE ||
           k == RVOIP_EVENT_LINE_STATE || k == RVOIP_EVENT_PUBLISH_RESULT;
}

static uint64_t add(party *p, const char *user, const char *pw, uint16_t port) {
    int cursor = 0, st = RVOIP_REGISTRATION_REGISTERED;
    uint64_t id = add_account(p->ep, user, pw, port);
    if (party_wait(p, &cursor, is_reg_state, &st, WAIT_MS) < 0) dump_fail(p, "REGISTERED");
    return id;
}

static void check_badargs(rvoip_endpoint *ep, uint64_t acc) {
    uint64_t out = SENTINEL_ID;

    CHECK_RC(rvoip_account_subscribe(NULL, acc, BOB, RVOIP_EVENT_PACKAGE_PRESENCE, &out), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, NULL, RVOIP_EVENT_PACKAGE_PRESENCE, &out), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, BOB, RVOIP_EVENT_PACKAGE_PRESENCE, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, BAD_UTF8, RVOIP_EVENT_PACKAGE_PRESENCE, &out), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, "not a uri", RVOIP_EVENT_PACKAGE_DIALOG, &out), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, "tel:+15551234", RVOIP_EVENT_PACKAGE_PRESENCE, &out), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, BOB, 2, &out), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, acc, BOB, 0xffffffffu, &out), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_subscribe(ep, NO_SUCH_ID, BOB, RVOIP_EVENT_PACKAGE_PRESENCE, &out), RVOIP_RESULT_NOT_FOUND);
    CHECK(out == SENTINEL_ID);

    CHECK_RC(rvoip_endpoint_unsubscribe(NULL, 1), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_endpoint_unsubscribe(ep, NO_SUCH_ID), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_endpoint_unsubscribe(ep, 0), RVOIP_RESULT_NOT_FOUND);

    CHECK_RC(rvoip_account_publish_presence(NULL, acc, true, NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_publish_presence(ep, acc, true, NULL, "out to lunch"), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_publish_presence(ep, acc, true, NULL, "away\r\n"), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_publish_presence(ep, acc, true, BAD_UTF8, "away"), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_publish_presence(ep, acc, true, "Away", BAD_UTF8), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_publish_presence(ep, NO_SUCH_ID, true, NULL, NULL), RVOIP_RESULT_NOT_FOUND);

    CHECK_RC(rvoip_account_unpublish_presence(NULL, acc), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_unpublish_presence(ep, NO_SUCH_ID), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_account_unpublish_presence(ep, acc), RVOIP_RESULT_NOT_FOUND); /* nothing published */
}

int main(void) {
    static party alice, bob, carol; /* static: the logs are large */
    rvoip_server_opts so;
    rvoip_server *srv = NULL;
    rvoip_call_opts o;
    rec_event e;
    uint16_t port = 0;
    uint64_t a_acc, b_acc, c_acc, sub_p = SENTINEL_ID, sub_d = SENTINEL_ID, c_call, b_call;
    int ac = 0, bc = 0, cc = 0, i, n, last, lamp[64];

    test_begin("smoke_presence");
    party_init(&alice, "alice");
    party_init(&bob, "bob");
    party_init(&carol, "carol");

    rvoip_server_opts_default(&so);
    so.listen = "udp:127.0.0.1:0";
    so.domain = "127.0.0.1";
    so.users = "alice:apw,bob:bpw,carol:cpw";
    CHECK_OK(rvoip_server_new(&so, &srv));
    CHECK_OK(rvoip_server_start(srv));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, &port));
    printf("server on udp port %u\n", (unsigned)port);

    alice.ep = new_endpoint();
    bob.ep = new_endpoint();
    carol.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(alice.ep, record_cb, &alice));
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.ep, record_cb, &bob));
    CHECK_OK(rvoip_endpoint_set_event_callback(carol.ep, record_cb, &carol));
    a_acc = add(&alice, "alice", "apw", port);
    b_acc = add(&bob, "bob", "bpw", port);
    c_acc = add(&carol, "carol", "cpw", port);
    check_badargs(alice.ep, a_acc);

    /* ---- 1. alice watches bob's presence: offline at first (he never published). */
    CHECK_OK(rvoip_account_subscribe(alice.ep, a_acc, BOB, RVOIP_EVENT_PACKAGE_PRESENCE, &sub_p));
    CHECK(sub_p != 0 && sub_p != SENTINEL_ID);
    e = wait_for(&alice, &ac, RVOIP_EVENT_SUBSCRIPTION_STATE, 0, -1, "the first SUBSCRIPTION_STATE");
    if (e.subscription_id != sub_p || e.state != RVOIP_SUBSCRIPTION_SUBSCRIBING)
        FAIL("alice: first SUBSCRIPTION_STATE %s on %llu, want subscribing on %llu", sub_name(e.state),
             (unsigned long long)e.subscription_id, (unsigned long long)sub_p);
    CHECK(e.account_id == 0 && e.call_id == 0);
    i = ac;
    wait_for(&alice, &i, RVOIP_EVENT_SUBSCRIPTION_STATE, sub_p, RVOIP_SUBSCRIPTION_ACTIVE, "presence subscription ACTIVE");
    e = wait_for(&alice, &ac, RVOIP_EVENT_BUDDY_PRESENCE, sub_p, -1, "the first BUDDY_PRESENCE");
    if (e.online || e.text[0] || e.note[0])
        FAIL("alice: bob is %s (activity \"%s\", note \"%s\") before publishing, want offline",
             e.online ? "online" : "offline", e.text, e.note);
    if (!strstr(e.target, "sip:bob@127.0.0.1")) FAIL("alice: presence entity \"%s\", want bob", e.target);
    printf("alice: bob's presence before he publishes: offline (%s)\n", e.target);

    /* ---- 2. bob publishes "away"; then plain online; then unpublishes. */
    CHECK_OK(rvoip_account_publish_presence(bob.ep, b_acc, true, "Away", "away"));
    e = wait_for(&bob, &bc, RVOIP_EVENT_PUBLISH_RESULT, 0, -1, "PUBLISH_RESULT");
    if (e.status != 200 || e.account_id != b_acc)
        FAIL("bob: PUBLISH_RESULT %u %s for account %llu, want 200 for %llu", (unsigned)e.status, e.text,
             (unsigned long long)e.account_id, (unsigned long long)b_acc);
    CHECK(e.text[0] != 0 && e.subscription_id == 0);
    for (;;) {
        e = wait_for(&alice, &ac, RVOIP_EVENT_BUDDY_PRESENCE, sub_p, -1, "BUDDY_PRESENCE online away");
        if (e.online) break;
    }
    if (strcmp(e.text, "away") != 0 || strcmp(e.note, "Away") != 0)
        FAIL("alice: bob online with activity \"%s\" note \"%s\", want away / Away", e.text, e.note);
    printf("alice: bob is online, activity %s, note %s\n", e.text, e.note);

    CHECK_OK(rvoip_account_publish_presence(bob.ep, b_acc, true, NULL, ""));
    for (;;) {
        e = wait_for(&alice, &ac, RVOIP_EVENT_BUDDY_PRESENCE, sub_p, -1, "BUDDY_PRESENCE online, no activity");
        if (e.online && !e.text[0]) break;
    }
    if (e.note[0]) FAIL("alice: note \"%s\" after a publish without one", e.note);
    e = wait_for(&bob, &bc, RVOIP_EVENT_PUBLISH_RESULT, 0, -1, "PUBLISH_RESULT (replaced status)");
    CHECK(e.status == 200);

    CHECK_OK(rvoip_account_unpublish_presence(bob.ep, b_acc));
    for (;;) {
        e = wait_for(&alice, &ac, RVOIP_EVENT_BUDDY_PRESENCE, sub_p, -1, "BUDDY_PRESENCE offline after unpublish");
        if (!e.online) break;
    }
    printf("alice: bob is offline after his unpublish\n");

    /* ---- 3. alice's busy-lamp field for bob; carol calls bob. */
    CHECK_OK(rvoip_account_subscribe(alice.ep, a_acc, BOB, RVOIP_EVENT_PACKAGE_DIALOG, &sub_d));
    CHECK(sub_d != 0 && sub_d != SENTINEL_ID && sub_d != sub_p);
    e = wait_for(&alice, &ac, RVOIP_EVENT_LINE_STATE, sub_d, -1, "the first LINE_STATE");
    if (e.state != RVOIP_LINE_IDLE) FAIL("alice: bob's line is %s at first, want idle", line_name(e.state));
    if (!strstr(e.target, "sip:bob@127.0.0.1")) FAIL("alice: line entity \"%s\", want bob", e.target);
    o = quiet_opts();
    CHECK_OK(rvoip_call_make(carol.ep, c_acc, BOB, &o, &c_call));
    {
        int k = RVOIP_EVENT_INCOMING_CALL;
        i = party_wait(&bob, &bc, is_kind, &k, WAIT_MS);
        if (i < 0) dump_fail(&bob, "INCOMING_CALL from carol");
        pthread_mutex_lock(&bob.mu);
        b_call = bob.ev[i].call_id;
        pthread_mutex_unlock(&bob.mu);
    }
    wait_for(&alice, &ac, RVOIP_EVENT_LINE_STATE, sub_d, RVOIP_LINE_RINGING, "LINE_STATE ringing");
    o = quiet_opts();
    CHECK_OK(rvoip_call_answer(bob.ep, b_call, &o));
    wait_for(&alice, &ac, RVOIP_EVENT_LINE_STATE, sub_d, RVOIP_LINE_IN_CALL, "LINE_STATE in-call");
    {
        int k = RVOIP_CALL_CONNECTED;
        i = cc;
        if (party_wait(&carol, &i, is_call_state, &k, WAIT_MS) < 0) dump_fail(&carol, "CONNECTED");
    }
    CHECK_OK(rvoip_call_hangup(carol.ep, c_call));
    wait_for(&alice, &ac, RVOIP_EVENT_LINE_STATE, sub_d, RVOIP_LINE_IDLE, "LINE_STATE idle after the call");
    printf("alice: bob's lamp went idle, ringing, in-call, idle\n");

    /* ---- 4. alice unsubscribes both. */
    CHECK_OK(rvoip_endpoint_unsubscribe(alice.ep, sub_p));
    CHECK_OK(rvoip_endpoint_unsubscribe(alice.ep, sub_d));
    CHECK_RC(rvoip_endpoint_unsubscribe(alice.ep, sub_p), RVOIP_RESULT_NOT_FOUND);
    i = ac;
    e = wait_for(&alice, &i, RVOIP_EVENT_SUBSCRIPTION_STATE, sub_p, RVOIP_SUBSCRIPTION_TERMINATED, "presence TERMINATED");
    if (strcmp(e.text, "unsubscribed") != 0) FAIL("alice: presence subscription ended \"%s\", want unsubscribed", e.text);
    i = ac;
    e = wait_for(&alice, &i, RVOIP_EVENT_SUBSCRIPTION_STATE, sub_d, RVOIP_SUBSCRIPTION_TERMINATED, "dialog TERMINATED");
    if (strcmp(e.text, "unsubscribed") != 0) FAIL("alice: dialog subscription ended \"%s\", want unsubscribed", e.text);
    CHECK_RC(rvoip_endpoint_unsubscribe(alice.ep, sub_d), RVOIP_RESULT_NOT_FOUND);
    sleep_ms(300);

    /* ---- 5. Who heard what. */
    pthread_mutex_lock(&alice.mu);
    for (i = 0, n = 0, last = -1; i < alice.n; i++) {
        const rec_event *x = &alice.ev[i];
        if (!is_presence_kind(x->kind)) continue;
        CHECK(x->kind != RVOIP_EVENT_PUBLISH_RESULT);
        CHECK(x->subscription_id == sub_p || x->subscription_id == sub_d);
        CHECK(x->kind != RVOIP_EVENT_LINE_STATE || x->subscription_id == sub_d);
        CHECK(x->kind != RVOIP_EVENT_BUDDY_PRESENCE || x->subscription_id == sub_p);
        if (x->kind == RVOIP_EVENT_LINE_STATE && x->state != last && n < 64) lamp[n++] = last = x->state;
    }
    pthread_mutex_unlock(&alice.mu);
    if (n != 4 || lamp[0] != RVOIP_LINE_IDLE || lamp[1] != RVOIP_LINE_RINGING || lamp[2] != RVOIP_LINE_IN_CALL ||
        lamp[3] != RVOIP_LINE_IDLE)
        dump_fail(&alice, "the lamp sequence idle, ringing, in-call, idle");
    for (i = RVOIP_EVENT_SUBSCRIPTION_STATE; i <= RVOIP_EVENT_LINE_STATE; i++) {
        CHECK(count_kind(&bob, (rvoip_event_kind)i) == 0);
        CHECK(count_kind(&carol, (rvoip_event_kind)i) == 0);
    }
    CHECK(count_kind(&bob, RVOIP_EVENT_PUBLISH_RESULT) >= 2);
    CHECK(count_kind(&carol, RVOIP_EVENT_PUBLISH_RESULT) == 0);

    {
        char seq[4096];
        party_sequence(&alice, seq, sizeof seq);
        printf("alice: %s\n", seq);
        party_sequence(&bob, seq, sizeof seq);
        printf("bob: %s\n", seq);
    }
    CHECK(!alice.overflow && !bob.overflow && !carol.overflow);
    rvoip_endpoint_free(alice.ep);
    rvoip_endpoint_free(bob.ep);
    rvoip_endpoint_free(carol.ep);
    rvoip_server_free(srv);
    party_destroy(&alice);
    party_destroy(&bob);
    party_destroy(&carol);
    test_end();
    return 0;
}
