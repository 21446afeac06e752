/*
 * smoke_reload: rvoip_server_reload_toml() against an embedded server made from a TOML file.
 * alice is a user and registers; bob is not, so his REGISTER fails. The file is rewritten with
 * bob added and reloaded while alice's binding is up: bob registers, alice's binding is kept
 * (two bindings), and a changed listen address is reported as needing a restart. A file that
 * does not parse gives INVALID_ARGUMENT and changes nothing (bob still registers; carol, who
 * is only in the bad file, does not). NULL arguments give NULL_ARGUMENT.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <unistd.h>

static void write_conf(const char *path, const char *listen, const char *users) {
    FILE *f = fopen(path, "w");
    if (!f) FAIL("cannot write %s", path);
    fprintf(f, "listen = [\"%s\"]\ndomain = \"127.0.0.1\"\nrelay = \"off\"\nstore = \"memory\"\n"
               "[users]\n%s",
            listen, users);
    fclose(f);
}

static int wait_reg(party *p, int *cursor, int state) {
    return party_wait(p, cursor, is_reg_state, &state, WAIT_MS);
}

int main(void) {
    char conf[] = "/tmp/rvoip_smoke_reload_XXXXXX";
    char listen[64];
    rvoip_server *srv = NULL;
    rvoip_server_stats st;
    party alice, bob, carol;
    uint16_t port = 0;
    uint32_t restart = 99;
    int fd, ac = 0, bc = 0, cc = 0;

    test_begin("smoke_reload");
    fd = mkstemp(conf);
    if (fd < 0) FAIL("mkstemp");
    close(fd);
    write_conf(conf, "udp:127.0.0.1:0", "alice = \"apw\"\n");
    CHECK_OK(rvoip_server_new_from_toml(conf, &srv));
    CHECK_OK(rvoip_server_start(srv));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, &port));

    party_init(&alice, "alice");
    party_init(&bob, "bob");
    party_init(&carol, "carol");
    alice.ep = new_endpoint();
    bob.ep = new_endpoint();
    carol.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(alice.ep, record_cb, &alice));
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.ep, record_cb, &bob));
    CHECK_OK(rvoip_endpoint_set_event_callback(carol.ep, record_cb, &carol));
    add_account(alice.ep, "alice", "apw", port);
    if (wait_reg(&alice, &ac, RVOIP_REGISTRATION_REGISTERED) < 0) FAIL("alice did not register");
    add_account(bob.ep, "bob", "bpw", port);
    if (wait_reg(&bob, &bc, RVOIP_REGISTRATION_FAILED) < 0) FAIL("bob (not a user yet) did not fail");

    /* bob added; the listen address changed too (kept until a restart, and counted). */
    snprintf(listen, sizeof listen, "udp:127.0.0.1:%u", (unsigned)(port == 65535 ? 1 : port + 1));
    write_conf(conf, listen, "alice = \"apw\"\nbob = \"bpw\"\n");
    CHECK_RC(rvoip_server_reload_toml(NULL, conf, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_reload_toml(srv, NULL, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_OK(rvoip_server_reload_toml(srv, conf, &restart));
    printf("restart needed for %u setting(s)\n", (unsigned)restart);
    CHECK(restart == 1);
    rvoip_endpoint_free(bob.ep);
    party_destroy(&bob);
    party_init(&bob, "bob");
    bc = 0;
    bob.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.ep, record_cb, &bob));
    add_account(bob.ep, "bob", "bpw", port);
    if (wait_reg(&bob, &bc, RVOIP_REGISTRATION_REGISTERED) < 0) FAIL("bob did not register after the reload");
    CHECK_OK(rvoip_server_get_stats(srv, &st));
    printf("bindings %llu\n", (unsigned long long)st.bindings);
    CHECK(st.bindings == 2); /* alice's binding survived the reload */

    /* A bad file changes nothing: carol (only in it) is not a user. */
    {
        FILE *f = fopen(conf, "w");
        if (!f) FAIL("cannot write %s", conf);
        fputs("listen = [\"udp:127.0.0.1:0\"\n[users]\ncarol = \"cpw\"\n", f);
        fclose(f);
    }
    CHECK_RC(rvoip_server_reload_toml(srv, conf, NULL), RVOIP_RESULT_INVALID_ARGUMENT);
    add_account(carol.ep, "carol", "cpw", port);
    if (wait_reg(&carol, &cc, RVOIP_REGISTRATION_FAILED) < 0) FAIL("carol registered from a bad file");
    CHECK_OK(rvoip_server_get_stats(srv, &st));
    CHECK(st.bindings == 2);

    rvoip_endpoint_free(alice.ep);
    rvoip_endpoint_free(bob.ep);
    rvoip_endpoint_free(carol.ep);
    rvoip_server_free(srv);
    party_destroy(&alice);
    party_destroy(&bob);
    party_destroy(&carol);
    unlink(conf);
    test_end();
    return 0;
}
