/*
 * C smoke test 2: bad arguments and stale ids give the documented result codes.
 *
 * NULL for every required pointer → RVOIP_RESULT_NULL_ARGUMENT (and out-parameters stay
 * untouched); *_free(NULL) and *_opts_default(NULL) are no-ops; invalid UTF-8 →
 * INVALID_ARGUMENT; unknown and stale account / call ids → NOT_FOUND; a second hang-up →
 * NOT_FOUND (at once: the header says an ended call's id is stale, and hang-up ends it),
 * except while the CANCEL of an unanswered call is pending (INVALID_STATE, per the header:
 * checked against a scripted peer, a bare UDP socket that answers only when told, so the
 * CANCEL cannot complete between the two hang-ups);
 * reject with 200 → INVALID_ARGUMENT; operations in the wrong state → INVALID_STATE;
 * rvoip_result_str never NULL; next_event times out (TIMEOUT) and, once a callback is set,
 * gives INVALID_STATE. Objects handed to a failing call are consumed (valgrind checks that
 * nothing leaks). Uses the pull API (rvoip_endpoint_next_event) for its events.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>

#include "common.h"

static const char BAD_UTF8[] = "\xff\xfe";
#define SENTINEL_ID ((uint64_t)0x5151515151515151ULL)
#define NO_SUCH_ID ((uint64_t)999999)

/* A copy of what the tests need from a pulled event (its strings die at the next pull). */
typedef struct pulled {
    rvoip_event_kind kind;
    uint64_t call_id;
    int state;
    uint16_t status;
} pulled;

/* Pulls events from `ep` until one of `kind` (and for CALL_STATE: `state`) arrives. */
static pulled pull_until(rvoip_endpoint *ep, const char *who, rvoip_event_kind kind, int state) {
    int64_t end = now_ms() + (int64_t)WAIT_MS * time_scale();
    pulled p;
    memset(&p, 0, sizeof p);
    while (now_ms() < end) {
        rvoip_event ev;
        rvoip_result r = rvoip_endpoint_next_event(ep, 100, &ev);
        if (r == RVOIP_RESULT_TIMEOUT) continue;
        CHECK_OK(r);
        CHECK(ev.reason != NULL && ev.from != NULL && ev.to != NULL && ev.codec != NULL &&
              ev.remote_addr != NULL && ev.direction != NULL && ev.security != NULL);
        /* The default SRTP policy (optional) over UDP signalling: plain RTP, no SDES keys
         * in the SDP (RFC 4568 §8.3) and no DTLS-SRTP offer. */
        if (ev.kind == RVOIP_EVENT_MEDIA_STARTED && strcmp(ev.security, "none") != 0)
            FAIL("%s: media security \"%s\", want none", who, ev.security);
        if (ev.kind != kind) continue;
        if (kind == RVOIP_EVENT_CALL_STATE && (int)ev.call_state != state) continue;
        p.kind = ev.kind;
        p.call_id = ev.call_id;
        p.state = kind == RVOIP_EVENT_CALL_STATE ? (int)ev.call_state : (int)ev.registration_state;
        p.status = ev.status;
        return p;
    }
    FAIL("%s: timed out waiting for event kind %d (state %d)", who, (int)kind, state);
}

/* ---- A scripted SIP peer: a bare UDP socket on 127.0.0.1 that says only what it is told -- */

typedef struct sip_peer {
    int fd;
    uint16_t port;
    struct sockaddr_in last_from; /* where the last request came from */
} sip_peer;

static void sip_peer_open(sip_peer *sp) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(sp, 0, sizeof *sp);
    sp->fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (sp->fd < 0) FAIL("socket: %s", strerror(errno));
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(sp->fd, (struct sockaddr *)&a, sizeof a) != 0) FAIL("bind: %s", strerror(errno));
    if (getsockname(sp->fd, (struct sockaddr *)&a, &len) != 0) FAIL("getsockname: %s", strerror(errno));
    sp->port = ntohs(a.sin_port);
}

/* Receives requests until one whose method is `method` (others, e.g. retransmissions or an
 * ACK, are skipped); copies it NUL-terminated into `buf`. Fails the test after WAIT_MS. */
