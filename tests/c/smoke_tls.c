/*
 * C smoke test 4: SIP over TLS (RFC 3261 §26.2, RFC 5630) through the C ABI in one process.
 *
 * An embedded server listens on tls:127.0.0.1:0 with no certificate configured, so it makes a
 * self-signed one in its data directory (a fresh temporary directory here); the test reads its
 * SHA-256 fingerprint with rvoip_server_tls_fingerprint and its port with rvoip_server_port
 * (RVOIP_TRANSPORT_TLS). Then, each from its own endpoint:
 *   - alice registers over TLS without a pin: the self-signed certificate is refused, the
 *     registration FAILS with 503 and a reason naming the certificate, and never succeeds;
 *   - alice registers over TLS with the pinned fingerprint: REGISTERED.
 * Also: the certificate file is in the data directory, a too-small buffer gives
 * BUFFER_TOO_SMALL without writing, a malformed pin or a missing CA file gives
 * INVALID_ARGUMENT, tls_cert without tls_key is refused, and a stopped server has no TLS port
 * or fingerprint.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>

#include "common.h"

typedef struct tls_party {
    party p;
    /* The full reason of the last FAILED registration (the party log keeps 47 bytes). */
    char reason[512];
} tls_party;

/* Records, keeping the whole reason of a failed registration first (so a waiter that sees the
 * event sees the reason too). */
static void tls_cb(void *user_data, const rvoip_event *e) {
    tls_party *t = (tls_party *)user_data;
    if (e->kind == RVOIP_EVENT_REGISTRATION_STATE &&
        e->registration_state == RVOIP_REGISTRATION_FAILED) {
        pthread_mutex_lock(&t->p.mu);
        copy_text(t->reason, sizeof t->reason, e->reason);
        pthread_mutex_unlock(&t->p.mu);
    }
    party_record(&t->p, e);
}

static int is_reg_result(const rec_event *e, const void *arg) {
    (void)arg;
    return e->kind == RVOIP_EVENT_REGISTRATION_STATE &&
           (e->state == RVOIP_REGISTRATION_REGISTERED || e->state == RVOIP_REGISTRATION_FAILED);
}

/* Adds alice's TLS account (server 127.0.0.1:`port`, `pin` or NULL) on a new endpoint of `t`
 * and starts registering; returns the account id. */
static uint64_t tls_account(tls_party *t, uint16_t port, const char *pin) {
    rvoip_account_opts a;
    char server[32];
    uint64_t id = 0;
    t->p.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(t->p.ep, tls_cb, t));
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)port);
    rvoip_account_opts_default(&a);
    CHECK(a.tls_ca_file == NULL && a.tls_pin_sha256 == NULL);
    a.aor = "sip:alice@127.0.0.1";
    a.password = "apw";
    a.server = server;
    a.transport = RVOIP_TRANSPORT_TLS;
    a.tls_pin_sha256 = pin;
    a.expires_s = 300;
    CHECK_OK(rvoip_account_add(t->p.ep, &a, &id));
    CHECK(id != 0);
    CHECK_OK(rvoip_account_register(t->p.ep, id));
    return id;
}

/* The first registration result (REGISTERED or FAILED) of `t`'s account `id`; fails the test
 * on a timeout. */
static const rec_event *reg_result(tls_party *t, uint64_t id) {
    int cursor = 0, idx;
    idx = party_wait(&t->p, &cursor, is_reg_result, NULL, WAIT_MS);
    if (idx < 0) {
        char seq[1024];
        party_sequence(&t->p, seq, sizeof seq);
        FAIL("%s: no registration result; events: %s", t->p.name, seq);
    }
    CHECK(t->p.ev[idx].account_id == id);
    return &t->p.ev[idx];
}

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle), i, j;
    for (i = 0; hay[i]; i++) {
        for (j = 0; j < n && hay[i + j] &&
                    tolower((unsigned char)hay[i + j]) == tolower((unsigned char)needle[j]);
             j++) {
        }
        if (j == n) return 1;
    }
    return 0;
}

