/*
 * server — the rvoip SIP server (registrar + proxy) embedded in a C program through the C API
 * (rvoip_server_new / rvoip_server_start). Prints the ports it listens on, then serves until
 * SIGINT / SIGTERM or for --seconds N.
 *
 *   server --listen udp:127.0.0.1:5060,tcp:127.0.0.1:5060 --users alice:secret,bob:secret
 *   server --listen udp:127.0.0.1:0 --seconds 30     (port 0: any free port, printed)
 *   server --config rvoip-server.toml                (the rvoip-server --config format)
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rvoip.h"

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void log_to_stderr(void *user_data, uint32_t level, const char *target, const char *message) {
    static const char *const names[] = {"", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    (void)user_data;
    fprintf(stderr, "[%s %s] %s\n", level <= 5 ? names[level] : "?", target, message);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: server [options]\n"
            "  --listen SPECS     comma-separated udp:IP:PORT / tcp:IP:PORT\n"
            "                     (default udp:0.0.0.0:5060,tcp:0.0.0.0:5060)\n"
            "  --domain DOMAIN    the domain served (default: the first bound IP)\n"
            "  --users LIST       user:password,... (default: the demo users alice and bob)\n"
            "  --users-file FILE  more user:password lines\n"
            "  --no-invite-auth   do not challenge INVITEs from local users\n"
            "  --config FILE      a TOML config (rvoip-server --config) instead of the above\n"
            "  --seconds N        stop after N seconds (default: run until Ctrl-C)\n"
            "  --verbose          library logs to stderr\n");
}

int main(int argc, char **argv) {
    rvoip_server_opts so;
    rvoip_server *srv = NULL;
    rvoip_result r;
    struct sigaction sa;
    const char *config = NULL;
    double seconds = 0;
    int i, verbose = 0;
    uint16_t port;
    struct timespec start, now, tick = {0, 100 * 1000000L};

    rvoip_server_opts_default(&so);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-invite-auth")) {
            so.invite_auth = false;
            continue;
        }
        if (!strcmp(a, "--verbose")) {
            verbose = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "server: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--listen")) so.listen = v;
        else if (!strcmp(a, "--domain")) so.domain = v;
        else if (!strcmp(a, "--users")) so.users = v;
        else if (!strcmp(a, "--users-file")) so.users_file = v;
        else if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--seconds")) {
            char *end = NULL;
            seconds = strtod(v, &end);
            if (!end || *end || seconds < 0) {
                fprintf(stderr, "server: bad --seconds %s\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "server: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (verbose) rvoip_set_log_callback(log_to_stderr, NULL, RVOIP_LOG_DEBUG);

    r = config ? rvoip_server_new_from_toml(config, &srv) : rvoip_server_new(&so, &srv);
    if (r != RVOIP_RESULT_OK) {
        fprintf(stderr, "server: configuration: %s\n", rvoip_result_str(r));
        return 1;
    }
    r = rvoip_server_start(srv);
    if (r != RVOIP_RESULT_OK) {
        fprintf(stderr, "server: start: %s\n", rvoip_result_str(r));
        rvoip_server_free(srv);
        return 1;
    }
    printf("rvoip %s server running\n", rvoip_version());
    if (rvoip_server_port(srv, RVOIP_TRANSPORT_UDP, &port) == RVOIP_RESULT_OK)
        printf("udp port %u\n", (unsigned)port);
    if (rvoip_server_port(srv, RVOIP_TRANSPORT_TCP, &port) == RVOIP_RESULT_OK)
        printf("tcp port %u\n", (unsigned)port);
    fflush(stdout);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!g_stop) {
        nanosleep(&tick, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (seconds > 0 &&
            (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
            break;
    }
    printf("stopping (%s)\n", g_stop ? "signal" : "--seconds elapsed");
    rvoip_server_stop(srv);
    rvoip_server_free(srv);
    return 0;
}
