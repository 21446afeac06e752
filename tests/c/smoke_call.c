/*
 * C smoke test 1: a whole call through the C ABI in one process.
 *
 * An embedded server (udp:127.0.0.1:0, users alice:apw and bob:bpw) and two endpoints
 * (udp 127.0.0.1:0, PCMU): both register; alice calls sip:bob@127.0.0.1 through the server
 * sending a 440 Hz tone; bob answers from his event callback with a PCM callback sink; bob's
 * received audio must have >= 90 % of its energy at 440 Hz (Goertzel per 20 ms block over the
 * last second); DTMF "1234#" from alice arrives at bob in order; alice holds and resumes (HELD,
 * then CONNECTED on both sides); alice hangs up; the event sequence of each party is asserted.
 * Both accounts make SRTP mandatory (RFC 3711) with SDES keys (RFC 4568), allowed over this
 * UDP signalling (srtp_sdes_over_insecure), so all of the above runs over SRTP: MEDIA_STARTED
 * says "SDES <suite>", and the statistics name the key exchange and suite and count no
 * authentication failures or replays.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

typedef struct bob_ctx {
    party p;
    pcm_buf rx;
    rvoip_result answer_rc;
    int answered; /* 1 once the callback answered */
    char security[64]; /* `security` of the first MEDIA_STARTED */
} bob_ctx;

/* Bob's callback: record, and answer an incoming call right here on the event thread. */
static void bob_cb(void *user_data, const rvoip_event *e) {
    bob_ctx *b = (bob_ctx *)user_data;
    if (e->kind == RVOIP_EVENT_INCOMING_CALL) {
        rvoip_call_opts o;
        rvoip_call_opts_default(&o);
        o.source = silence_source();
        CHECK_OK(rvoip_audio_sink_callback_new(8000, pcm_sink_cb, &b->rx, &o.sink));
        b->answer_rc = rvoip_call_answer(b->p.ep, e->call_id, &o);
        b->answered = 1;
    }
    if (e->kind == RVOIP_EVENT_MEDIA_STARTED && !b->security[0])
        copy_text(b->security, sizeof b->security, e->security);
    /* Recorded after acting, so a waiter that sees the event also sees answer_rc. */
    party_record(&b->p, e);
}

/* As add_account (common.h), with SRTP mandatory, keyed by SDES even over UDP. */
static uint64_t add_srtp_account(rvoip_endpoint *ep, const char *user, const char *pw, uint16_t port) {
    rvoip_account_opts a;
    char aor[64], server[32];
    uint64_t id = 0;
    snprintf(aor, sizeof aor, "sip:%s@127.0.0.1", user);
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)port);
    rvoip_account_opts_default(&a);
    CHECK(a.srtp_policy == RVOIP_SRTP_OPTIONAL && a.srtp_keying == RVOIP_SRTP_KEYING_AUTO);
    CHECK(!a.srtp_sdes_over_insecure);
    a.aor = aor;
    a.password = pw;
    a.server = server;
    a.expires_s = 300;
    a.srtp_policy = RVOIP_SRTP_MANDATORY;
    a.srtp_keying = RVOIP_SRTP_KEYING_SDES;
    a.srtp_sdes_over_insecure = true;
    CHECK_OK(rvoip_account_add(ep, &a, &id));
    CHECK(id != 0);
    CHECK_OK(rvoip_account_register(ep, id));
    return id;
}

/* The SRTP fields of a call's statistics after some media: SDES with `suite`, no packet
 * failed authentication or was a replay (RFC 3711 §3.3.2, §3.4). */
static void check_srtp_stats(const char *who, const rvoip_call_stats *s, const char *suite) {
    printf("%s: SRTP %s %s, auth failures %llu, replays %llu, dropped %llu\n", who,
           s->srtp_keying, s->srtp_suite, (unsigned long long)s->srtp_auth_failures,
           (unsigned long long)s->srtp_replays, (unsigned long long)s->srtp_dropped);
    if (strcmp(s->srtp_keying, "SDES") != 0) FAIL("%s: srtp_keying \"%s\", want SDES", who, s->srtp_keying);
    if (strcmp(s->srtp_suite, suite) != 0) FAIL("%s: srtp_suite \"%s\", want %s", who, s->srtp_suite, suite);
    CHECK(s->srtp_auth_failures == 0 && s->srtp_replays == 0);
}

