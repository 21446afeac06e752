/*
 * smoke_stats: rvoip_server_get_stats() against an embedded server. A stopped server gives
 * INVALID_STATE; NULL arguments give NULL_ARGUMENT; after alice and bob register (each:
 * REGISTER, 401, REGISTER with credentials, 200) the REGISTER counters, challenges,
 * registrations, bindings and the REGISTER latency count are exactly what was sent;
 * rvoip_sip_method_name() names the slots.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

static void wait_registered(party *p) {
    int cursor = 0, st = RVOIP_REGISTRATION_REGISTERED;
    if (party_wait(p, &cursor, is_reg_state, &st, WAIT_MS) < 0) FAIL("%s did not register", p->name);
}

int main(void) {
    rvoip_server_opts so;
    rvoip_server *srv = NULL;
    rvoip_server_stats st;
    party alice, bob;
    uint16_t port = 0;
    int i;
    uint64_t total = 0;

    test_begin("smoke_stats");
    CHECK(strcmp(rvoip_sip_method_name(RVOIP_SIP_METHOD_REGISTER), "REGISTER") == 0);
    CHECK(strcmp(rvoip_sip_method_name(RVOIP_SIP_METHOD_INVITE), "INVITE") == 0);
    CHECK(strcmp(rvoip_sip_method_name(RVOIP_SIP_METHODS - 1), "other") == 0);
    CHECK(rvoip_sip_method_name(RVOIP_SIP_METHODS) == NULL);

    /* Stopped: no event loop to ask. */
    rvoip_server_opts_default(&so);
    so.listen = "udp:127.0.0.1:0";
    so.users = "alice:apw,bob:bpw";
    CHECK_OK(rvoip_server_new(&so, &srv));
    CHECK_RC(rvoip_server_get_stats(srv, &st), RVOIP_RESULT_INVALID_STATE);
    CHECK_RC(rvoip_server_get_stats(NULL, &st), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_RC(rvoip_server_get_stats(srv, NULL), RVOIP_RESULT_NULL_ARGUMENT);
    CHECK_OK(rvoip_server_start(srv));
    CHECK_OK(rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, &port));

    memset(&st, 0xAB, sizeof st);
    CHECK_OK(rvoip_server_get_stats(srv, &st));
    CHECK(st.requests[RVOIP_SIP_METHOD_REGISTER] == 0);
    CHECK(st.bindings == 0 && st.calls == 0 && st.registrations == 0);
    CHECK(st.relay); /* the relay runs by default */
    CHECK(st.relay_sessions == 0 && st.relay_ports_in_use == 0);

    party_init(&alice, "alice");
    party_init(&bob, "bob");
    alice.ep = new_endpoint();
    bob.ep = new_endpoint();
    CHECK_OK(rvoip_endpoint_set_event_callback(alice.ep, record_cb, &alice));
    CHECK_OK(rvoip_endpoint_set_event_callback(bob.ep, record_cb, &bob));
    add_account(alice.ep, "alice", "apw", port);
    wait_registered(&alice);
    add_account(bob.ep, "bob", "bpw", port);
    wait_registered(&bob);

    CHECK_OK(rvoip_server_get_stats(srv, &st));
    printf("REGISTER requests %llu, 4xx %llu, 2xx %llu, latency count %llu sum %llu us\n",
           (unsigned long long)st.requests[RVOIP_SIP_METHOD_REGISTER],
           (unsigned long long)st.responses[RVOIP_SIP_METHOD_REGISTER][3],
           (unsigned long long)st.responses[RVOIP_SIP_METHOD_REGISTER][1],
           (unsigned long long)st.register_latency_count,
           (unsigned long long)st.register_latency_sum_us);
    if (st.requests[RVOIP_SIP_METHOD_REGISTER] != 4)
        FAIL("REGISTER requests %llu, want 4", (unsigned long long)st.requests[RVOIP_SIP_METHOD_REGISTER]);
    CHECK(st.responses[RVOIP_SIP_METHOD_REGISTER][3] == 2); /* two 401 */
    CHECK(st.responses[RVOIP_SIP_METHOD_REGISTER][1] == 2); /* two 200 */
    CHECK(st.responses[RVOIP_SIP_METHOD_REGISTER][0] == 0); /* no 100 Trying to REGISTER */
    CHECK(st.register_latency_count == 4);
    CHECK(st.challenges == 2);
    CHECK(st.registrations == 2);
    CHECK(st.bindings == 2);
    CHECK(st.auth_failures == 0 && st.parse_errors == 0);
    CHECK(st.requests[RVOIP_SIP_METHOD_INVITE] == 0 && st.calls == 0);
    for (i = 0; i < RVOIP_SIP_METHODS; i++) total += st.requests[i];
    CHECK(total >= 4);

    rvoip_endpoint_free(alice.ep);
    rvoip_endpoint_free(bob.ep);
    rvoip_server_free(srv);
    party_destroy(&alice);
    party_destroy(&bob);
    test_end();
    return 0;
}
