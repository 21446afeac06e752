/*
 * C smoke test 7: call transfer (RFC 3515 REFER), early media, redirect and DTMF by SIP INFO
 * through the C ABI.
 *
 * An embedded server (udp:127.0.0.1:0, users alice, bob, carol) and three endpoints that
 * register to it; alice's account sends DTMF by SIP INFO (dtmf_mode). Then:
 *   1. alice calls bob, bob answers; alice asks for a blind transfer to carol
 *      (rvoip_call_transfer); bob gets TRANSFER_REQUESTED for his call with the target and
 *      alice as Referred-By, and refuses it with 603 (rvoip_endpoint_reject_transfer): alice
 *      gets exactly one TRANSFER_STATUS, 603 final, and the call stays up; a second decision on
 *      the same request is NOT_FOUND;
 *   2. alice asks again; bob accepts (rvoip_endpoint_accept_transfer) and gets a new call id;
 *      carol rings (INCOMING_CALL, replaces_call_id 0) and answers; bob's new call connects;
 *      alice's TRANSFER_STATUS events run 100 (not final) ... 200 final, and her call and
 *      bob's old one end;
 *   3. alice calls carol; carol starts early media (rvoip_call_answer_early): alice's call is
 *      EARLY_MEDIA with media before CONNECTED; carol answers: CONNECTED;
 *   4. alice calls bob; bob redirects to carol (rvoip_call_redirect): alice gets CALL_REDIRECTED
 *      302 with carol's URI on the same call id, carol rings and answers, alice connects;
 *      alice sends "5#" and carol receives both keys while alice's RTP telephone-event counter
 *      stays 0 (the keys went by SIP INFO).
 * Bad arguments to the new functions give the documented codes and leave out-parameters alone.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#define SENTINEL_ID ((uint64_t)0x5151515151515151ULL)
#define NO_SUCH_ID ((uint64_t)999999)
static const char BAD_UTF8[] = "\xff\xfe";
static const char *const CAROL = "sip:carol@127.0.0.1";

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

/* The call state `state` of `call_id`. */
typedef struct want_state {
    uint64_t call_id;
    int state;
} want_state;
static int is_state_of(const rec_event *e, const void *arg) {
    const want_state *w = (const want_state *)arg;
    return e->kind == RVOIP_EVENT_CALL_STATE && e->call_id == w->call_id && e->state == w->state;
}

/* Waits (from the start of p's log) for `call_id` to reach `state`; returns the event index. */
static int wait_call(party *p, uint64_t call_id, int state, const char *what) {
    int from = 0, i;
    want_state w;
    w.call_id = call_id;
    w.state = state;
    i = party_wait(p, &from, is_state_of, &w, WAIT_MS);
    if (i < 0) dump_fail(p, what);
    return i;
}

/* Waits for the next event of `kind` at or after *cursor; returns its index. */
static int wait_kind(party *p, int *cursor, rvoip_event_kind kind, const char *what) {
    int k = (int)kind, i = party_wait(p, cursor, is_kind, &k, WAIT_MS);
    if (i < 0) dump_fail(p, what);
    return i;
}

static int count_kind(party *p, rvoip_event_kind kind) {
    int i, n = 0;
    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->n; i++) n += p->ev[i].kind == kind;
    pthread_mutex_unlock(&p->mu);
    return n;
}

static rec_event event_at(party *p, int i) {
    rec_event e;
    pthread_mutex_lock(&p->mu);
    e = p->ev[i];
    pthread_mutex_unlock(&p->mu);
    return e;
}