static void wait_state(party *p, int *cursor, int state, const char *what) {
    if (party_wait(p, cursor, is_call_state, &state, WAIT_MS) < 0) {
        char seq[4096];
        party_sequence(p, seq, sizeof seq);
        FAIL("%s: timed out waiting for %s; events: %s", p->name, what, seq);
    }
}

static void expect_sequence(party *p, const char *want) {
    char seq[4096];
    party_sequence(p, seq, sizeof seq);
    if (strcmp(seq, want) != 0)
        FAIL("%s's events:\n  got  %s\n  want %s", p->name, seq, want);
    printf("%s: %s\n", p->name, seq);
}

int main(void) {
    static party alice; /* static: the logs are large */
    static bob_ctx bob;
    rvoip_server *srv;
    uint16_t port = 0;
    uint64_t a_acc, b_acc, a_call = 0, b_call;
    int ac = 0, bc = 0, st, kind, i, idx;
    rvoip_call_opts co;
    rvoip_audio_source *tone = NULL;
    char digits[8];
    double f1, f2;
    size_t have = 0;
    rvoip_call_stats stats;

    test_begin("smoke_call");
    party_init(&alice, "alice");
    party_init(&bob.p, "bob");
    pcm_init(&bob.rx);

    srv = start_server(&port);
    printf("server on udp port %u\n", (unsigned)port);
    alice.ep = new_endpoint();
    bob.p.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(alice.ep, record_cb, &alice));
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.p.ep, bob_cb, &bob));

    /* Both register. */
    a_acc = add_srtp_account(alice.ep, "alice", "apw", port);
    b_acc = add_srtp_account(bob.p.ep, "bob", "bpw", port);
    st = RVOIP_REGISTRATION_REGISTERED;
    if (party_wait(&alice, &ac, is_reg_state, &st, WAIT_MS) < 0) FAIL("alice did not register");
    if (party_wait(&bob.p, &bc, is_reg_state, &st, WAIT_MS) < 0) FAIL("bob did not register");
    CHECK(alice.ev[ac - 1].account_id == a_acc && alice.ev[ac - 1].status == 0);
    CHECK(bob.p.ev[bc - 1].account_id == b_acc);

    /* Alice calls bob through the server, sending 440 Hz. */
    CHECK_OK(rvoip_audio_source_tone_new(440.0, 8000, 10000, &tone));
    rvoip_call_opts_default(&co);
    co.source = tone; /* the call owns it now */
    co.sink = discard_sink();
    CHECK_OK(rvoip_call_make(alice.ep, a_acc, "sip:bob@127.0.0.1", &co, &a_call));
    CHECK(a_call != 0);

    /* Bob's callback answers; both end up connected. */
    kind = RVOIP_EVENT_INCOMING_CALL;
    idx = party_wait(&bob.p, &bc, is_kind, &kind, WAIT_MS);
    if (idx < 0) FAIL("bob: no INCOMING_CALL");
    b_call = bob.p.ev[idx].call_id;
    CHECK(b_call != 0);
    CHECK(strstr(bob.p.ev[idx].text, "alice") != NULL);
    CHECK(bob.answered);
    CHECK_OK(bob.answer_rc);
    wait_state(&alice, &ac, RVOIP_CALL_CONNECTED, "alice CONNECTED");
    wait_state(&bob.p, &bc, RVOIP_CALL_CONNECTED, "bob CONNECTED");

    /* Bob hears the tone: >= 90 % of the energy of the last second at 440 Hz. */
    sleep_ms(1500);
    f1 = pcm_tail_fraction(&bob.rx, 440.0, 1000, &have);
    printf("bob: 440 Hz share of the last second: %.3f (%zu samples at %u Hz)\n", f1, have,
           (unsigned)bob.rx.rate);
    if (f1 < 0.9) FAIL("bob hears 440 Hz at %.3f of the energy (%zu samples)", f1, have);
    /* The detector is selective: the same audio has next to nothing at 1000 Hz. */
    f2 = pcm_tail_fraction(&bob.rx, 1000.0, 1000, NULL);
    if (f2 > 0.05) FAIL("the Goertzel sees %.3f of the energy at 1000 Hz in a 440 Hz tone", f2);
    CHECK(bob.rx.rate == 8000);
    CHECK_OK(rvoip_call_get_stats(alice.ep, a_call, &stats));
    CHECK(stats.tx_packets > 40);
    CHECK(strcmp(stats.codec, "PCMU") == 0);
    /* SRTP with SDES keys: MEDIA_STARTED says "SDES <suite>"; both sides use that suite. */
    printf("bob: media security \"%s\"\n", bob.security);
    if (strncmp(bob.security, "SDES ", 5) != 0 || !bob.security[5])
        FAIL("bob: media security \"%s\", want SDES <suite>", bob.security);
    check_srtp_stats("alice", &stats, bob.security + 5);
    CHECK_OK(rvoip_call_get_stats(bob.p.ep, b_call, &stats));
    CHECK(stats.rx_packets > 40);
    check_srtp_stats("bob", &stats, bob.security + 5);

    /* DTMF 1234# arrives at bob in order. */
    CHECK_OK(rvoip_call_send_dtmf(alice.ep, a_call, "1234#"));
    kind = RVOIP_EVENT_DTMF_RECEIVED;
    for (i = 0; i < 5; i++) {
        idx = party_wait(&bob.p, &bc, is_kind, &kind, WAIT_MS);
        if (idx < 0) FAIL("bob: DTMF digit %d did not arrive", i + 1);
        CHECK(bob.p.ev[idx].call_id == b_call);
        digits[i] = bob.p.ev[idx].digit;
    }
    digits[5] = 0;
    if (strcmp(digits, "1234#") != 0) FAIL("bob got DTMF \"%s\", want \"1234#\"", digits);
    printf("bob: DTMF %s\n", digits);

    /* Hold, then resume. */
    CHECK_OK(rvoip_call_hold(alice.ep, a_call));
    wait_state(&alice, &ac, RVOIP_CALL_HELD, "alice HELD");
    CHECK(alice.ev[ac - 1].held_local && !alice.ev[ac - 1].held_remote);
    wait_state(&bob.p, &bc, RVOIP_CALL_HELD, "bob HELD");
    CHECK(bob.p.ev[bc - 1].held_remote && !bob.p.ev[bc - 1].held_local);
    CHECK_OK(rvoip_call_resume(alice.ep, a_call));
    wait_state(&alice, &ac, RVOIP_CALL_CONNECTED, "alice CONNECTED after resume");
    wait_state(&bob.p, &bc, RVOIP_CALL_CONNECTED, "bob CONNECTED after resume");

    /* The tone is still there after resume. */
    sleep_ms(1200);
    f2 = pcm_tail_fraction(&bob.rx, 440.0, 1000, &have);
    printf("bob: 440 Hz share of the last second after resume: %.3f\n", f2);
    if (f2 < 0.9) FAIL("after resume bob hears 440 Hz at %.3f", f2);

    /* Alice hangs up: ENDED 200 on both sides; a second hang-up is NOT_FOUND. */
    CHECK_OK(rvoip_call_hangup(alice.ep, a_call));
    CHECK_RC(rvoip_call_hangup(alice.ep, a_call), RVOIP_RESULT_NOT_FOUND);
    wait_state(&alice, &ac, RVOIP_CALL_ENDED, "alice ENDED");
    CHECK(alice.ev[ac - 1].status == 200);
    wait_state(&bob.p, &bc, RVOIP_CALL_ENDED, "bob ENDED");
    CHECK(bob.p.ev[bc - 1].status == 200);
    CHECK_RC(rvoip_call_hangup(bob.p.ep, b_call), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_get_stats(alice.ep, a_call, &stats), RVOIP_RESULT_NOT_FOUND);
    /* Let late events (MEDIA_STOPPED after ENDED) arrive. */
    sleep_ms(300);

    expect_sequence(&alice,
                    "REGISTERING,REGISTERED,CALLING,RINGING,MEDIA_STARTED(sendrecv),CONNECTED,"
                    "MEDIA_STARTED(sendonly),HELD,MEDIA_STARTED(sendrecv),CONNECTED,"
                    "MEDIA_STOPPED,ENDED");
    expect_sequence(&bob.p,
                    "REGISTERING,REGISTERED,INCOMING_CALL,RINGING,MEDIA_STARTED(sendrecv),CONNECTED,"
                    "DTMF(1),DTMF(2),DTMF(3),DTMF(4),DTMF(#),"
                    "MEDIA_STARTED(recvonly),HELD,MEDIA_STARTED(sendrecv),CONNECTED,"
                    "MEDIA_STOPPED,ENDED");
    CHECK(!alice.overflow && !bob.p.overflow);

    rvoip_endpoint_free(alice.ep);
    rvoip_endpoint_free(bob.p.ep);
    rvoip_server_free(srv);
    party_destroy(&alice);
    party_destroy(&bob.p);
    pthread_mutex_destroy(&bob.rx.mu);
    test_end();
    return 0;
}
