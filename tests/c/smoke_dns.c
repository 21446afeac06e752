/*
 * C smoke test 6: the DNS server of an endpoint (rvoip_endpoint_opts.dns_server) and the
 * server destination of an account (rvoip_account_server), RFC 3263.
 *
 *   - dns_server that is not an IP:PORT (no port, a host name, a bad port, invalid UTF-8) →
 *     INVALID_ARGUMENT from rvoip_endpoint_new, *out untouched; NULL and "" are the system's.
 *   - A stand-in DNS server in this process (a UDP socket on 127.0.0.1 answering every A query
 *     with 127.0.0.1 and every other query with no records) is the endpoint's dns_server:
 *       - an account whose server is an IP literal reports that address and its transport, the
 *         default port (5060; 5061 for TLS) when none is given, IPv6 as [addr]:port, and the
 *         stand-in is asked nothing;
 *       - an account whose server is pbx.example.test:PORT reports 127.0.0.1:PORT: the stand-in
 *         was asked for pbx.example.test's A record (so dns_server is the one asked); that
 *         account registers with the embedded server at that address (REGISTERED);
 *       - without a port the stand-in is asked for NAPTR and SRV as well (no records), and
 *         the account reports 127.0.0.1:5060.
 *   - rvoip_account_server: NULL ep / out_transport / addr_buf → NULL_ARGUMENT, a too-small
 *     buffer → BUFFER_TOO_SMALL, an unknown or removed account → NOT_FOUND; nothing is written
 *     on an error.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "common.h"

static const char BAD_UTF8[] = "\xff\xfe";
#define SENTINEL ((uint32_t)0x51515151u)

/* ---- A stand-in DNS server: A → 127.0.0.1, anything else → NOERROR without records ---- */

typedef struct fake_dns {
    int fd;
    uint16_t port;
    pthread_t thread;
    pthread_mutex_t mu;
    int stop;
    int queries;   /* every query */
    int a_queries; /* A queries */
    char last_a[256];
} fake_dns;

/* Answers one query in `q[0..n]` into `r`; its length, or 0 to ignore it. */
static size_t dns_answer(fake_dns *d, const unsigned char *q, size_t n, unsigned char *r, size_t cap) {
    static const unsigned char a_rr[] = {0xc0, 0x0c,             /* the name: the question's */
                                         0x00, 0x01, 0x00, 0x01, /* A, IN */
                                         0x00, 0x00, 0x00, 0x3c, /* TTL 60 s */
                                         0x00, 0x04, 127, 0, 0, 1};
    char name[256];
    size_t at = 12, len = 0, end;
    int is_a;
    if (n < 12 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1) return 0; /* one question */
    while (at < n && q[at] != 0) {
        size_t l = q[at];
        if ((l & 0xc0) || at + 1 + l > n || len + l + 1 >= sizeof name) return 0;
        if (len) name[len++] = '.';
        memcpy(name + len, q + at + 1, l);
        len += l;
        at += 1 + l;
    }
    name[len] = 0;
    end = at + 5; /* the root label, QTYPE, QCLASS */
    if (end > n || end + sizeof a_rr > cap) return 0;
    is_a = q[at + 1] == 0 && q[at + 2] == 1 && q[at + 3] == 0 && q[at + 4] == 1;
    memcpy(r, q, end);
    r[2] = (unsigned char)(0x84 | (q[2] & 0x79)); /* QR, AA; the opcode and RD asked */
    r[3] = 0x80;                                  /* RA, NOERROR */
    r[6] = 0, r[7] = is_a ? 1 : 0;                /* ANCOUNT */
    r[8] = r[9] = r[10] = r[11] = 0;              /* NSCOUNT, ARCOUNT (no EDNS) */
    if (is_a) memcpy(r + end, a_rr, sizeof a_rr);
    pthread_mutex_lock(&d->mu);
    d->queries++;
    if (is_a) {
        d->a_queries++;
        copy_text(d->last_a, sizeof d->last_a, name);
    }
    pthread_mutex_unlock(&d->mu);
    return end + (is_a ? sizeof a_rr : 0);
}

static void *dns_thread(void *arg) {
    fake_dns *d = (fake_dns *)arg;
    for (;;) {
        unsigned char q[512], r[600];
        struct pollfd p;
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t n;
        size_t rn;
        int stop;
        pthread_mutex_lock(&d->mu);
        stop = d->stop;
        pthread_mutex_unlock(&d->mu);
        if (stop) return NULL;
        p.fd = d->fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, 50) <= 0) continue;
        n = recvfrom(d->fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
        if (n <= 0) continue;
        rn = dns_answer(d, q, (size_t)n, r, sizeof r);
        if (rn) (void)sendto(d->fd, r, rn, 0, (struct sockaddr *)&from, flen);
    }
}