static void sip_peer_expect(sip_peer *sp, const char *method, char *buf, size_t cap) {
    int64_t end = now_ms() + (int64_t)WAIT_MS * time_scale();
    size_t mlen = strlen(method);
    while (now_ms() < end) {
        struct pollfd pfd;
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t n;
        pfd.fd = sp->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 100) <= 0) continue;
        n = recvfrom(sp->fd, buf, cap - 1, 0, (struct sockaddr *)&from, &flen);
        if (n <= 0) continue;
        buf[n] = 0;
        if (strncmp(buf, method, mlen) == 0 && buf[mlen] == ' ') {
            sp->last_from = from;
            return;
        }
    }
    FAIL("scripted peer: no %s arrived", method);
}

/* Whether the header line `line` (of length `len`) is named `name` or its compact form `c`. */
static int header_is(const char *line, size_t len, const char *name, const char *c) {
    const char *colon = (const char *)memchr(line, ':', len);
    size_t n;
    if (!colon) return 0;
    n = (size_t)(colon - line);
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
    return (n == strlen(name) && strncasecmp(line, name, n) == 0) ||
           (n == strlen(c) && strncasecmp(line, c, n) == 0);
}

/* Sends the response `status reason` to the request `req` (RFC 3261 §8.2.6.2: its Vias,
 * From, To (with `to_tag` added when given), Call-ID and CSeq), to where it came from. */
static void sip_peer_respond(sip_peer *sp, const char *req, int status, const char *reason,
                             const char *to_tag) {
    char out[4096];
    size_t len = 0;
    const char *line = strstr(req, "\r\n");
    len += (size_t)snprintf(out + len, sizeof out - len, "SIP/2.0 %d %s\r\n", status, reason);
    while (line && line[2] != '\r' && line[2] != 0) {
        const char *start = line + 2, *eol = strstr(start, "\r\n");
        size_t n = eol ? (size_t)(eol - start) : strlen(start);
        if (header_is(start, n, "Via", "v") || header_is(start, n, "From", "f") ||
            header_is(start, n, "Call-ID", "i") || header_is(start, n, "CSeq", "CSeq")) {
            len += (size_t)snprintf(out + len, sizeof out - len, "%.*s\r\n", (int)n, start);
        } else if (header_is(start, n, "To", "t")) {
            len += (size_t)snprintf(out + len, sizeof out - len, "%.*s%s%s\r\n", (int)n, start,
                                    to_tag ? ";tag=" : "", to_tag ? to_tag : "");
        }
        CHECK(len < sizeof out);
        line = eol;
    }
    len += (size_t)snprintf(out + len, sizeof out - len, "Content-Length: 0\r\n\r\n");
    CHECK(len < sizeof out);
    if (sendto(sp->fd, out, len, 0, (const struct sockaddr *)&sp->last_from, sizeof sp->last_from) != (ssize_t)len)
        FAIL("scripted peer: sendto: %s", strerror(errno));
}

static void never_cb(void *user_data, const rvoip_event *e) {
    (void)user_data;
    (void)e;
}

static void log_cb(void *user_data, uint32_t level, const char *target, const char *message) {
    (void)user_data;
    (void)level;
    (void)target;
    (void)message;
}

static rvoip_call_opts audio_opts(void) {
    rvoip_call_opts o;
    rvoip_call_opts_default(&o);
    o.source = silence_source();
    o.sink = discard_sink();
    return o;
}

