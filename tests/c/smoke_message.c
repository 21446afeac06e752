/*
 * C smoke test 5: instant messages (RFC 3428 MESSAGE, pager mode) through the C ABI.
 *
 * An embedded server (udp:127.0.0.1:0 and ws:127.0.0.1:0, users alice:apw and bob:bpw) and two
 * endpoints that register to it. Then, with rvoip_account_send_message:
 *   - alice -> bob, text/plain with a NUL and UTF-8 inside: bob gets one MESSAGE_RECEIVED with
 *     his account id, alice's From, his To, the content type, and exactly those body bytes
 *     (body_len, not strlen); alice gets one MESSAGE_RESULT with her message id and status 200;
 *   - bob -> alice, application/octet-stream with all 256 byte values: the same the other way;
 *   - alice -> an empty body (body NULL, body_len 0): delivered, body_len 0, body not NULL;
 *   - alice -> sip:nobody@127.0.0.1 (no such user): MESSAGE_RESULT >= 400 with its id, and
 *     nobody receives anything;
 *   - message ids are non-zero and distinct (per endpoint).
 * Bad arguments give the documented codes and leave the out-parameter alone. The server's WS
 * listener is found by rvoip_server_port(RVOIP_TRANSPORT_WS); it has no WSS listener.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#define SENTINEL_ID ((uint64_t)0x5151515151515151ULL)
#define MAX_MSGS 32
static const char BAD_UTF8[] = "\xff\xfe";

/* One MESSAGE_RECEIVED or MESSAGE_RESULT, copied in full (the party log keeps 47 bytes). */
typedef struct msg_rec {
    rvoip_event_kind kind;
    uint64_t account_id, call_id, message_id;
    uint16_t status;
    char from[256], to[256], content_type[128], reason[128];
    unsigned char body[RVOIP_MESSAGE_MAX_BODY];
    size_t body_len;
    int body_null;
} msg_rec;

typedef struct peer {
    party p; /* every event (registration states), and the lock for `msgs` */
    msg_rec msgs[MAX_MSGS];
    int n;
} peer;

/* The event callback: message events in full, then every event into the party log (under
 * the same lock, so a waiter woken by the party log sees the message too). */
static void peer_cb(void *user_data, const rvoip_event *e) {
    peer *x = (peer *)user_data;
    if (e->kind == RVOIP_EVENT_MESSAGE_RECEIVED || e->kind == RVOIP_EVENT_MESSAGE_RESULT) {
        msg_rec *m;
        pthread_mutex_lock(&x->p.mu);
        if (x->n < MAX_MSGS) {
            m = &x->msgs[x->n++];
            memset(m, 0, sizeof *m);
            m->kind = e->kind;
            m->account_id = e->account_id;
            m->call_id = e->call_id;
            m->message_id = e->message_id;
            m->status = e->status;
            copy_text(m->from, sizeof m->from, e->from);
            copy_text(m->to, sizeof m->to, e->to);
            copy_text(m->content_type, sizeof m->content_type, e->content_type);
            copy_text(m->reason, sizeof m->reason, e->reason);
            m->body_null = e->body == NULL;
            m->body_len = e->body_len;
            if (e->body && e->body_len <= sizeof m->body) memcpy(m->body, e->body, e->body_len);
        } else {
            x->p.overflow = 1;
        }
        pthread_mutex_unlock(&x->p.mu);
    }
    party_record(&x->p, e);
}

/* Waits for the `nth` (0-based) message event of `kind` at `x` and returns a copy. */
static msg_rec wait_msg(peer *x, rvoip_event_kind kind, int nth) {
    int cursor = 0, k = (int)kind, seen = -1, i;
    msg_rec out;
    for (;;) {
        if (party_wait(&x->p, &cursor, is_kind, &k, WAIT_MS) < 0)
            FAIL("%s: timed out waiting for message event %d #%d", x->p.name, k, nth);
        if (++seen == nth) break;
    }
    pthread_mutex_lock(&x->p.mu);
    for (i = 0, seen = -1; i < x->n; i++) {
        if (x->msgs[i].kind == kind && ++seen == nth) break;
    }
    CHECK(i < x->n);
    out = x->msgs[i];
    pthread_mutex_unlock(&x->p.mu);
    return out;
}

static int count_kind(peer *x, rvoip_event_kind kind) {
    int i, c = 0;
    pthread_mutex_lock(&x->p.mu);
    for (i = 0; i < x->n; i++) c += x->msgs[i].kind == kind;
    pthread_mutex_unlock(&x->p.mu);
    return c;
}