static uint64_t add(party *p, const char *user, const char *pw, uint16_t port, rvoip_dtmf_mode mode) {
    rvoip_account_opts a;
    char aor[64], server[32];
    uint64_t id = SENTINEL_ID;
    int cursor = 0, st = RVOIP_REGISTRATION_REGISTERED;
    snprintf(aor, sizeof aor, "sip:%s@127.0.0.1", user);
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)port);
    rvoip_account_opts_default(&a);
    CHECK(a.dtmf_mode == RVOIP_DTMF_RFC4733);
    a.aor = aor;
    a.password = pw;
    a.server = server;
    a.expires_s = 300;
    a.dtmf_mode = 7; /* none of the RVOIP_DTMF_* values */
    CHECK_RC(rvoip_account_add(p->ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(id == SENTINEL_ID);
    a.dtmf_mode = mode;
    CHECK_OK(rvoip_account_add(p->ep, &a, &id));
    CHECK_OK(rvoip_account_register(p->ep, id));
    if (party_wait(p, &cursor, is_reg_state, &st, WAIT_MS) < 0) dump_fail(p, "REGISTERED");
    return id;
}

/* `from` calls `uri`; `to` answers the next INCOMING_CALL at or after *to_cursor; both are
 * CONNECTED. *to_call gets the callee's call id; returns the caller's. */
static uint64_t connect_call(party *from, uint64_t acc, const char *uri, party *to, int *to_cursor,
                             uint64_t *to_call) {
    rvoip_call_opts o = quiet_opts();
    uint64_t c = 0;
    int i;
    CHECK_OK(rvoip_call_make(from->ep, acc, uri, &o, &c));
    i = wait_kind(to, to_cursor, RVOIP_EVENT_INCOMING_CALL, "INCOMING_CALL");
    *to_call = event_at(to, i).call_id;
    o = quiet_opts();
    CHECK_OK(rvoip_call_answer(to->ep, *to_call, &o));
    wait_call(from, c, RVOIP_CALL_CONNECTED, "caller CONNECTED");
    wait_call(to, *to_call, RVOIP_CALL_CONNECTED, "callee CONNECTED");
    return c;
}

static void check_badargs(rvoip_endpoint *ep, uint64_t live_call) {
    const char *targets[2] = {CAROL, NULL};
    rvoip_call_opts o;
    uint64_t out = SENTINEL_ID;

    CHECK_RC(rvoip_call_transfer(NULL, live_call, CAROL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_transfer(ep, live_call, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_transfer(ep, live_call, BAD_UTF8), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_transfer(ep, live_call, "not a uri"), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_transfer(ep, NO_SUCH_ID, CAROL), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_transfer_to_call(NULL, live_call, live_call), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_transfer_to_call(ep, live_call, NO_SUCH_ID), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_transfer_to_call(ep, NO_SUCH_ID, live_call), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_transfer_to_call(ep, live_call, live_call), RVOIP_RESULT_INVALID_ARGUMENT);

    /* The audio objects are consumed even when the function fails (valgrind: no leak). */
    o = quiet_opts();
    CHECK_RC(rvoip_endpoint_accept_transfer(NULL, 1, &o, &out), RVOIP_RESULT_NULL_ARGUMENT);
    o = quiet_opts();
    CHECK_RC(rvoip_endpoint_accept_transfer(ep, 1, &o, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    o = quiet_opts();
    CHECK_RC(rvoip_endpoint_accept_transfer(ep, NO_SUCH_ID, &o, &out), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_endpoint_accept_transfer(ep, 0, NULL, &out), RVOIP_RESULT_NOT_FOUND);
    CHECK(out == SENTINEL_ID);
    CHECK_RC(rvoip_endpoint_reject_transfer(NULL, 1, 603), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_endpoint_reject_transfer(ep, NO_SUCH_ID, 200), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_endpoint_reject_transfer(ep, NO_SUCH_ID, 603), RVOIP_RESULT_NOT_FOUND);

    o = quiet_opts();
    CHECK_RC(rvoip_call_answer_early(NULL, live_call, &o), RVOIP_RESULT_NULL_ARGUMENT);
    o = quiet_opts();
    CHECK_RC(rvoip_call_answer_early(ep, NO_SUCH_ID, &o), RVOIP_RESULT_NOT_FOUND);
    o = quiet_opts(); /* an established call: no longer an unanswered incoming one */
    CHECK_RC(rvoip_call_answer_early(ep, live_call, &o), RVOIP_RESULT_INVALID_STATE);

    CHECK_RC(rvoip_call_redirect(NULL, live_call, targets, 1), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_redirect(ep, live_call, NULL, 1), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_redirect(ep, live_call, targets, 2), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_redirect(ep, live_call, targets, 0), RVOIP_RESULT_INVALID_ARGUMENT);
    targets[1] = "not a uri";
    CHECK_RC(rvoip_call_redirect(ep, live_call, targets, 2), RVOIP_RESULT_INVALID_ARGUMENT);
    targets[1] = BAD_UTF8;
    CHECK_RC(rvoip_call_redirect(ep, live_call, targets, 2), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_redirect(ep, NO_SUCH_ID, targets, 1), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_redirect(ep, live_call, targets, 1), RVOIP_RESULT_INVALID_STATE);
}

int main(void) {
    static party alice, bob, carol; /* static: the logs are large */
    rvoip_server_opts so;
    rvoip_server *srv = NULL;
    rvoip_call_opts o;
    rvoip_call_stats st;
    rec_event e;
    uint16_t port = 0;
    uint64_t a_acc, b_acc, c_acc, a_call, b_call, b_new = SENTINEL_ID, c_call, t1, t2;
    int ac = 0, bc = 0, cc = 0, i, n;
    const char *to_carol[1];
    char digits[3];

    test_begin("smoke_transfer");
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
    a_acc = add(&alice, "alice", "apw", port, RVOIP_DTMF_SIP_INFO);
    b_acc = add(&bob, "bob", "bpw", port, RVOIP_DTMF_RFC4733);
    c_acc = add(&carol, "carol", "cpw", port, RVOIP_DTMF_RFC4733);
    (void)b_acc;
    (void)c_acc;

    /* ---- 1. alice calls bob; a transfer that bob refuses with 603. */
    a_call = connect_call(&alice, a_acc, "sip:bob@127.0.0.1", &bob, &bc, &b_call);
    check_badargs(alice.ep, a_call);
    CHECK_OK(rvoip_call_transfer(alice.ep, a_call, CAROL));
    i = wait_kind(&bob, &bc, RVOIP_EVENT_TRANSFER_REQUESTED, "TRANSFER_REQUESTED #1");
    e = event_at(&bob, i);
    CHECK(e.call_id == b_call && e.transfer_id != 0);
    if (strcmp(e.target, CAROL) != 0) FAIL("transfer target \"%s\", want %s", e.target, CAROL);
    if (!strstr(e.text, "sip:alice@127.0.0.1")) FAIL("referred_by \"%s\" does not name alice", e.text);
    t1 = e.transfer_id;
    CHECK_OK(rvoip_endpoint_reject_transfer(bob.ep, t1, 603));
    CHECK_RC(rvoip_endpoint_reject_transfer(bob.ep, t1, 603), RVOIP_RESULT_NOT_FOUND);
    o = quiet_opts();
    CHECK_RC(rvoip_endpoint_accept_transfer(bob.ep, t1, &o, &b_new), RVOIP_RESULT_NOT_FOUND);
    CHECK(b_new == SENTINEL_ID);
    i = wait_kind(&alice, &ac, RVOIP_EVENT_TRANSFER_STATUS, "TRANSFER_STATUS 603");
    e = event_at(&alice, i);
    if (e.call_id != a_call || e.status != 603 || !e.is_final)
        FAIL("alice: TRANSFER_STATUS %u%s on call %llu, want 603 final on %llu", (unsigned)e.status,
             e.is_final ? " final" : "", (unsigned long long)e.call_id, (unsigned long long)a_call);
    printf("alice: refused transfer: TRANSFER_STATUS %u %s (final)\n", (unsigned)e.status, e.text);
    sleep_ms(300);
    CHECK(count_kind(&alice, RVOIP_EVENT_TRANSFER_STATUS) == 1);
    CHECK_OK(rvoip_call_get_stats(alice.ep, a_call, &st)); /* still up */
    CHECK_OK(rvoip_call_get_stats(bob.ep, b_call, &st));

    /* ---- 2. The same transfer again; bob accepts, carol answers. */
    CHECK_OK(rvoip_call_transfer(alice.ep, a_call, CAROL));
    i = wait_kind(&bob, &bc, RVOIP_EVENT_TRANSFER_REQUESTED, "TRANSFER_REQUESTED #2");
    e = event_at(&bob, i);
    t2 = e.transfer_id;
    CHECK(e.call_id == b_call && t2 != 0 && t2 != t1);
    o = quiet_opts();
    CHECK_OK(rvoip_endpoint_accept_transfer(bob.ep, t2, &o, &b_new));
    CHECK(b_new != SENTINEL_ID && b_new != 0 && b_new != b_call);
    CHECK_RC(rvoip_endpoint_reject_transfer(bob.ep, t2, 603), RVOIP_RESULT_NOT_FOUND);
    i = wait_kind(&carol, &cc, RVOIP_EVENT_INCOMING_CALL, "carol INCOMING_CALL (transfer)");
    e = event_at(&carol, i);
    c_call = e.call_id;
    CHECK(e.replaces_call_id == 0);
    if (!strstr(e.text, "bob")) FAIL("carol: the transferred call comes from \"%s\", want bob", e.text);
    o = quiet_opts();
    CHECK_OK(rvoip_call_answer(carol.ep, c_call, &o));
    wait_call(&bob, b_new, RVOIP_CALL_CONNECTED, "bob's new call CONNECTED");
    wait_call(&carol, c_call, RVOIP_CALL_CONNECTED, "carol CONNECTED");
    for (;;) {
        i = wait_kind(&alice, &ac, RVOIP_EVENT_TRANSFER_STATUS, "TRANSFER_STATUS 200 final");
        e = event_at(&alice, i);
        CHECK(e.call_id == a_call);
        if (e.is_final) break;
        CHECK(e.status >= 100 && e.status < 200);
    }
    if (e.status != 200) FAIL("alice: final TRANSFER_STATUS %u, want 200", (unsigned)e.status);
    i = wait_call(&alice, a_call, RVOIP_CALL_ENDED, "alice's transferred call ENDED");
    wait_call(&bob, b_call, RVOIP_CALL_ENDED, "bob's transferred call ENDED");
    /* The first status of the accepted transfer is 100 Trying, not final (RFC 3515 §2.4.5). */
    n = 0;
    pthread_mutex_lock(&alice.mu);
    for (i = 0; i < alice.n; i++) {
        if (alice.ev[i].kind == RVOIP_EVENT_TRANSFER_STATUS && ++n == 2)
            CHECK(alice.ev[i].status == 100 && !alice.ev[i].is_final);
    }
    pthread_mutex_unlock(&alice.mu);
    CHECK(n >= 3); /* 603; then 100 ... 200 */
    CHECK_RC(rvoip_call_hangup(alice.ep, a_call), RVOIP_RESULT_NOT_FOUND);
    CHECK_OK(rvoip_call_get_stats(bob.ep, b_new, &st)); /* bob and carol talk on */
    CHECK_OK(rvoip_call_hangup(carol.ep, c_call));
    wait_call(&bob, b_new, RVOIP_CALL_ENDED, "bob's new call ENDED");

    /* ---- 3. Early media: carol answers alice's call with a 183 first. */
    o = quiet_opts();
    CHECK_OK(rvoip_call_make(alice.ep, a_acc, CAROL, &o, &a_call));
    i = wait_kind(&carol, &cc, RVOIP_EVENT_INCOMING_CALL, "carol INCOMING_CALL (early media)");
    c_call = event_at(&carol, i).call_id;
    o = quiet_opts();
    CHECK_OK(rvoip_call_answer_early(carol.ep, c_call, &o));
    o = quiet_opts();
    CHECK_RC(rvoip_call_answer_early(carol.ep, c_call, &o), RVOIP_RESULT_INVALID_STATE);
    wait_call(&alice, a_call, RVOIP_CALL_EARLY_MEDIA, "alice EARLY_MEDIA");
    CHECK_OK(rvoip_call_answer(carol.ep, c_call, NULL));
    wait_call(&alice, a_call, RVOIP_CALL_CONNECTED, "alice CONNECTED after early media");
    CHECK_OK(rvoip_call_hangup(alice.ep, a_call));
    wait_call(&carol, c_call, RVOIP_CALL_ENDED, "carol ENDED (early media call)");

    /* ---- 4. Redirect: bob sends alice's call on to carol; DTMF by SIP INFO there. */
    o = quiet_opts();
    CHECK_OK(rvoip_call_make(alice.ep, a_acc, "sip:bob@127.0.0.1", &o, &a_call));
    i = wait_kind(&bob, &bc, RVOIP_EVENT_INCOMING_CALL, "bob INCOMING_CALL (redirect)");
    b_call = event_at(&bob, i).call_id;
    to_carol[0] = CAROL;
    CHECK_OK(rvoip_call_redirect(bob.ep, b_call, to_carol, 1));
    i = wait_kind(&alice, &ac, RVOIP_EVENT_CALL_REDIRECTED, "CALL_REDIRECTED");
    e = event_at(&alice, i);
    if (e.call_id != a_call || e.status != 302 || strcmp(e.target, CAROL) != 0)
        FAIL("alice: CALL_REDIRECTED %u to \"%s\" on %llu, want 302 to %s on %llu", (unsigned)e.status,
             e.target, (unsigned long long)e.call_id, CAROL, (unsigned long long)a_call);
    wait_call(&bob, b_call, RVOIP_CALL_ENDED, "bob's redirected call ENDED");
    i = wait_kind(&carol, &cc, RVOIP_EVENT_INCOMING_CALL, "carol INCOMING_CALL (redirect)");
    c_call = event_at(&carol, i).call_id;
    o = quiet_opts();
    CHECK_OK(rvoip_call_answer(carol.ep, c_call, &o));
    wait_call(&alice, a_call, RVOIP_CALL_CONNECTED, "alice CONNECTED to carol");
    wait_call(&carol, c_call, RVOIP_CALL_CONNECTED, "carol CONNECTED (redirect)");
    CHECK_OK(rvoip_call_send_dtmf(alice.ep, a_call, "5#"));
    for (i = 0; i < 2; i++) {
        int k = wait_kind(&carol, &cc, RVOIP_EVENT_DTMF_RECEIVED, "DTMF by SIP INFO");
        e = event_at(&carol, k);
        CHECK(e.call_id == c_call);
        digits[i] = e.digit;
    }
    digits[2] = 0;
    if (strcmp(digits, "5#") != 0) FAIL("carol got DTMF \"%s\", want \"5#\"", digits);
    CHECK_OK(rvoip_call_get_stats(alice.ep, a_call, &st));
    if (st.dtmf_sent != 0) FAIL("alice sent %llu RTP telephone-events; SIP INFO wanted", (unsigned long long)st.dtmf_sent);
    CHECK_OK(rvoip_call_hangup(alice.ep, a_call));
    wait_call(&carol, c_call, RVOIP_CALL_ENDED, "carol ENDED (redirect)");
    sleep_ms(300);

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
