/*
 * Helpers shared by the C smoke tests (tests/c/smoke_*.c): checks that fail loudly, a
 * watchdog for the whole test, an event log per endpoint that the SDK's event thread appends
 * to and the main thread waits on (pthread mutex + condition variable, every wait bounded),
 * and a Goertzel detector. Valid C11 and C++ (the tests are compiled as both).
 *
 * RVOIP_TEST_TIME_SCALE=N (environment) multiplies every timeout (for slow runs under
 * valgrind); the default is 1: every wait <= 10 s, the whole test <= 60 s.
 */
#ifndef RVOIP_TEST_COMMON_H
#define RVOIP_TEST_COMMON_H

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rvoip.h"

#define WAIT_MS 10000      /* the longest single wait */
#define TEST_LIMIT_S 60    /* the whole test */

static const char *g_test_name = "test";

static inline void fail_at(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4), noreturn))
#endif
    ;

static inline void fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "FAIL [%s] %s:%d: ", g_test_name, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    /* _exit: other threads (the SDK's) may be stuck; do not run their destructors. */
    _exit(1);
}

#define FAIL(...) fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) FAIL("check failed: %s", #cond);                                      \
    } while (0)
/* `expr` must give `want` (both rvoip_result). */
#define CHECK_RC(expr, want)                                                               \
    do {                                                                                   \
        rvoip_result rc_ = (expr);                                                         \
        rvoip_result want_ = (want);                                                       \
        if (rc_ != want_)                                                                  \
            FAIL("%s gave %d (%s), want %d (%s)", #expr, (int)rc_, rvoip_result_str(rc_),  \
                 (int)want_, rvoip_result_str(want_));                                     \
    } while (0)
#define CHECK_OK(expr) CHECK_RC(expr, RVOIP_RESULT_OK)

static inline int time_scale(void) {
    const char *s = getenv("RVOIP_TEST_TIME_SCALE");
    int n = s ? atoi(s) : 1;
    return n < 1 ? 1 : (n > 20 ? 20 : n);
}

static inline int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void on_watchdog(int sig) {
    static const char msg[] = "FAIL: watchdog: the test ran longer than its limit (hung?)\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(2);
}

/* Starts the test: its name for messages and a watchdog that kills a hung test. */
static inline void test_begin(const char *name) {
    g_test_name = name;
    signal(SIGALRM, on_watchdog);
    alarm((unsigned)(TEST_LIMIT_S * time_scale()));
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static inline void test_end(void) {
    alarm(0);
    printf("PASS %s\n", g_test_name);
}

/* ---- An event log per endpoint ------------------------------------------------------- */

#define MAX_EVENTS 512

typedef struct rec_event {
    rvoip_event_kind kind;
    uint64_t account_id;
    uint64_t call_id;
    int state; /* registration_state, call_state, subscription_state or line_state */
    uint16_t status;
    bool held_local, held_remote;
    char digit;
    char text[48]; /* direction (MEDIA_STARTED), reason (ENDED, TRANSFER_STATUS), from
                      (INCOMING_CALL), referred_by (TRANSFER_REQUESTED) */
    uint64_t rx_packets;
    uint64_t transfer_id;      /* TRANSFER_REQUESTED */
    uint64_t replaces_call_id; /* INCOMING_CALL */
    bool is_final;             /* TRANSFER_STATUS */
    char target[64];           /* TRANSFER_REQUESTED, CALL_REDIRECTED; BUDDY_PRESENCE and
                                  LINE_STATE: entity */
    uint64_t subscription_id;  /* SUBSCRIPTION_STATE, BUDDY_PRESENCE, LINE_STATE */
    bool online;               /* BUDDY_PRESENCE */
    char note[32];             /* BUDDY_PRESENCE (text: activity) */
} rec_event;

typedef struct party {
    const char *name;
    rvoip_endpoint *ep;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec_event ev[MAX_EVENTS];
    int n;
    int overflow;
} party;

static inline void party_init(party *p, const char *name) {
    pthread_condattr_t a;
    memset(p, 0, sizeof *p);
    p->name = name;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &a);
    pthread_condattr_destroy(&a);
}