static void wait_registered(peer *x) {
    int cursor = 0, want = RVOIP_REGISTRATION_REGISTERED;
    if (party_wait(&x->p, &cursor, is_reg_state, &want, WAIT_MS) < 0) {
        char seq[1024];
        party_sequence(&x->p, seq, sizeof seq);
        FAIL("%s: not registered; events: %s", x->p.name, seq);
    }
}

/* `m` is a MESSAGE_RECEIVED for account `acc` from `from_aor` to `to_aor` with `ct` and the
 * `len` bytes of `body`. */
static void check_received(const msg_rec *m, uint64_t acc, const char *from_aor,
                           const char *to_aor, const char *ct, const void *body, size_t len) {
    CHECK(m->kind == RVOIP_EVENT_MESSAGE_RECEIVED);
    if (m->account_id != acc) FAIL("account_id %llu, want %llu", (unsigned long long)m->account_id, (unsigned long long)acc);
    CHECK(m->call_id == 0 && m->message_id == 0);
    if (!strstr(m->from, from_aor)) FAIL("from \"%s\" lacks %s", m->from, from_aor);
    if (!strstr(m->to, to_aor)) FAIL("to \"%s\" lacks %s", m->to, to_aor);
    if (strcmp(m->content_type, ct) != 0) FAIL("content_type \"%s\", want \"%s\"", m->content_type, ct);
    CHECK(!m->body_null);
    if (m->body_len != len) FAIL("body_len %lu, want %lu", (unsigned long)m->body_len, (unsigned long)len);
    if (len && memcmp(m->body, body, len) != 0) FAIL("the body bytes differ");
}

static void check_result(const msg_rec *m, uint64_t id, int ok) {
    CHECK(m->kind == RVOIP_EVENT_MESSAGE_RESULT);
    if (m->message_id != id)
        FAIL("result for message %llu, want %llu", (unsigned long long)m->message_id, (unsigned long long)id);
    CHECK(m->account_id == 0 && m->call_id == 0 && m->body_len == 0);
    if (ok && m->status != 200) FAIL("status %u %s, want 200", (unsigned)m->status, m->reason);
    if (!ok && m->status < 400) FAIL("status %u %s, want >= 400", (unsigned)m->status, m->reason);
    CHECK(m->reason[0] != 0);
}

