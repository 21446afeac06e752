/*
 * C smoke test 3: calling back into the library from event callbacks (the header: "the
 * callback may call any function, including hanging up, freeing other objects and freeing
 * this endpoint").
 *
 * 1. carol calls dave directly; dave's callback frees dave's own endpoint on INCOMING_CALL;
 *    the free returns inside the callback, no further callback of dave runs, and carol's
 *    call ends.
 * 2. alice calls bob through an embedded server; bob's callback answers on INCOMING_CALL and
 *    hangs up on CONNECTED (a second hang-up there gives NOT_FOUND); alice's callback, on
 *    ENDED, frees an unused audio source, another endpoint (carol), another server and bob's
 *    endpoint (whose event thread may be inside bob's callback at that moment).
 * Every wait is bounded: a deadlock fails the test instead of hanging it.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

typedef struct ctx {
    party p;
    /* bob */
    rvoip_result answer_rc, hangup_rc, hangup2_rc;
    int hung_up;
    /* alice: what her ENDED handler frees, and what it saw */
    rvoip_audio_source *free_src;
    rvoip_endpoint *free_ep;    /* carol */
    party *free_ep_party;       /* carol's log */
    rvoip_server *free_srv;     /* a second server */
    rvoip_endpoint *free_peer;  /* bob */
    int freed_count_at_free;    /* carol's event count right after her free returned */
    int frees_done;
    /* dave */
    int freed_self;
    int after_free; /* callbacks that ran after the free returned (must stay 0) */
} ctx;

static ctx alice, bob, carol, dave;

/* Waits until `*flag` (guarded by c->p.mu) is set. */
static void wait_flag(ctx *c, int *flag, const char *what) {
    struct timespec dl;
    int64_t end;
    int ok;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    end = (int64_t)dl.tv_sec * 1000 + dl.tv_nsec / 1000000 + (int64_t)WAIT_MS * time_scale();
    dl.tv_sec = (time_t)(end / 1000);
    dl.tv_nsec = (long)(end % 1000) * 1000000L;
    pthread_mutex_lock(&c->p.mu);
    while (!*flag) {
        if (pthread_cond_timedwait(&c->p.cv, &c->p.mu, &dl) == ETIMEDOUT) break;
    }
    ok = *flag;
    pthread_mutex_unlock(&c->p.mu);
    if (!ok) FAIL("%s: timed out waiting for %s (a deadlock in a callback?)", c->p.name, what);
}

static void set_flag(ctx *c, int *flag) {
    pthread_mutex_lock(&c->p.mu);
    *flag = 1;
    pthread_cond_broadcast(&c->p.cv);
    pthread_mutex_unlock(&c->p.mu);
}

/* Dave frees his own endpoint from inside his callback. */
static void dave_cb(void *user_data, const rvoip_event *e) {
    ctx *d = (ctx *)user_data;
    int freed;
    pthread_mutex_lock(&d->p.mu);
    freed = d->freed_self;
    if (freed) d->after_free++;
    pthread_mutex_unlock(&d->p.mu);
    if (freed) return;
    party_record(&d->p, e);
    if (e->kind == RVOIP_EVENT_INCOMING_CALL) {
        rvoip_endpoint_free(d->p.ep);
        d->p.ep = NULL;
        set_flag(d, &d->freed_self);
    }
}

/* Bob answers, and hangs up as soon as the call is connected. */
static void bob_cb(void *user_data, const rvoip_event *e) {
    ctx *b = (ctx *)user_data;
    if (e->kind == RVOIP_EVENT_INCOMING_CALL) {
        rvoip_call_opts o;
        rvoip_call_opts_default(&o);
        o.source = silence_source();
        o.sink = discard_sink();
        b->answer_rc = rvoip_call_answer(b->p.ep, e->call_id, &o);
    } else if (e->kind == RVOIP_EVENT_CALL_STATE && e->call_state == RVOIP_CALL_CONNECTED) {
        b->hangup_rc = rvoip_call_hangup(b->p.ep, e->call_id);
        b->hangup2_rc = rvoip_call_hangup(b->p.ep, e->call_id);
        set_flag(b, &b->hung_up);
    }
    party_record(&b->p, e);
}

/* Alice frees other objects when her call ends. */
static void alice_cb(void *user_data, const rvoip_event *e) {
    ctx *a = (ctx *)user_data;
    party_record(&a->p, e);
    if (e->kind == RVOIP_EVENT_CALL_STATE && e->call_state == RVOIP_CALL_ENDED && !a->frees_done) {
        rvoip_audio_source_free(a->free_src);
        a->free_src = NULL;
        rvoip_endpoint_free(a->free_ep);
        a->free_ep = NULL;
        a->freed_count_at_free = party_count(a->free_ep_party);
        rvoip_server_free(a->free_srv);
        a->free_srv = NULL;
        rvoip_endpoint_free(a->free_peer);
        a->free_peer = NULL;
        set_flag(a, &a->frees_done);
    }
}