static inline void party_destroy(party *p) {
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

static inline void copy_text(char *dst, size_t cap, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n >= cap) n = cap - 1;
    if (n) memcpy(dst, s, n);
    dst[n] = 0;
}

/* Appends `e` to `p`'s log (called on the SDK event thread) and wakes waiters. */
static inline void party_record(party *p, const rvoip_event *e) {
    rec_event r;
    memset(&r, 0, sizeof r);
    r.kind = e->kind;
    r.account_id = e->account_id;
    r.call_id = e->call_id;
    r.status = e->status;
    r.held_local = e->held_local;
    r.held_remote = e->held_remote;
    r.digit = e->digit;
    switch (e->kind) {
    case RVOIP_EVENT_REGISTRATION_STATE:
        r.state = (int)e->registration_state;
        copy_text(r.text, sizeof r.text, e->reason);
        break;
    case RVOIP_EVENT_CALL_STATE:
        r.state = (int)e->call_state;
        copy_text(r.text, sizeof r.text, e->reason);
        break;
    case RVOIP_EVENT_INCOMING_CALL:
        copy_text(r.text, sizeof r.text, e->from);
        r.replaces_call_id = e->replaces_call_id;
        break;
    case RVOIP_EVENT_MEDIA_STARTED:
        copy_text(r.text, sizeof r.text, e->direction);
        break;
    case RVOIP_EVENT_STATISTICS:
        r.rx_packets = e->stats.rx_packets;
        break;
    case RVOIP_EVENT_TRANSFER_REQUESTED:
        r.transfer_id = e->transfer_id;
        copy_text(r.text, sizeof r.text, e->referred_by);
        copy_text(r.target, sizeof r.target, e->target);
        break;
    case RVOIP_EVENT_TRANSFER_STATUS:
        r.is_final = e->is_final;
        copy_text(r.text, sizeof r.text, e->reason);
        break;
    case RVOIP_EVENT_CALL_REDIRECTED:
        copy_text(r.target, sizeof r.target, e->target);
        break;
    case RVOIP_EVENT_SUBSCRIPTION_STATE:
        r.state = (int)e->subscription_state;
        r.subscription_id = e->subscription_id;
        copy_text(r.text, sizeof r.text, e->reason);
        break;
    case RVOIP_EVENT_BUDDY_PRESENCE:
        r.subscription_id = e->subscription_id;
        r.online = e->online;
        copy_text(r.target, sizeof r.target, e->entity);
        copy_text(r.text, sizeof r.text, e->activity);
        copy_text(r.note, sizeof r.note, e->note);
        break;
    case RVOIP_EVENT_LINE_STATE:
        r.state = (int)e->line_state;
        r.subscription_id = e->subscription_id;
        copy_text(r.target, sizeof r.target, e->entity);
        break;
    case RVOIP_EVENT_PUBLISH_RESULT:
        copy_text(r.text, sizeof r.text, e->reason);
        break;
    default:
        break;
    }
    pthread_mutex_lock(&p->mu);
    if (p->n < MAX_EVENTS)
        p->ev[p->n++] = r;
    else
        p->overflow = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

typedef int (*ev_pred)(const rec_event *e, const void *arg);

/* The index of the first event at or after `*from` matching `pred`, waiting up to
 * `timeout_ms` (scaled); -1 on timeout. `*from` is advanced past the match. */
static inline int party_wait(party *p, int *from, ev_pred pred, const void *arg, int timeout_ms) {
    struct timespec dl;
    int64_t end;
    int i = *from, hit = -1;
    timeout_ms *= time_scale();
    clock_gettime(CLOCK_MONOTONIC, &dl);
    end = (int64_t)dl.tv_sec * 1000 + dl.tv_nsec / 1000000 + timeout_ms;
    dl.tv_sec = (time_t)(end / 1000);
    dl.tv_nsec = (long)(end % 1000) * 1000000L;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (; i < p->n; i++) {
            if (pred(&p->ev[i], arg)) {
                hit = i;
                break;
            }
        }
        if (hit >= 0) break;
        if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) == ETIMEDOUT) {
            for (; i < p->n; i++) {
                if (pred(&p->ev[i], arg)) {
                    hit = i;
                    break;
                }
            }
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (hit >= 0) *from = hit + 1;
    return hit;
}