static void check_badargs(peer *a, uint64_t acc) {
    static unsigned char big[RVOIP_MESSAGE_MAX_BODY + 1];
    const char *to = "sip:bob@127.0.0.1", *ct = "text/plain";
    uint64_t id = SENTINEL_ID;
    rvoip_endpoint *ep = a->p.ep;

    CHECK_RC(rvoip_account_send_message(NULL, acc, to, ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, NULL, ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, NULL, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, ct, NULL, 1, &id), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, ct, (const uint8_t *)"x", 1, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, BAD_UTF8, ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, BAD_UTF8, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, "not a uri", ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, "tel:+15551234", ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, "sips:bob@127.0.0.1", ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, "text", (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, "", (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, "text/plain\r\nX-Evil: 1", (const uint8_t *)"x", 1, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    memset(big, 'a', sizeof big);
    CHECK_RC(rvoip_account_send_message(ep, acc, to, ct, big, sizeof big, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_account_send_message(ep, 0, to, ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_account_send_message(ep, 999999, to, ct, (const uint8_t *)"x", 1, &id), RVOIP_RESULT_NOT_FOUND);
    CHECK(id == SENTINEL_ID);
}

int main(void) {
    static peer alice, bob; /* static: the logs are large */
    static const char text[] = "hello\0bob \xe2\x9c\x93"; /* a NUL and a UTF-8 check mark */
    const size_t text_len = sizeof text - 1;             /* 13 bytes; strlen would say 5 */
    const char *text_ct = "text/plain;charset=UTF-8";
    unsigned char bin[256];
    rvoip_server_opts so;
    rvoip_server *srv = NULL;
    uint16_t port = 0, ws_port = 0, other = 4242;
    uint64_t a_acc, b_acc, m1 = 0, m2 = 0, m3 = 0, m4 = 0;
    msg_rec r;
    int i;

    test_begin("smoke_message");
    party_init(&alice.p, "alice");
    party_init(&bob.p, "bob");
    for (i = 0; i < 256; i++) bin[i] = (unsigned char)i;

    rvoip_server_opts_default(&so);
    so.listen = "udp:127.0.0.1:0,ws:127.0.0.1:0";
    so.domain = "127.0.0.1";
    so.users = "alice:apw,bob:bpw";
    CHECK_OK(rvoip_server_new(&so, &srv));
    CHECK_OK(rvoip_server_start(srv));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, &port));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_WS, &ws_port));
    CHECK(port != 0 && ws_port != 0 && ws_port != port);
    CHECK_RC(rvoip_server_port(srv, RVOIP_TRANSPORT_WSS, &other), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_server_port(srv, RVOIP_TRANSPORT_TLS, &other), RVOIP_RESULT_NOT_FOUND);
    CHECK(other == 4242);
    printf("server on udp port %u, ws port %u\n", (unsigned)port, (unsigned)ws_port);

    alice.p.ep = new_endpoint();
    bob.p.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(alice.p.ep, peer_cb, &alice));
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.p.ep, peer_cb, &bob));
    a_acc = add_account(alice.p.ep, "alice", "apw", port);
    b_acc = add_account(bob.p.ep, "bob", "bpw", port);
    wait_registered(&alice);
    wait_registered(&bob);

    check_badargs(&alice, a_acc);

    /* alice -> bob: text with a NUL inside. */
    CHECK_OK(rvoip_account_send_message(alice.p.ep, a_acc, "sip:bob@127.0.0.1", text_ct,
                                        (const uint8_t *)text, text_len, &m1));
    CHECK(m1 != 0);
    r = wait_msg(&bob, RVOIP_EVENT_MESSAGE_RECEIVED, 0);
    check_received(&r, b_acc, "sip:alice@127.0.0.1", "sip:bob@127.0.0.1", text_ct, text, text_len);
    r = wait_msg(&alice, RVOIP_EVENT_MESSAGE_RESULT, 0);
    check_result(&r, m1, 1);
    printf("alice -> bob: %lu bytes delivered, result %u %s\n", (unsigned long)text_len,
           (unsigned)r.status, r.reason);

    /* bob -> alice: every byte value. */
    CHECK_OK(rvoip_account_send_message(bob.p.ep, b_acc, "sip:alice@127.0.0.1",
                                        "application/octet-stream", bin, sizeof bin, &m2));
    CHECK(m2 != 0);
    r = wait_msg(&alice, RVOIP_EVENT_MESSAGE_RECEIVED, 0);
    check_received(&r, a_acc, "sip:bob@127.0.0.1", "sip:alice@127.0.0.1",
                   "application/octet-stream", bin, sizeof bin);
    r = wait_msg(&bob, RVOIP_EVENT_MESSAGE_RESULT, 0);
    check_result(&r, m2, 1);
    printf("bob -> alice: %lu bytes delivered, result %u %s\n", (unsigned long)sizeof bin,
           (unsigned)r.status, r.reason);

    /* An empty body (NULL with length 0). */
    CHECK_OK(rvoip_account_send_message(alice.p.ep, a_acc, "sip:bob@127.0.0.1", "text/plain", NULL, 0, &m3));
    r = wait_msg(&bob, RVOIP_EVENT_MESSAGE_RECEIVED, 1);
    check_received(&r, b_acc, "sip:alice@127.0.0.1", "sip:bob@127.0.0.1", "text/plain", "", 0);
    r = wait_msg(&alice, RVOIP_EVENT_MESSAGE_RESULT, 1);
    check_result(&r, m3, 1);

    /* No such user: a failure result with the message's id. */
    CHECK_OK(rvoip_account_send_message(alice.p.ep, a_acc, "sip:nobody@127.0.0.1", "text/plain",
                                        (const uint8_t *)"anyone?", 7, &m4));
    r = wait_msg(&alice, RVOIP_EVENT_MESSAGE_RESULT, 2);
    check_result(&r, m4, 0);
    printf("alice -> nobody: result %u %s\n", (unsigned)r.status, r.reason);

    CHECK(m1 != m3 && m1 != m4 && m3 != m4); /* (ids are per endpoint: m2 is bob's) */
    /* Exactly what was sent arrived: nothing for nobody, nothing twice. */
    sleep_ms(300);
    CHECK(count_kind(&bob, RVOIP_EVENT_MESSAGE_RECEIVED) == 2);
    CHECK(count_kind(&alice, RVOIP_EVENT_MESSAGE_RECEIVED) == 1);
    CHECK(count_kind(&alice, RVOIP_EVENT_MESSAGE_RESULT) == 3);
    CHECK(count_kind(&bob, RVOIP_EVENT_MESSAGE_RESULT) == 1);
    CHECK(!alice.p.overflow && !bob.p.overflow);

    rvoip_endpoint_free(alice.p.ep);
    rvoip_endpoint_free(bob.p.ep);
    rvoip_server_free(srv);
    party_destroy(&alice.p);
    party_destroy(&bob.p);
    test_end();
    return 0;
}