/* Removes the (flat) temporary data directory and what the server wrote into it. */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *ent;
    char path[512];
    if (!d) return;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int main(void) {
    static tls_party nopin, pinned; /* static: the logs are large */
    char dir[] = "/tmp/rvoip-smoke-tls-XXXXXX";
    char cert[600], fp[RVOIP_TLS_FINGERPRINT_SIZE], small[RVOIP_TLS_FINGERPRINT_SIZE];
    rvoip_server_opts so;
    rvoip_server *srv = NULL, *bad = NULL;
    rvoip_account_opts a;
    struct stat st;
    uint16_t tls_port = 0, port = 0;
    uint64_t id, unused = 0;
    const rec_event *r;
    int i, cursor, want;

    test_begin("smoke_tls");
    party_init(&nopin.p, "alice (no pin)");
    party_init(&pinned.p, "alice (pinned)");
    if (!mkdtemp(dir)) FAIL("mkdtemp: %s", strerror(errno));

    /* tls_cert without tls_key is refused. */
    rvoip_server_opts_default(&so);
    CHECK(so.tls_cert == NULL && so.tls_key == NULL && so.data_dir == NULL);
    so.listen = "tls:127.0.0.1:0";
    so.tls_cert = "/nonexistent/cert.pem";
    CHECK_RC(rvoip_server_new(&so, &bad), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(bad == NULL);

    /* The server: TLS only, zero-config certificate in `dir`. */
    rvoip_server_opts_default(&so);
    so.listen = "tls:127.0.0.1:0";
    so.domain = "127.0.0.1";
    so.users = "alice:apw";
    so.data_dir = dir;
    CHECK_OK(rvoip_server_new(&so, &srv));
    CHECK_RC(rvoip_server_tls_fingerprint(srv, fp, sizeof fp), RVOIP_RESULT_NOT_FOUND);
    CHECK_OK(rvoip_server_start(srv));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_TLS, &tls_port));
    CHECK(tls_port != 0);
    CHECK_RC(rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, &port), RVOIP_RESULT_NOT_FOUND);
    snprintf(cert, sizeof cert, "%s/tls-cert.pem", dir);
    if (stat(cert, &st) != 0 || st.st_size == 0) FAIL("no self-signed certificate at %s", cert);

    /* The fingerprint: 32 upper-case hex pairs joined by colons. */
    CHECK_RC(rvoip_server_tls_fingerprint(NULL, fp, sizeof fp), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_tls_fingerprint(srv, NULL, sizeof fp), RVOIP_RESULT_NULL_ARGUMENT);
    memset(small, 'x', sizeof small);
    CHECK_RC(rvoip_server_tls_fingerprint(srv, small, 95), RVOIP_RESULT_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'x' && small[94] == 'x');
    CHECK_OK(rvoip_server_tls_fingerprint(srv, fp, sizeof fp));
    CHECK(strlen(fp) == 95);
    for (i = 0; i < 95; i++) {
        if (i % 3 == 2)
            CHECK(fp[i] == ':');
        else
            CHECK(isdigit((unsigned char)fp[i]) || (fp[i] >= 'A' && fp[i] <= 'F'));
    }
    printf("server on tls port %u, fingerprint %s\n", (unsigned)tls_port, fp);

    /* Bad TLS settings are refused when the account is added. */
    nopin.p.ep = new_endpoint();
    rvoip_account_opts_default(&a);
    a.aor = "sip:alice@127.0.0.1";
    a.password = "apw";
    a.transport = RVOIP_TRANSPORT_TLS;
    a.tls_pin_sha256 = "not:a:fingerprint";
    CHECK_RC(rvoip_account_add(nopin.p.ep, &a, &unused), RVOIP_RESULT_INVALID_ARGUMENT);
    a.tls_pin_sha256 = NULL;
    a.tls_ca_file = "/nonexistent/ca.pem";
    CHECK_RC(rvoip_account_add(nopin.p.ep, &a, &unused), RVOIP_RESULT_INVALID_ARGUMENT);
    a.tls_ca_file = NULL;
    a.transport = RVOIP_TRANSPORT_WS; /* WS and WSS: server listeners only */
    CHECK_RC(rvoip_account_add(nopin.p.ep, &a, &unused), RVOIP_RESULT_INVALID_ARGUMENT);
    a.transport = RVOIP_TRANSPORT_WSS;
    CHECK_RC(rvoip_account_add(nopin.p.ep, &a, &unused), RVOIP_RESULT_INVALID_ARGUMENT);
    a.aor = "sips:alice@127.0.0.1";
    a.transport = RVOIP_TRANSPORT_TCP;
    CHECK_RC(rvoip_account_add(nopin.p.ep, &a, &unused), RVOIP_RESULT_INVALID_ARGUMENT);
    CHECK(unused == 0);
    rvoip_endpoint_free(nopin.p.ep);
    nopin.p.ep = NULL;

    /* Without a pin the self-signed certificate is refused: FAILED, 503, the reason names the
     * certificate; and the account does not register on the retry either. */
    id = tls_account(&nopin, tls_port, NULL);
    r = reg_result(&nopin, id);
    if (r->state != RVOIP_REGISTRATION_FAILED)
        FAIL("without a pin: %s, want REG_FAILED (the self-signed certificate was accepted)",
             reg_name(r->state));
    pthread_mutex_lock(&nopin.p.mu);
    printf("without a pin: FAILED %u \"%s\"\n", (unsigned)r->status, nopin.reason);
    if (r->status != 503) FAIL("without a pin: status %u, want 503", (unsigned)r->status);
    if (!contains_ci(nopin.reason, "certificate"))
        FAIL("without a pin: the reason \"%s\" does not name the certificate", nopin.reason);
    pthread_mutex_unlock(&nopin.p.mu);

    /* With the pin: registered. */
    id = tls_account(&pinned, tls_port, fp);
    r = reg_result(&pinned, id);
    if (r->state != RVOIP_REGISTRATION_REGISTERED)
        FAIL("with the pin: %s %u \"%s\", want REGISTERED", reg_name(r->state),
             (unsigned)r->status, pinned.reason);
    printf("with the pin: REGISTERED\n");

    /* The unpinned account never got registered (it retries after 2 s: wait past that). */
    sleep_ms(2500);
    cursor = 0;
    want = RVOIP_REGISTRATION_REGISTERED;
    CHECK(party_wait(&nopin.p, &cursor, is_reg_state, &want, 0) < 0);
    CHECK(!nopin.p.overflow && !pinned.p.overflow);

    rvoip_endpoint_free(nopin.p.ep);
    rvoip_endpoint_free(pinned.p.ep);

    /* Stopped: no TLS port, no fingerprint. */
    CHECK_OK(rvoip_server_stop(srv));
    CHECK_RC(rvoip_server_port(srv, RVOIP_TRANSPORT_TLS, &port), RVOIP_RESULT_NOT_FOUND);
    CHECK_RC(rvoip_server_tls_fingerprint(srv, fp, sizeof fp), RVOIP_RESULT_NOT_FOUND);
    rvoip_server_free(srv);
    remove_dir(dir);
    party_destroy(&nopin.p);
    party_destroy(&pinned.p);
    test_end();
    return 0;
}