static inline int party_count(party *p) {
    int n;
    pthread_mutex_lock(&p->mu);
    n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Predicates; `arg` points to an int (the wanted state, digit...). */
static inline int is_reg_state(const rec_event *e, const void *arg) {
    return e->kind == RVOIP_EVENT_REGISTRATION_STATE && e->state == *(const int *)arg;
}
static inline int is_call_state(const rec_event *e, const void *arg) {
    return e->kind == RVOIP_EVENT_CALL_STATE && e->state == *(const int *)arg;
}
static inline int is_kind(const rec_event *e, const void *arg) {
    return (int)e->kind == *(const int *)arg;
}

static inline const char *reg_name(int s) {
    switch (s) {
    case RVOIP_REGISTRATION_UNREGISTERED: return "UNREGISTERED";
    case RVOIP_REGISTRATION_REGISTERING: return "REGISTERING";
    case RVOIP_REGISTRATION_REGISTERED: return "REGISTERED";
    case RVOIP_REGISTRATION_FAILED: return "REG_FAILED";
    default: return "REG_?";
    }
}

static inline const char *call_name(int s) {
    switch (s) {
    case RVOIP_CALL_CALLING: return "CALLING";
    case RVOIP_CALL_RINGING: return "RINGING";
    case RVOIP_CALL_EARLY_MEDIA: return "EARLY_MEDIA";
    case RVOIP_CALL_CONNECTED: return "CONNECTED";
    case RVOIP_CALL_HELD: return "HELD";
    case RVOIP_CALL_ENDED: return "ENDED";
    default: return "CALL_?";
    }
}

static inline const char *sub_name(int s) {
    switch (s) {
    case RVOIP_SUBSCRIPTION_SUBSCRIBING: return "subscribing";
    case RVOIP_SUBSCRIPTION_PENDING: return "pending";
    case RVOIP_SUBSCRIPTION_ACTIVE: return "active";
    case RVOIP_SUBSCRIPTION_TERMINATED: return "terminated";
    default: return "sub?";
    }
}

static inline const char *line_name(int s) {
    switch (s) {
    case RVOIP_LINE_IDLE: return "idle";
    case RVOIP_LINE_RINGING: return "ringing";
    case RVOIP_LINE_IN_CALL: return "in-call";
    default: return "line?";
    }
}

/* The log as text: one word per event, comma-separated, STATISTICS left out (periodic);
 * MEDIA_STARTED carries its direction, DTMF its digit, TRANSFER_STATUS, CALL_REDIRECTED and
 * PUBLISH_RESULT their status, the presence events their state. */
static inline void party_sequence(party *p, char *out, size_t cap) {
    int i;
    size_t len = 0;
    out[0] = 0;
    pthread_mutex_lock(&p->mu);
    for (i = 0; i < p->n; i++) {
        const rec_event *e = &p->ev[i];
        char w[128];
        switch (e->kind) {
        case RVOIP_EVENT_REGISTRATION_STATE: snprintf(w, sizeof w, "%s", reg_name(e->state)); break;
        case RVOIP_EVENT_INCOMING_CALL: snprintf(w, sizeof w, "INCOMING_CALL"); break;
        case RVOIP_EVENT_CALL_STATE: snprintf(w, sizeof w, "%s", call_name(e->state)); break;
        case RVOIP_EVENT_MEDIA_STARTED: snprintf(w, sizeof w, "MEDIA_STARTED(%s)", e->text); break;
        case RVOIP_EVENT_MEDIA_STOPPED: snprintf(w, sizeof w, "MEDIA_STOPPED"); break;
        case RVOIP_EVENT_DTMF_RECEIVED: snprintf(w, sizeof w, "DTMF(%c)", e->digit); break;
        case RVOIP_EVENT_TRANSFER_REQUESTED: snprintf(w, sizeof w, "TRANSFER_REQUESTED"); break;
        case RVOIP_EVENT_TRANSFER_STATUS:
            snprintf(w, sizeof w, "TRANSFER_STATUS(%u%s)", (unsigned)e->status, e->is_final ? " final" : "");
            break;
        case RVOIP_EVENT_CALL_REDIRECTED: snprintf(w, sizeof w, "CALL_REDIRECTED(%u)", (unsigned)e->status); break;
        case RVOIP_EVENT_SUBSCRIPTION_STATE:
            snprintf(w, sizeof w, "SUB%llu(%s%s%s)", (unsigned long long)e->subscription_id,
                     sub_name(e->state), e->text[0] ? " " : "", e->text);
            break;
        case RVOIP_EVENT_BUDDY_PRESENCE:
            snprintf(w, sizeof w, "PRESENCE(%s%s%s)", e->online ? "online" : "offline",
                     e->text[0] ? " " : "", e->text);
            break;
        case RVOIP_EVENT_LINE_STATE: snprintf(w, sizeof w, "LINE(%s)", line_name(e->state)); break;
        case RVOIP_EVENT_PUBLISH_RESULT: snprintf(w, sizeof w, "PUBLISH(%u)", (unsigned)e->status); break;
        case RVOIP_EVENT_STATISTICS: continue;
        default: snprintf(w, sizeof w, "KIND_%d", (int)e->kind); break;
        }
        len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s", len ? "," : "", w);
        if (len >= cap) break;
    }
    pthread_mutex_unlock(&p->mu);
}

/* The event callback that only records: user_data is the party. */
static inline void record_cb(void *user_data, const rvoip_event *e) {
    party_record((party *)user_data, e);
}

/* ---- Audio ------------------------------------------------------------------------- */

/* Goertzel power of `freq` in `x[0..n]`, scaled so that a pure tone's equals its energy. */
static inline double goertzel_scaled(const int16_t *x, size_t n, double freq, double rate) {
    const double pi = 3.14159265358979323846;
    double coeff = 2.0 * cos(2.0 * pi * freq / rate);
    double s1 = 0, s2 = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double s0 = (double)x[i] + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    return n ? (s1 * s1 + s2 * s2 - coeff * s1 * s2) / ((double)n / 2.0) : 0.0;
}

/* Share of the energy of `x[0..n]` at `freq` (0..1; 1.0 for a pure tone), measured per 20 ms
 * block (rate / 50 samples) as rvoip_sdk::media::tone::tone_fraction_blocks: summed per-block
 * Goertzel power over summed energy. One Goertzel over the whole window would be phase-sensitive
 * (a jitter-buffer jump of a frame can cancel the tone out). A partial last block is left out;
 * x shorter than one block is one block. */
static inline double tone_fraction(const int16_t *x, size_t n, double freq, double rate) {
    size_t block = rate >= 50.0 ? (size_t)(rate / 50.0) : 1, at, i;
    double tone = 0, total = 0, f;
    if (!x || n == 0 || !(rate > 0)) return 0.0;
    if (n < block) block = n;
    for (at = 0; at + block <= n; at += block) {
        tone += goertzel_scaled(x + at, block, freq, rate);
        for (i = at; i < at + block; i++) total += (double)x[i] * (double)x[i];
    }
    if (!(total > 0) || isnan(tone)) return 0.0;
    f = tone / total;
    return f < 0 ? 0 : (f > 1 ? 1 : f);
}

/* A PCM buffer a sink callback appends to (on a media thread); the test reads its tail. */
#define PCM_CAP (8000 * 30)
typedef struct pcm_buf {
    pthread_mutex_t mu;
    int16_t s[PCM_CAP];
    size_t n;        /* samples stored (<= PCM_CAP; older ones are dropped) */
    uint32_t rate;   /* rate of the last block */
    uint64_t blocks; /* callback invocations */
} pcm_buf;

static inline void pcm_init(pcm_buf *b) {
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
}

static inline void pcm_sink_cb(void *user_data, const int16_t *samples, size_t count, uint32_t rate_hz) {
    pcm_buf *b = (pcm_buf *)user_data;
    pthread_mutex_lock(&b->mu);
    if (count > PCM_CAP) {
        samples += count - PCM_CAP;
        count = PCM_CAP;
    }
    if (b->n + count > PCM_CAP) {
        size_t drop = b->n + count - PCM_CAP;
        memmove(b->s, b->s + drop, (b->n - drop) * sizeof(int16_t));
        b->n -= drop;
    }
    memcpy(b->s + b->n, samples, count * sizeof(int16_t));
    b->n += count;
    b->rate = rate_hz;
    b->blocks++;
    pthread_mutex_unlock(&b->mu);
}

/* Share at `freq` of the last `ms` of `b`; -1 when fewer samples arrived. */
static inline double pcm_tail_fraction(pcm_buf *b, double freq, int ms, size_t *have) {
    double f = -1.0;
    size_t want;
    pthread_mutex_lock(&b->mu);
    want = (size_t)b->rate * (size_t)ms / 1000;
    if (have) *have = b->n;
    if (b->rate && b->n >= want) f = tone_fraction(b->s + (b->n - want), want, freq, b->rate);
    pthread_mutex_unlock(&b->mu);
    return f;
}

/* A source callback sending silence (so no test opens a sound device). */
static inline size_t silence_source_cb(void *user_data, int16_t *samples, size_t count, uint32_t rate_hz) {
    (void)user_data;
    (void)rate_hz;
    memset(samples, 0, count * sizeof(int16_t));
    return count;
}

/* A sink callback discarding what it gets. */
static inline void discard_sink_cb(void *user_data, const int16_t *samples, size_t count, uint32_t rate_hz) {
    (void)user_data;
    (void)samples;
    (void)count;
    (void)rate_hz;
}

static inline rvoip_audio_source *silence_source(void) {
    rvoip_audio_source *s = NULL;
    CHECK_OK(rvoip_audio_source_callback_new(8000, silence_source_cb, NULL, &s));
    return s;
}

static inline rvoip_audio_sink *discard_sink(void) {
    rvoip_audio_sink *s = NULL;
    CHECK_OK(rvoip_audio_sink_callback_new(8000, discard_sink_cb, NULL, &s));
    return s;
}

/* ---- Setup helpers ----------------------------------------------------------------- */

/* An embedded server on udp:127.0.0.1:<free port> with alice:apw and bob:bpw; its port. */
static inline rvoip_server *start_server(uint16_t *udp_port) {
    rvoip_server_opts so;
    rvoip_server *srv = NULL;
    rvoip_server_opts_default(&so);
    so.listen = "udp:127.0.0.1:0";
    so.users = "alice:apw,bob:bpw";
    CHECK_OK(rvoip_server_new(&so, &srv));
    CHECK(srv != NULL);
    CHECK_OK(rvoip_server_start(srv));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, udp_port));
    CHECK(*udp_port != 0);
    return srv;
}