static void check_statics(void) {
    int i;
    const char *v;
    for (i = RVOIP_RESULT_OK; i <= RVOIP_RESULT_PANIC; i++) {
        const char *s = rvoip_result_str((rvoip_result)i);
        if (s == NULL || s[0] == 0) FAIL("rvoip_result_str(%d) is NULL or empty", i);
    }
    CHECK(strcmp(rvoip_result_str(RVOIP_RESULT_NOT_FOUND), "not found") == 0);
    v = rvoip_version();
    CHECK(v != NULL && v[0] != 0);
    printf("librvoip %s\n", v);

    /* NULL is a no-op for every _free and _default. */
    rvoip_endpoint_free(NULL);
    rvoip_server_free(NULL);
    rvoip_audio_source_free(NULL);
    rvoip_audio_sink_free(NULL);
    rvoip_endpoint_opts_default(NULL);
    rvoip_account_opts_default(NULL);
    rvoip_call_opts_default(NULL);
    rvoip_server_opts_default(NULL);

    CHECK_RC(rvoip_set_log_callback(log_cb, NULL, RVOIP_LOG_TRACE + 1), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_OK(rvoip_set_log_callback(log_cb, NULL, RVOIP_LOG_WARN));
    CHECK_OK(rvoip_set_log_callback(NULL, NULL, 0));
}

static void check_audio(void) {
    rvoip_audio_source *src = (rvoip_audio_source *)&src; /* a sentinel: must stay */
    rvoip_audio_sink *snk = (rvoip_audio_sink *)&snk;
    rvoip_audio_source *const src0 = src;
    rvoip_audio_sink *const snk0 = snk;
    size_t count = 12345;
    rvoip_result r;

    CHECK_RC(rvoip_audio_source_tone_new(440, 8000, 1000, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_source_tone_new(440, 100, 1000, &src), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_source_tone_new(0, 8000, 1000, &src), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_source_tone_new(4000, 8000, 1000, &src), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(src == src0);

    CHECK_RC(rvoip_audio_source_wav_new(NULL, &src), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_source_wav_new("x.wav", NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_source_wav_new(BAD_UTF8, &src), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_source_wav_new("/nonexistent/rvoip/in.wav", &src), RVOIP_RESULT_MEDIA);
    CHECK(src == src0);

    CHECK_RC(rvoip_audio_sink_wav_new(NULL, 8000, &snk), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_wav_new("/tmp/x.wav", 8000, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_wav_new(BAD_UTF8, 8000, &snk), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_wav_new("/tmp/x.wav", 0, &snk), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_wav_new("/nonexistent/rvoip/out.wav", 8000, &snk), RVOIP_RESULT_MEDIA);
    CHECK(snk == snk0);

    CHECK_RC(rvoip_audio_sink_callback_new(8000, NULL, NULL, &snk), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_callback_new(8000, discard_sink_cb, NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_callback_new(1, discard_sink_cb, NULL, &snk), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_source_callback_new(8000, NULL, NULL, &src), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_source_callback_new(8000, silence_source_cb, NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_source_callback_new(500000, silence_source_cb, NULL, &src), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(src == src0 && snk == snk0);

    CHECK_RC(rvoip_audio_devices(NULL, 0, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_devices(NULL, 4, &count), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK(count == 12345);
    CHECK_RC(rvoip_audio_source_device_new(NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_device_new(NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_audio_source_device_new(BAD_UTF8, &src), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_audio_sink_device_new(BAD_UTF8, &snk), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(src == src0 && snk == snk0);

    /* Made and freed without a call. */
    src = NULL;
    CHECK_OK(rvoip_audio_source_tone_new(440, 8000, 1000, &src));
    CHECK(src != NULL);
    rvoip_audio_source_free(src);
    r = rvoip_audio_sink_wav_new("/tmp/rvoip-badargs-unused.wav", 8000, &snk);
    CHECK_OK(r);
    rvoip_audio_sink_free(snk);
    remove("/tmp/rvoip-badargs-unused.wav");
}

static void check_endpoint_new(uint16_t taken_port) {
    rvoip_endpoint_opts o;
    rvoip_endpoint *ep = (rvoip_endpoint *)&o; /* a sentinel: must stay */
    rvoip_endpoint *const ep0 = ep;
    char taken[32];
    uint16_t port = 4242;

    CHECK_RC(rvoip_endpoint_new(NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
#define BAD_EP(field, value, want)                                                          \
    do {                                                                                    \
        rvoip_endpoint_opts_default(&o);                                                    \
        o.udp_listen = "127.0.0.1:0";                                                       \
        o.field = value;                                                                    \
        CHECK_RC(rvoip_endpoint_new(&o, &ep), want);                                        \
        CHECK(ep == ep0);                                                                   \
    } while (0)
    BAD_EP(udp_listen, BAD_UTF8, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(udp_listen, "not an address", RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(tcp_listen, BAD_UTF8, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(codecs, BAD_UTF8, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(codecs, "pcmu,nosuchcodec", RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(public_ip, BAD_UTF8, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(public_ip, "999.1.2.3", RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(ptime_ms, 5, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(rx_loss_percent, 200.0f, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(srtp_policy, 3, RVOIP_RESULT_INVALID_ARGUMENT); /* not an RVOIP_SRTP_* value */
    BAD_EP(srtp_policy, 0xffffffffu, RVOIP_RESULT_INVALID_ARGUMENT);
    BAD_EP(srtp_keying, 3, RVOIP_RESULT_INVALID_ARGUMENT);
    /* UDP only is fine. */
    rvoip_endpoint_opts_default(&o);
    o.udp_listen = "127.0.0.1:0";
    o.tcp_listen = "none";
    ep = NULL;
    CHECK_OK(rvoip_endpoint_new(&o, &ep));
    CHECK(ep != NULL);
    rvoip_endpoint_free(ep);
    ep = ep0;
    /* No transport at all. */
    rvoip_endpoint_opts_default(&o);
    o.udp_listen = "none";
    o.tcp_listen = "none";
    CHECK_RC(rvoip_endpoint_new(&o, &ep), RVOIP_RESULT_INVALID_ARGUMENT);
    /* A port in use. */
    snprintf(taken, sizeof taken, "127.0.0.1:%u", (unsigned)taken_port);
    BAD_EP(udp_listen, taken, RVOIP_RESULT_NETWORK);
#undef BAD_EP
    /* No UDP transport: udp_port is NOT_FOUND. */
    rvoip_endpoint_opts_default(&o);
    o.udp_listen = "none";
    o.tcp_listen = "127.0.0.1:0";
    ep = NULL;
    CHECK_OK(rvoip_endpoint_new(&o, &ep));
    CHECK_RC(rvoip_endpoint_udp_port(ep, &port), RVOIP_RESULT_NOT_FOUND);
    CHECK(port == 4242);
    rvoip_endpoint_free(ep);
}

static void check_endpoint_nulls(rvoip_endpoint *ep) {
    rvoip_event ev;
    uint16_t port = 4242;
    CHECK_RC(rvoip_endpoint_udp_port(NULL, &port), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_endpoint_udp_port(ep, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK(port == 4242);
    CHECK_RC(rvoip_endpoint_next_event(NULL, 0, &ev), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_endpoint_next_event(ep, 0, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_endpoint_set_event_callback(NULL, never_cb, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_endpoint_set_event_callback(ep, NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    /* Nothing happened on a fresh endpoint: the pull times out. */
    CHECK_RC(rvoip_endpoint_next_event(ep, 50, &ev), RVOIP_RESULT_TIMEOUT);
    CHECK_RC(rvoip_endpoint_next_event(ep, 0, &ev), RVOIP_RESULT_TIMEOUT);
}

static void check_accounts(rvoip_endpoint *ep) {
    rvoip_account_opts a;
    uint64_t id = SENTINEL_ID, good = 0;

    rvoip_account_opts_default(&a);
    CHECK(a.aor == NULL && a.password == NULL && a.transport == RVOIP_TRANSPORT_UDP && a.expires_s == 3600);
    /* SRTP defaults (RFC 3711): optional, automatic keying, no SDES over UDP/TCP; zero. */
    CHECK(a.srtp_policy == RVOIP_SRTP_OPTIONAL && a.srtp_policy == 0);
    CHECK(a.srtp_keying == RVOIP_SRTP_KEYING_AUTO && a.srtp_keying == 0);
    CHECK(!a.srtp_sdes_over_insecure);
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_NULL_ARGUMENT); /* aor NULL */
    a.aor = "sip:carol@127.0.0.1";
    a.server = "127.0.0.1:9";
    CHECK_RC(rvoip_account_add(NULL, &a, &id), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_add(ep, NULL, &id), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_add(ep, &a, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    a.aor = BAD_UTF8;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.aor = "not a uri";
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.aor = "sip:carol@127.0.0.1";
    a.password = BAD_UTF8;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.password = "pw";
    a.username = BAD_UTF8;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.username = NULL;
    a.server = BAD_UTF8;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.server = "127.0.0.1:9";
    a.transport = 7;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.transport = RVOIP_TRANSPORT_UDP;
    /* SRTP policy and keying outside the RVOIP_SRTP_* values. */
    a.srtp_policy = 3;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    a.srtp_policy = RVOIP_SRTP_MANDATORY;
    a.srtp_keying = 42;
    CHECK_RC(rvoip_account_add(ep, &a, &id), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(id == SENTINEL_ID);
    /* SRTP mandatory with each key exchange is a valid account. */
    a.srtp_keying = RVOIP_SRTP_KEYING_DTLS;
    CHECK_OK(rvoip_account_add(ep, &a, &good));
    CHECK_OK(rvoip_account_remove(ep, good));
    a.srtp_keying = RVOIP_SRTP_KEYING_SDES;
    a.srtp_sdes_over_insecure = true;
    CHECK_OK(rvoip_account_add(ep, &a, &good));
    CHECK_OK(rvoip_account_remove(ep, good));
    a.srtp_policy = RVOIP_SRTP_OFF;
    a.srtp_keying = RVOIP_SRTP_KEYING_AUTO;
    a.srtp_sdes_over_insecure = false;
    CHECK_OK(rvoip_account_add(ep, &a, &good));
    CHECK(good != 0);

    CHECK_RC(rvoip_account_register(NULL, good), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_unregister(NULL, good), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_remove(NULL, good), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_register(ep, NO_SUCH_ID), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_account_unregister(ep, NO_SUCH_ID), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_account_remove(ep, NO_SUCH_ID), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_account_register(ep, 0), RVOIP_RESULT_NOT_FOUND);
    /* Removed: the id is stale from then on. */
    CHECK_OK(rvoip_account_remove(ep, good));
    CHECK_RC(rvoip_account_register(ep, good), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_account_remove(ep, good), RVOIP_RESULT_NOT_FOUND);
}

/* Every call function with NULL arguments and unknown ids. */
static void check_call_nulls(rvoip_endpoint *ep) {
    rvoip_call_opts o;
    rvoip_call_stats st;
    uint64_t cid = SENTINEL_ID;
    const uint64_t ids[2] = {0, NO_SUCH_ID};
    int i;

    /* The call consumes the audio objects even when it fails (valgrind: no leak). */
    o = audio_opts();
    CHECK_RC(rvoip_call_make(NULL, 0, "sip:x@127.0.0.1", &o, &cid), RVOIP_RESULT_NULL_ARGUMENT);
    o = audio_opts();
    CHECK_RC(rvoip_call_make(ep, 0, NULL, &o, &cid), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_make(ep, 0, "sip:x@127.0.0.1", NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    o = audio_opts();
    CHECK_RC(rvoip_call_make(ep, 0, BAD_UTF8, &o, &cid), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_make(ep, 0, "not a uri", NULL, &cid), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_make(ep, 0, "tel:+15551234", NULL, &cid), RVOIP_RESULT_INVALID_ARGUMENT);
    o = audio_opts();
    CHECK_RC(rvoip_call_make(ep, NO_SUCH_ID, "sip:x@127.0.0.1", &o, &cid), RVOIP_RESULT_NOT_FOUND);
    CHECK(cid == SENTINEL_ID);

    CHECK_RC(rvoip_call_answer(NULL, 1, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_reject(NULL, 1, 486), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_hangup(NULL, 1), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_hold(NULL, 1), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_resume(NULL, 1), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_send_dtmf(NULL, 1, "1"), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_send_dtmf(ep, 1, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_set_mute(NULL, 1, true), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_set_source(NULL, 1, silence_source()), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_set_source(ep, 1, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_set_sink(NULL, 1, discard_sink()), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_set_sink(ep, 1, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_get_stats(NULL, 1, &st), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_call_get_stats(ep, 1, NULL), RVOIP_RESULT_NULL_ARGUMENT);

    for (i = 0; i < 2; i++) {
        uint64_t id = ids[i];
        o = audio_opts();
        CHECK_RC(rvoip_call_answer(ep, id, &o), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_reject(ep, id, 486), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_hangup(ep, id), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_hold(ep, id), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_resume(ep, id), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_send_dtmf(ep, id, "1"), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_set_mute(ep, id, true), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_set_source(ep, id, silence_source()), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_set_sink(ep, id, discard_sink()), RVOIP_RESULT_NOT_FOUND);
        CHECK_RC(rvoip_call_get_stats(ep, id, &st), RVOIP_RESULT_NOT_FOUND);
    }
}

/* Every call function on an ended call's (stale) id. */
static void check_stale_call(rvoip_endpoint *ep, uint64_t id) {
    rvoip_call_opts o = audio_opts();
    rvoip_call_stats st;
    CHECK_RC(rvoip_call_answer(ep, id, &o), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_reject(ep, id, 486), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_hangup(ep, id), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_hold(ep, id), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_resume(ep, id), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_send_dtmf(ep, id, "1"), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_set_mute(ep, id, false), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_set_source(ep, id, silence_source()), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_set_sink(ep, id, discard_sink()), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_get_stats(ep, id, &st), RVOIP_RESULT_NOT_FOUND);
}

/* Real calls between two endpoints (direct, no server): states and stale ids. */
static void check_calls(rvoip_endpoint *a, rvoip_endpoint *b) {
    char uri[64];
    uint16_t bport = 0;
    uint64_t ac = 0, bc;
    rvoip_call_opts o;
    rvoip_call_stats st;
    rvoip_result r;
    pulled p;
    sip_peer sp;
    static char invite[4096], cancel[4096];

    CHECK_OK(rvoip_endpoint_udp_port(b, &bport));
    snprintf(uri, sizeof uri, "sip:bob@127.0.0.1:%u", (unsigned)bport);

    /* Call 1: rejected. */
    o = audio_opts();
    CHECK_OK(rvoip_call_make(a, 0, uri, &o, &ac));
    p = pull_until(b, "b", RVOIP_EVENT_INCOMING_CALL, 0);
    bc = p.call_id;
    CHECK(bc != 0);
    p = pull_until(a, "a", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_RINGING);
    CHECK(p.call_id == ac);
    o = audio_opts();
    CHECK_RC(rvoip_call_answer(a, ac, &o), RVOIP_RESULT_INVALID_STATE); /* an outgoing call */
    CHECK_RC(rvoip_call_reject(a, ac, 486), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_call_hold(a, ac), RVOIP_RESULT_INVALID_STATE);        /* not connected */
    CHECK_RC(rvoip_call_hold(b, bc), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_call_resume(b, bc), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_call_send_dtmf(a, ac, "1"), RVOIP_RESULT_INVALID_STATE); /* no media yet */
    CHECK_RC(rvoip_call_reject(b, bc, 200), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_reject(b, bc, 299), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_reject(b, bc, 700), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_reject(b, bc, 0), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_OK(rvoip_call_get_stats(a, ac, &st)); /* zeros before media */
    CHECK(st.tx_packets == 0 && st.rx_packets == 0);
    CHECK(st.srtp_keying[0] == 0 && st.srtp_suite[0] == 0);
    CHECK(st.srtp_auth_failures == 0 && st.srtp_replays == 0 && st.srtp_dropped == 0);
    CHECK_OK(rvoip_call_reject(b, bc, 486));
    CHECK_RC(rvoip_call_reject(b, bc, 486), RVOIP_RESULT_NOT_FOUND);
    p = pull_until(a, "a", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_ENDED);
    CHECK(p.call_id == ac && p.status == 486);
    check_stale_call(a, ac);
    check_stale_call(b, bc);

    /* Call 2: answered, then hung up twice. */
    o = audio_opts();
    CHECK_OK(rvoip_call_make(a, 0, uri, &o, &ac));
    p = pull_until(b, "b", RVOIP_EVENT_INCOMING_CALL, 0);
    bc = p.call_id;
    o = audio_opts();
    CHECK_OK(rvoip_call_answer(b, bc, &o));
    o = audio_opts();
    CHECK_RC(rvoip_call_answer(b, bc, &o), RVOIP_RESULT_INVALID_STATE); /* answered already */
    /* (MEDIA_STARTED comes before CONNECTED.) */
    pull_until(a, "a", RVOIP_EVENT_MEDIA_STARTED, 0);
    pull_until(a, "a", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_CONNECTED);
    pull_until(b, "b", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_CONNECTED);
    CHECK_RC(rvoip_call_reject(b, bc, 486), RVOIP_RESULT_INVALID_STATE); /* answered */
    CHECK_RC(rvoip_call_send_dtmf(a, ac, "12x"), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_call_send_dtmf(a, ac, BAD_UTF8), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_OK(rvoip_call_set_mute(a, ac, true));
    CHECK_OK(rvoip_call_set_mute(a, ac, false));
    CHECK_OK(rvoip_call_set_source(a, ac, silence_source()));
    CHECK_OK(rvoip_call_set_sink(a, ac, discard_sink()));
    CHECK_OK(rvoip_call_hangup(a, ac));
    /* The header: hang-up ends the call, an ended call's id is stale, a second hang-up is
     * NOT_FOUND — at once, before the ENDED event has been pulled. */
    CHECK_RC(rvoip_call_hangup(a, ac), RVOIP_RESULT_NOT_FOUND);
    p = pull_until(a, "a", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_ENDED);
    CHECK(p.call_id == ac && p.status == 200);
    p = pull_until(b, "b", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_ENDED);
    CHECK(p.call_id == bc && p.status == 200);
    CHECK_RC(rvoip_call_hangup(a, ac), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_call_hangup(b, bc), RVOIP_RESULT_NOT_FOUND);
    check_stale_call(a, ac);
    check_stale_call(b, bc);

    /* Call 3: hung up before an answer (CANCEL): 487 on both sides. b answers the CANCEL at
     * once, so the call may already be over when a second hang-up follows (NOT_FOUND) or
     * not yet (INVALID_STATE): either, never OK (call 4 checks INVALID_STATE for certain). */
    o = audio_opts();
    CHECK_OK(rvoip_call_make(a, 0, uri, &o, &ac));
    CHECK_OK(rvoip_call_hangup(a, ac));
    r = rvoip_call_hangup(a, ac);
    if (r != RVOIP_RESULT_INVALID_STATE && r != RVOIP_RESULT_NOT_FOUND)
        FAIL("a second hang-up while cancelling gave %d (%s)", (int)r, rvoip_result_str(r));
    p = pull_until(a, "a", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_ENDED);
    CHECK(p.call_id == ac && p.status == 487);
    CHECK_RC(rvoip_call_hangup(a, ac), RVOIP_RESULT_NOT_FOUND);
    check_stale_call(a, ac);
    /* b saw the call come and go. */
    p = pull_until(b, "b", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_ENDED);
    CHECK(p.status == 487);
    check_stale_call(b, p.call_id);

    /* Call 4: hung up before any response, towards the scripted peer. The CANCEL waits for a
     * provisional response (RFC 3261 §9.1) and nothing can end the call while the peer is
     * silent, so every hang-up meanwhile is INVALID_STATE (the header) however slow this
     * thread is. Then the peer sends 100 Trying: the CANCEL goes out, the peer answers it 200
     * and the INVITE 487, and the call ends with 487: NOT_FOUND from then on. */
    sip_peer_open(&sp);
    snprintf(uri, sizeof uri, "sip:silent@127.0.0.1:%u", (unsigned)sp.port);
    o = audio_opts();
    CHECK_OK(rvoip_call_make(a, 0, uri, &o, &ac));
    sip_peer_expect(&sp, "INVITE", invite, sizeof invite);
    CHECK_OK(rvoip_call_hangup(a, ac));
    CHECK_RC(rvoip_call_hangup(a, ac), RVOIP_RESULT_INVALID_STATE);
    sleep_ms(200);
    CHECK_RC(rvoip_call_hangup(a, ac), RVOIP_RESULT_INVALID_STATE);
    sip_peer_respond(&sp, invite, 100, "Trying", NULL);
    sip_peer_expect(&sp, "CANCEL", cancel, sizeof cancel);
    sip_peer_respond(&sp, cancel, 200, "OK", "scripted1");
    sip_peer_respond(&sp, invite, 487, "Request Terminated", "scripted1");
    p = pull_until(a, "a", RVOIP_EVENT_CALL_STATE, RVOIP_CALL_ENDED);
    CHECK(p.call_id == ac && p.status == 487);
    CHECK_RC(rvoip_call_hangup(a, ac), RVOIP_RESULT_NOT_FOUND);
    check_stale_call(a, ac);
    close(sp.fd);
}

static void check_callback_vs_pull(rvoip_endpoint *ep) {
    rvoip_event ev;
    CHECK_OK(rvoip_endpoint_set_event_callback(ep, never_cb, NULL));
    CHECK_RC(rvoip_endpoint_set_event_callback(ep, never_cb, NULL), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_endpoint_next_event(ep, 0, &ev), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_endpoint_next_event(ep, 20, &ev), RVOIP_RESULT_INVALID_STATE);
}

static void check_server(void) {
    rvoip_server_opts so;
    rvoip_server *s = (rvoip_server *)&so; /* a sentinel: must stay */
    rvoip_server *const s0 = s;
    uint16_t port = 4242;
    FILE *f;
    const char *toml = "/tmp/rvoip-badargs-bad.toml";

    rvoip_server_opts_default(&so);
    CHECK(so.listen == NULL && so.users == NULL);
    CHECK_RC(rvoip_server_new(&so, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_new(NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    so.listen = BAD_UTF8;
    CHECK_RC(rvoip_server_new(&so, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    so.listen = "bogus:1.2.3.4:5";
    CHECK_RC(rvoip_server_new(&so, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    so.listen = "udp:127.0.0.1:0";
    so.users = "nocolon";
    CHECK_RC(rvoip_server_new(&so, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    so.users = BAD_UTF8;
    CHECK_RC(rvoip_server_new(&so, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    so.users = "alice:apw";
    so.domain = BAD_UTF8;
    CHECK_RC(rvoip_server_new(&so, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    so.domain = NULL;
    CHECK(s == s0);

    CHECK_RC(rvoip_server_new_from_toml(NULL, &s), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_new_from_toml("/tmp/x.toml", NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_new_from_toml(BAD_UTF8, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_server_new_from_toml("/nonexistent/rvoip.toml", &s), RVOIP_RESULT_INVALID_ARGUMENT);
    f = fopen(toml, "w");
    CHECK(f != NULL);
    fputs("this is = = not toml [\n", f);
    fclose(f);
    CHECK_RC(rvoip_server_new_from_toml(toml, &s), RVOIP_RESULT_INVALID_ARGUMENT);
    remove(toml);
    CHECK(s == s0);

    CHECK_RC(rvoip_server_start(NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_stop(NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_port(NULL, RVOIP_TRANSPORT_UDP, &port), RVOIP_RESULT_NULL_ARGUMENT);

    s = NULL;
    CHECK_OK(rvoip_server_new(&so, &s));
    CHECK_RC(rvoip_server_port(s, RVOIP_TRANSPORT_UDP, &port), RVOIP_RESULT_NOT_FOUND); /* stopped */
    CHECK_OK(rvoip_server_start(s));
    CHECK_RC(rvoip_server_start(s), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_server_port(s, RVOIP_TRANSPORT_UDP, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_port(s, 5, &port), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK_RC(rvoip_server_port(s, RVOIP_TRANSPORT_TCP, &port), RVOIP_RESULT_NOT_FOUND); /* udp only */
    CHECK_RC(rvoip_server_port(s, RVOIP_TRANSPORT_WS, &port), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_server_port(s, RVOIP_TRANSPORT_WSS, &port), RVOIP_RESULT_NOT_FOUND);
    CHECK(port == 4242);
    CHECK_OK(rvoip_server_port(s, RVOIP_TRANSPORT_UDP, &port));
    CHECK(port != 4242 && port != 0);
    CHECK_OK(rvoip_server_stop(s));
    CHECK_OK(rvoip_server_stop(s)); /* a no-op when stopped */
    CHECK_RC(rvoip_server_port(s, RVOIP_TRANSPORT_UDP, &port), RVOIP_RESULT_NOT_FOUND);
    rvoip_server_free(s);
}

int main(void) {
    rvoip_endpoint *a, *b;
    uint16_t aport = 0;

    test_begin("smoke_badargs");
    check_statics();
    check_audio();
    check_server();

    a = new_endpoint();
    b = new_endpoint();
    CHECK_OK(rvoip_endpoint_udp_port(a, &aport));
    CHECK(aport != 0);
    check_endpoint_new(aport);
    check_endpoint_nulls(a);
    check_accounts(a);
    check_call_nulls(a);
    check_calls(a, b);
    check_callback_vs_pull(b);
    rvoip_endpoint_free(a);
    rvoip_endpoint_free(b);
    test_end();
    return 0;
}