int main(void) {
    rvoip_server *srv, *srv2;
    uint16_t port = 0, port2 = 0, dport = 0;
    uint64_t a_acc, call = 0, dcall = 0;
    int ac = 0, bc = 0, cc = 0, st, idx, n_before;
    char uri[64];
    rvoip_call_opts co;
    int64_t t0;

    test_begin("smoke_reentrant");
    party_init(&alice.p, "alice");
    party_init(&bob.p, "bob");
    party_init(&carol.p, "carol");
    party_init(&dave.p, "dave");

    /* ---- 1. dave frees himself from inside his callback ---- */
    carol.p.ep = new_endpoint();
    dave.p.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(carol.p.ep, record_cb, &carol.p));
    CHECK_OK(rvoip_endpoint_set_event_callback(dave.p.ep, dave_cb, &dave));
    CHECK_OK(rvoip_endpoint_udp_port(dave.p.ep, &dport));
    snprintf(uri, sizeof uri, "sip:dave@127.0.0.1:%u", (unsigned)dport);
    rvoip_call_opts_default(&co);
    co.source = silence_source();
    co.sink = discard_sink();
    CHECK_OK(rvoip_call_make(carol.p.ep, 0, uri, &co, &dcall));
    wait_flag(&dave, &dave.freed_self, "dave's free inside his own callback");
    st = RVOIP_CALL_ENDED;
    idx = party_wait(&carol.p, &cc, is_call_state, &st, WAIT_MS);
    if (idx < 0) FAIL("carol's call did not end after dave freed his endpoint");
    CHECK(carol.p.ev[idx].call_id == dcall);
    printf("carol: call to the self-freed dave ended with %u %s\n", (unsigned)carol.p.ev[idx].status,
           carol.p.ev[idx].text);
    CHECK(carol.p.ev[idx].status >= 400);
    CHECK(dave.p.ep == NULL);
    CHECK(dave.p.n == 1 && dave.p.ev[0].kind == RVOIP_EVENT_INCOMING_CALL);

    /* ---- 2. bob hangs up from his callback; alice frees things from hers ---- */
    srv = start_server(&port);
    srv2 = start_server(&port2);
    alice.p.ep = new_endpoint();
    bob.p.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(alice.p.ep, alice_cb, &alice));
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.p.ep, bob_cb, &bob));
    a_acc = add_account(alice.p.ep, "alice", "apw", port);
    add_account(bob.p.ep, "bob", "bpw", port);
    st = RVOIP_REGISTRATION_REGISTERED;
    if (party_wait(&alice.p, &ac, is_reg_state, &st, WAIT_MS) < 0) FAIL("alice did not register");
    if (party_wait(&bob.p, &bc, is_reg_state, &st, WAIT_MS) < 0) FAIL("bob did not register");

    CHECK_OK(rvoip_audio_source_tone_new(440.0, 8000, 8000, &alice.free_src));
    alice.free_ep = carol.p.ep;
    alice.free_ep_party = &carol.p;
    alice.free_srv = srv2;
    alice.free_peer = bob.p.ep;

    rvoip_call_opts_default(&co);
    CHECK_OK(rvoip_audio_source_tone_new(440.0, 8000, 8000, &co.source));
    co.sink = discard_sink();
    t0 = now_ms();
    CHECK_OK(rvoip_call_make(alice.p.ep, a_acc, "sip:bob@127.0.0.1", &co, &call));
    wait_flag(&bob, &bob.hung_up, "bob's hang-up from his callback");
    CHECK_OK(bob.answer_rc);
    CHECK_OK(bob.hangup_rc);
    CHECK_RC(bob.hangup2_rc, RVOIP_RESULT_NOT_FOUND);
    st = RVOIP_CALL_ENDED;
    idx = party_wait(&alice.p, &ac, is_call_state, &st, WAIT_MS);
    if (idx < 0) FAIL("alice: the call bob hung up did not end");
    CHECK(alice.p.ev[idx].call_id == call);
    CHECK(alice.p.ev[idx].status == 200);
    wait_flag(&alice, &alice.frees_done, "alice's frees inside her callback");
    printf("alice: ENDED %u; her callback freed a source, carol, a server and bob (%lld ms)\n",
           (unsigned)alice.p.ev[idx].status, (long long)(now_ms() - t0));
    CHECK(alice.free_src == NULL && alice.free_ep == NULL && alice.free_srv == NULL &&
          alice.free_peer == NULL);

    /* Alice still works after all that: her call id is stale, her account is there. */
    CHECK_RC(rvoip_call_hangup(alice.p.ep, call), RVOIP_RESULT_NOT_FOUND);
    CHECK_OK(rvoip_account_unregister(alice.p.ep, a_acc));

    /* No callback of a freed endpoint ran after its free returned. */
    sleep_ms(300);
    n_before = party_count(&carol.p);
    CHECK(n_before == alice.freed_count_at_free);
    pthread_mutex_lock(&dave.p.mu);
    CHECK(dave.after_free == 0);
    pthread_mutex_unlock(&dave.p.mu);

    rvoip_endpoint_free(alice.p.ep);
    rvoip_server_free(srv);
    party_destroy(&alice.p);
    party_destroy(&bob.p);
    party_destroy(&carol.p);
    party_destroy(&dave.p);
    test_end();
    return 0;
}