/* An endpoint on udp 127.0.0.1:<free port>, PCMU only, no periodic statistics. */
static inline rvoip_endpoint *new_endpoint(void) {
    rvoip_endpoint_opts o;
    rvoip_endpoint *ep = NULL;
    rvoip_endpoint_opts_default(&o);
    o.udp_listen = "127.0.0.1:0";
    o.codecs = "pcmu";
    o.stats_interval_ms = 0;
    CHECK_OK(rvoip_endpoint_new(&o, &ep));
    CHECK(ep != NULL);
    return ep;
}

/* Adds `user`'s account (through the server at 127.0.0.1:`port`) and starts registering. */
static inline uint64_t add_account(rvoip_endpoint *ep, const char *user, const char *pw, uint16_t port) {
    rvoip_account_opts a;
    char aor[64], server[32];
    uint64_t id = 0;
    snprintf(aor, sizeof aor, "sip:%s@127.0.0.1", user);
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)port);
    rvoip_account_opts_default(&a);
    a.aor = aor;
    a.password = pw;
    a.server = server;
    a.expires_s = 300;
    CHECK_OK(rvoip_account_add(ep, &a, &id));
    CHECK(id != 0);
    CHECK_OK(rvoip_account_register(ep, id));
    return id;
}

#endif /* RVOIP_TEST_COMMON_H */