static void dns_start(fake_dns *d) {
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    d->fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (d->fd < 0) FAIL("socket: %s", strerror(errno));
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(d->fd, (struct sockaddr *)&a, sizeof a) != 0) FAIL("bind: %s", strerror(errno));
    if (getsockname(d->fd, (struct sockaddr *)&a, &alen) != 0) FAIL("getsockname");
    d->port = ntohs(a.sin_port);
    if (pthread_create(&d->thread, NULL, dns_thread, d) != 0) FAIL("pthread_create");
}

static void dns_stop(fake_dns *d) {
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    close(d->fd);
    pthread_mutex_destroy(&d->mu);
}

static int dns_queries(fake_dns *d, int *a_queries, char *last_a, size_t cap) {
    int n;
    pthread_mutex_lock(&d->mu);
    n = d->queries;
    if (a_queries) *a_queries = d->a_queries;
    if (last_a) copy_text(last_a, cap, d->last_a);
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* ---- Helpers ------------------------------------------------------------------------- */

/* Adds an account for `aor` through `server` over `transport` (not registered); its id. */
static uint64_t account(rvoip_endpoint *ep, const char *aor, const char *server, uint32_t transport) {
    rvoip_account_opts a;
    uint64_t id = 0;
    rvoip_account_opts_default(&a);
    a.aor = aor;
    a.password = "apw";
    a.server = server;
    a.transport = transport;
    a.expires_s = 300;
    CHECK_OK(rvoip_account_add(ep, &a, &id));
    CHECK(id != 0);
    return id;
}

/* rvoip_account_server of `id` must be `transport` and `addr`. */
static void check_server(rvoip_endpoint *ep, uint64_t id, uint32_t transport, const char *addr) {
    char buf[RVOIP_ADDRESS_SIZE];
    uint32_t t = SENTINEL;
    CHECK_OK(rvoip_account_server(ep, id, &t, buf, sizeof buf));
    if (t != transport || strcmp(buf, addr) != 0)
        FAIL("account %llu: server %u %s, want %u %s", (unsigned long long)id, (unsigned)t, buf,
             (unsigned)transport, addr);
    printf("account %llu: transport %u, server %s\n", (unsigned long long)id, (unsigned)t, buf);
}

static int is_reg_result(const rec_event *e, const void *arg) {
    (void)arg;
    return e->kind == RVOIP_EVENT_REGISTRATION_STATE &&
           (e->state == RVOIP_REGISTRATION_REGISTERED || e->state == RVOIP_REGISTRATION_FAILED);
}

int main(void) {
    static party alice; /* static: the log is large */
    static const char *bad_dns[] = {"127.0.0.1", "dns.example.com:53", "127.0.0.1:99999",
                                    "127.0.0.1:53 ", "[::1]", BAD_UTF8};
    rvoip_endpoint_opts o;
    rvoip_endpoint *ep = NULL, *sentinel_ep = (rvoip_endpoint *)&alice;
    rvoip_server *srv;
    fake_dns dns;
    char dns_addr[32], server[64], want[64], small[RVOIP_ADDRESS_SIZE], last_a[256];
    uint16_t port = 0;
    uint64_t literal, udp_default, tcp_default, tls_default, v6, named;
    uint32_t t;
    int i, a_queries = 0, cursor = 0, idx, before;
    size_t n;

    test_begin("smoke_dns");
    party_init(&alice, "alice");

    /* dns_server: NULL by default; not an IP:PORT → INVALID_ARGUMENT, *out untouched. */
    rvoip_endpoint_opts_default(&o);
    CHECK(o.dns_server == NULL);
    o.udp_listen = "127.0.0.1:0";
    o.stats_interval_ms = 0;
    for (i = 0; i < (int)(sizeof bad_dns / sizeof bad_dns[0]); i++) {
        ep = sentinel_ep;
        o.dns_server = bad_dns[i];
        CHECK_RC(rvoip_endpoint_new(&o, &ep), RVOIP_RESULT_INVALID_ARGUMENT);
        CHECK(ep == sentinel_ep);
    }
    /* "" is the system's configuration, like NULL. */
    o.dns_server = "";
    ep = NULL;
    CHECK_OK(rvoip_endpoint_new(&o, &ep));
    rvoip_endpoint_free(ep);

    /* The endpoint asks only the stand-in DNS server. */
    srv = start_server(&port);
    dns_start(&dns);
    snprintf(dns_addr, sizeof dns_addr, "127.0.0.1:%u", (unsigned)dns.port);
    o.dns_server = dns_addr;
    ep = NULL;
    CHECK_OK(rvoip_endpoint_new(&o, &ep));
    alice.ep = ep;
    CHECK_OK(rvoip_endpoint_set_event_callback(ep, record_cb, &alice));

    /* IP literals: reported as given (default ports filled in), no DNS query. */
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)port);
    literal = account(ep, "sip:alice@127.0.0.1", server, RVOIP_TRANSPORT_UDP);
    check_server(ep, literal, RVOIP_TRANSPORT_UDP, server);
    udp_default = account(ep, "sip:alice@127.0.0.1", "127.0.0.1", RVOIP_TRANSPORT_UDP);
    check_server(ep, udp_default, RVOIP_TRANSPORT_UDP, "127.0.0.1:5060");
    tcp_default = account(ep, "sip:alice@127.0.0.1", "127.0.0.1", RVOIP_TRANSPORT_TCP);
    check_server(ep, tcp_default, RVOIP_TRANSPORT_TCP, "127.0.0.1:5060");
    tls_default = account(ep, "sip:alice@127.0.0.1", "127.0.0.1", RVOIP_TRANSPORT_TLS);
    check_server(ep, tls_default, RVOIP_TRANSPORT_TLS, "127.0.0.1:5061");
    v6 = account(ep, "sip:alice@127.0.0.1", "[2001:db8::5]:5070", RVOIP_TRANSPORT_TCP);
    check_server(ep, v6, RVOIP_TRANSPORT_TCP, "[2001:db8::5]:5070");
    if (dns_queries(&dns, NULL, NULL, 0) != 0)
        FAIL("IP-literal servers made %d DNS queries, want none", dns_queries(&dns, NULL, NULL, 0));

    /* A host name: resolved by the stand-in (A 127.0.0.1), the explicit port kept. */
    snprintf(server, sizeof server, "pbx.example.test:%u", (unsigned)port);
    named = account(ep, "sip:alice@127.0.0.1", server, RVOIP_TRANSPORT_UDP);
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)port);
    check_server(ep, named, RVOIP_TRANSPORT_UDP, want);
    dns_queries(&dns, &a_queries, last_a, sizeof last_a);
    printf("stand-in DNS server %s: %d queries, %d for A (last: %s)\n", dns_addr,
           dns_queries(&dns, NULL, NULL, 0), a_queries, last_a);
    if (a_queries < 1 || strcmp(last_a, "pbx.example.test") != 0)
        FAIL("the stand-in DNS server saw %d A queries (last \"%s\"), want pbx.example.test",
             a_queries, last_a);

    /* Without a port: NAPTR and SRV give nothing, so A with the default port (RFC 3263 §4.2). */
    before = dns_queries(&dns, NULL, NULL, 0);
    check_server(ep, account(ep, "sip:alice@127.0.0.1", "pbx.example.test", RVOIP_TRANSPORT_TCP),
                 RVOIP_TRANSPORT_TCP, "127.0.0.1:5060");
    if (dns_queries(&dns, NULL, NULL, 0) < before + 2)
        FAIL("pbx.example.test without a port: %d more DNS queries, want NAPTR and SRV at least",
             dns_queries(&dns, NULL, NULL, 0) - before);

    /* ... and that is where the account registers. */
    CHECK_OK(rvoip_account_register(ep, named));
    idx = party_wait(&alice, &cursor, is_reg_result, NULL, WAIT_MS);
    if (idx < 0) {
        char seq[1024];
        party_sequence(&alice, seq, sizeof seq);
        FAIL("no registration result; events: %s", seq);
    }
    CHECK(alice.ev[idx].account_id == named);
    if (alice.ev[idx].state != RVOIP_REGISTRATION_REGISTERED)
        FAIL("pbx.example.test account: %s %u, want REGISTERED", reg_name(alice.ev[idx].state),
             (unsigned)alice.ev[idx].status);
    printf("pbx.example.test account: REGISTERED\n");
    check_server(ep, named, RVOIP_TRANSPORT_UDP, want);

    /* Errors: nothing written. */
    n = strlen(want);
    memset(small, 'x', sizeof small);
    t = SENTINEL;
    CHECK_RC(rvoip_account_server(ep, named, &t, small, n), RVOIP_RESULT_BUFFER_TOO_SMALL);
    CHECK(t == SENTINEL && small[0] == 'x' && small[n - 1] == 'x');
    CHECK_RC(rvoip_account_server(ep, named, &t, small, 0), RVOIP_RESULT_BUFFER_TOO_SMALL);
    CHECK_OK(rvoip_account_server(ep, named, &t, small, n + 1)); /* exactly enough */
    CHECK(strcmp(small, want) == 0 && t == RVOIP_TRANSPORT_UDP);
    t = SENTINEL;
    memset(small, 'x', sizeof small);
    CHECK_RC(rvoip_account_server(NULL, named, &t, small, sizeof small), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_server(ep, named, NULL, small, sizeof small), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_server(ep, named, &t, NULL, sizeof small), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_account_server(ep, 999999, &t, small, sizeof small), RVOIP_RESULT_NOT_FOUND);
    CHECK_OK(rvoip_account_remove(ep, literal));
    CHECK_RC(rvoip_account_server(ep, literal, &t, small, sizeof small), RVOIP_RESULT_NOT_FOUND);
    CHECK(t == SENTINEL && small[0] == 'x');
    CHECK(!alice.overflow);

    rvoip_endpoint_free(ep);
    dns_stop(&dns);
    rvoip_server_free(srv);
    party_destroy(&alice);
    test_end();
    return 0;
}
