/*
 * softphone — a command-line SIP phone on the rvoip C API (include/rvoip.h).
 *
 * Registers an account (optional), then places one call (--call) or answers one
 * (--auto-answer), sends DTMF once connected, plays a WAV file or a tone (or the default
 * microphone), records what it hears to a WAV file (or plays it on the default speaker),
 * and hangs up after --duration seconds, when the peer hangs up, or on Ctrl-C.
 *
 *   softphone --account sip:alice@127.0.0.1 --password secret --call sip:bob@127.0.0.1 \
 *             --play tone:440 --dtmf 123# --duration 5
 *   softphone --account sip:bob@127.0.0.1 --password secret --auto-answer --record out.wav
 *   softphone --call sip:bob@127.0.0.1:5062 --play hello.wav     (direct, no registration)
 *
 * It uses the pull API (rvoip_endpoint_next_event) from its own loop: no threads, no locks.
 * Exit status: 0 when the call (or registration-only run) went as asked, 1 otherwise.
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

typedef struct options {
    const char *account, *password, *username, *server, *listen, *codecs;
    const char *call, *play, *record, *input, *output, *dtmf;
    int auto_answer, tcp, list_devices, verbose;
    double duration_s; /* 0: until the peer hangs up */
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: softphone [options]\n"
            "  --account URI        address-of-record to register, e.g. sip:alice@127.0.0.1\n"
            "  --password PW        its digest password\n"
            "  --username NAME      digest user name (default: the AOR's user)\n"
            "  --server HOST[:PORT] registrar / outbound proxy (default: the AOR's host)\n"
            "  --tcp                register and call over TCP (default UDP)\n"
            "  --listen IP:PORT     local SIP address (default 0.0.0.0:0, any free port)\n"
            "  --codecs LIST        e.g. opus,g722,pcmu,pcma (default: all built in)\n"
            "  --call URI           call URI (through --account's server, else directly)\n"
            "  --auto-answer        answer the first incoming call\n"
            "  --play FILE.wav|tone:HZ  what to send (default: the default microphone)\n"
            "  --record FILE.wav    where received audio goes (default: the default speaker)\n"
            "  --input ID           capture device id (see --list-devices)\n"
            "  --output ID          playback device id\n"
            "  --list-devices       list audio devices and exit\n"
            "  --dtmf DIGITS        send these DTMF digits (0-9 * # A-D) once connected\n"
            "  --duration SECONDS   hang up this long after connecting (default: wait for the peer)\n"
            "  --verbose            library logs to stderr\n");
}

static int parse_args(int argc, char **argv, options *o) {
    int i;
    memset(o, 0, sizeof *o);
    o->listen = "0.0.0.0:0";
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **str = NULL;
        if (!strcmp(a, "--account")) str = &o->account;
        else if (!strcmp(a, "--password")) str = &o->password;
        else if (!strcmp(a, "--username")) str = &o->username;
        else if (!strcmp(a, "--server")) str = &o->server;
        else if (!strcmp(a, "--listen")) str = &o->listen;
        else if (!strcmp(a, "--codecs")) str = &o->codecs;
        else if (!strcmp(a, "--call")) str = &o->call;
        else if (!strcmp(a, "--play")) str = &o->play;
        else if (!strcmp(a, "--record")) str = &o->record;
        else if (!strcmp(a, "--input")) str = &o->input;
        else if (!strcmp(a, "--output")) str = &o->output;
        else if (!strcmp(a, "--dtmf")) str = &o->dtmf;
        else if (!strcmp(a, "--auto-answer")) o->auto_answer = 1;
        else if (!strcmp(a, "--tcp")) o->tcp = 1;
        else if (!strcmp(a, "--list-devices")) o->list_devices = 1;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (!strcmp(a, "--duration")) {
            char *end = NULL;
            if (i + 1 >= argc) break;
            o->duration_s = strtod(argv[++i], &end);
            if (!end || *end || o->duration_s < 0) {
                fprintf(stderr, "softphone: bad --duration %s\n", argv[i]);
                return -1;
            }
            continue;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "softphone: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (str) {
            if (i + 1 >= argc) {
                fprintf(stderr, "softphone: %s needs a value\n", a);
                return -1;
            }
            *str = argv[++i];
        }
    }
    if (i < argc) {
        fprintf(stderr, "softphone: %s needs a value\n", argv[i]);
        return -1;
    }
    if (o->call && o->auto_answer) {
        fprintf(stderr, "softphone: --call and --auto-answer exclude each other\n");
        return -1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, rvoip_result r) {
    fprintf(stderr, "softphone: %s: %s\n", what, rvoip_result_str(r));
    return 1;
}

static void log_to_stderr(void *user_data, uint32_t level, const char *target, const char *message) {
    static const char *const names[] = {"", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    (void)user_data;
    fprintf(stderr, "[%s %s] %s\n", level <= 5 ? names[level] : "?", target, message);
}

static int list_devices(void) {
    rvoip_audio_device devs[32];
    size_t n = 0, i;
    rvoip_result r = rvoip_audio_devices(devs, 32, &n);
    if (r != RVOIP_RESULT_OK && r != RVOIP_RESULT_BUFFER_TOO_SMALL) return fail("audio devices", r);
    for (i = 0; i < n && i < 32; i++)
        printf("%-40s %s%s%s %s\n", devs[i].id, devs[i].is_input ? "in " : "", devs[i].is_output ? "out " : "",
               devs[i].is_default ? "(default)" : "", devs[i].name);
    if (n == 0) printf("no audio devices\n");
    return 0;
}

/* The call's audio from the options (NULL: the library's default device, or silence/discard). */
static rvoip_result make_audio(const options *o, rvoip_call_opts *co) {
    rvoip_result r = RVOIP_RESULT_OK;
    rvoip_call_opts_default(co);
    if (o->play && !strncmp(o->play, "tone:", 5)) {
        double hz = atof(o->play + 5);
        r = rvoip_audio_source_tone_new(hz, 48000, 8000, &co->source);
    } else if (o->play) {
        r = rvoip_audio_source_wav_new(o->play, &co->source);
    } else if (o->input) {
        r = rvoip_audio_source_device_new(o->input, &co->source);
    }
    if (r != RVOIP_RESULT_OK) return r;
    if (o->record)
        r = rvoip_audio_sink_wav_new(o->record, 16000, &co->sink);
    else if (o->output)
        r = rvoip_audio_sink_device_new(o->output, &co->sink);
    if (r != RVOIP_RESULT_OK) {
        rvoip_audio_source_free(co->source); /* not handed to a call: ours to free */
        co->source = NULL;
    }
    return r;
}

static const char *call_state_name(rvoip_call_state s) {
    switch (s) {
    case RVOIP_CALL_CALLING: return "calling";
    case RVOIP_CALL_RINGING: return "ringing";
    case RVOIP_CALL_EARLY_MEDIA: return "early media";
    case RVOIP_CALL_CONNECTED: return "connected";
    case RVOIP_CALL_HELD: return "on hold";
    case RVOIP_CALL_ENDED: return "ended";
    }
    return "?";
}

int main(int argc, char **argv) {
    options o;
    rvoip_endpoint_opts eo;
    rvoip_endpoint *ep = NULL;
    rvoip_call_opts co;
    rvoip_event ev;
    rvoip_result r;
    struct sigaction sa;
    uint64_t account = 0, call = 0;
    uint16_t port = 0;
    int registered = 0, connected = 0, ended = 0, exit_code = 0, hung_up = 0;
    double hangup_at = 0, give_up_at = 0;

    if (parse_args(argc, argv, &o) != 0) return 2;
    if (o.list_devices) return list_devices();
    if (o.verbose) rvoip_set_log_callback(log_to_stderr, NULL, RVOIP_LOG_DEBUG);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rvoip_endpoint_opts_default(&eo);
    eo.udp_listen = o.listen;
    eo.codecs = o.codecs;
    eo.stats_interval_ms = 0;
    r = rvoip_endpoint_new(&eo, &ep);
    if (r != RVOIP_RESULT_OK) return fail("endpoint", r);
    if (rvoip_endpoint_udp_port(ep, &port) == RVOIP_RESULT_OK) printf("listening on UDP port %u\n", (unsigned)port);

    if (o.account) {
        rvoip_account_opts ao;
        rvoip_account_opts_default(&ao);
        ao.aor = o.account;
        ao.username = o.username;
        ao.password = o.password;
        ao.server = o.server;
        ao.transport = o.tcp ? RVOIP_TRANSPORT_TCP : RVOIP_TRANSPORT_UDP;
        r = rvoip_account_add(ep, &ao, &account);
        if (r == RVOIP_RESULT_OK) r = rvoip_account_register(ep, account);
        if (r != RVOIP_RESULT_OK) {
            rvoip_endpoint_free(ep);
            return fail("account", r);
        }
        give_up_at = now_s() + 10; /* registration deadline */
    }

    while (!ended) {
        double now = now_s();
        if (g_stop && !hung_up) {
            if (!call) break;
            printf("interrupted: hanging up\n");
            rvoip_call_hangup(ep, call);
            hung_up = 1;
            give_up_at = now + 5;
        }
        if (connected && hangup_at > 0 && now >= hangup_at && !hung_up) {
            printf("%.1f s are up: hanging up\n", o.duration_s);
            rvoip_call_hangup(ep, call);
            hung_up = 1;
            give_up_at = now + 5;
        }
        if (give_up_at > 0 && now >= give_up_at) {
            fprintf(stderr, "softphone: %s timed out\n", hung_up ? "hang-up" : "registration");
            exit_code = 1;
            break;
        }
        /* Ready to call (registered, or no account). */
        if (o.call && !call && (registered || !o.account)) {
            r = make_audio(&o, &co);
            if (r != RVOIP_RESULT_OK) {
                exit_code = fail("audio", r);
                break;
            }
            r = rvoip_call_make(ep, account, o.call, &co, &call);
            if (r != RVOIP_RESULT_OK) {
                exit_code = fail("call", r);
                break;
            }
            printf("calling %s\n", o.call);
        }

        r = rvoip_endpoint_next_event(ep, 100, &ev);
        if (r == RVOIP_RESULT_TIMEOUT) continue;
        if (r != RVOIP_RESULT_OK) {
            exit_code = fail("event", r);
            break;
        }
        switch (ev.kind) {
        case RVOIP_EVENT_REGISTRATION_STATE:
            if (ev.registration_state == RVOIP_REGISTRATION_REGISTERED && !registered) {
                printf("registered as %s for %u s\n", o.account, (unsigned)ev.expires_s);
                registered = 1;
                give_up_at = 0;
                if (!o.call && !o.auto_answer) printf("waiting (Ctrl-C to quit; --auto-answer answers calls)\n");
            } else if (ev.registration_state == RVOIP_REGISTRATION_FAILED && !registered) {
                fprintf(stderr, "softphone: registration failed: %u %s\n", (unsigned)ev.status, ev.reason);
                exit_code = 1;
                ended = 1;
            }
            break;
        case RVOIP_EVENT_INCOMING_CALL:
            printf("incoming call from %s\n", ev.from);
            if (o.auto_answer && !call) {
                call = ev.call_id;
                r = make_audio(&o, &co);
                if (r == RVOIP_RESULT_OK) r = rvoip_call_answer(ep, call, &co);
                if (r != RVOIP_RESULT_OK) {
                    exit_code = fail("answer", r);
                    ended = 1;
                }
            } else {
                rvoip_call_reject(ep, ev.call_id, 486); /* busy */
            }
            break;
        case RVOIP_EVENT_CALL_STATE:
            if (ev.call_id != call) break;
            if (ev.call_state == RVOIP_CALL_ENDED) {
                printf("call ended: %u %s\n", (unsigned)ev.status, ev.reason);
                if (ev.status != 200) exit_code = 1;
                ended = 1;
                break;
            }
            printf("call %s\n", call_state_name(ev.call_state));
            if (ev.call_state == RVOIP_CALL_CONNECTED && !connected) {
                connected = 1;
                if (o.duration_s > 0) hangup_at = now_s() + o.duration_s;
                if (o.dtmf) {
                    r = rvoip_call_send_dtmf(ep, call, o.dtmf);
                    if (r != RVOIP_RESULT_OK) fail("DTMF", r);
                    else printf("sent DTMF %s\n", o.dtmf);
                }
            }
            break;
        case RVOIP_EVENT_MEDIA_STARTED:
            printf("media: %s to %s (%s)\n", ev.codec, ev.remote_addr, ev.direction);
            break;
        case RVOIP_EVENT_MEDIA_STOPPED:
            printf("media stopped\n");
            break;
        case RVOIP_EVENT_DTMF_RECEIVED:
            printf("DTMF received: %c\n", ev.digit);
            break;
        case RVOIP_EVENT_STATISTICS:
            if (ev.call_id == call)
                printf("stats: %s tx %llu rx %llu packets, lost %lld, jitter %.1f ms, MOS %.2f\n",
                       ev.stats.codec, (unsigned long long)ev.stats.tx_packets,
                       (unsigned long long)ev.stats.rx_packets, (long long)ev.stats.rx_lost,
                       ev.stats.jitter_ms, ev.stats.mos);
            break;
        case RVOIP_EVENT_MESSAGE_RECEIVED:
            /* The body is body_len bytes, not NUL-terminated (printed up to a NUL, if any). */
            printf("message from %s (%s, %lu bytes): %.*s\n", ev.from, ev.content_type,
                   (unsigned long)ev.body_len, ev.body_len > 4096 ? 4096 : (int)ev.body_len,
                   (const char *)ev.body);
            break;
        case RVOIP_EVENT_MESSAGE_RESULT:
            printf("message %llu: %u %s\n", (unsigned long long)ev.message_id, (unsigned)ev.status,
                   ev.reason);
            break;
        case RVOIP_EVENT_MEDIA_SECURITY_FAILED:
            /* DTLS-SRTP failed: no media can flow on this call, so end it. */
            fprintf(stderr, "softphone: media security failed: %s\n", ev.reason);
            if (ev.call_id == call && !hung_up) {
                rvoip_call_hangup(ep, call);
                hung_up = 1;
                give_up_at = now_s() + 5;
                exit_code = 1;
            }
            break;
        case RVOIP_EVENT_TRANSFER_REQUESTED:
            /* This example does not follow transfers (RFC 3515 REFER): it declines them.
             * rvoip_endpoint_accept_transfer would place the new call instead. */
            printf("transfer to %s requested; declined\n", ev.target);
            rvoip_endpoint_reject_transfer(ep, ev.transfer_id, 603);
            break;
        case RVOIP_EVENT_TRANSFER_STATUS:
            printf("transfer: %u %s%s\n", (unsigned)ev.status, ev.reason, ev.is_final ? " (final)" : "");
            break;
        case RVOIP_EVENT_CALL_REDIRECTED:
            printf("call redirected (%u) to %s\n", (unsigned)ev.status, ev.target);
            break;
        case RVOIP_EVENT_SUBSCRIPTION_STATE:
            /* This example makes no subscriptions (rvoip_account_subscribe); printed anyway. */
            printf("subscription %llu: %s%s%s\n", (unsigned long long)ev.subscription_id,
                   ev.subscription_state == RVOIP_SUBSCRIPTION_ACTIVE       ? "active"
                   : ev.subscription_state == RVOIP_SUBSCRIPTION_PENDING    ? "pending"
                   : ev.subscription_state == RVOIP_SUBSCRIPTION_TERMINATED ? "terminated"
                                                                            : "subscribing",
                   ev.subscription_state == RVOIP_SUBSCRIPTION_TERMINATED ? ": " : "",
                   ev.subscription_state == RVOIP_SUBSCRIPTION_TERMINATED ? ev.reason : "");
            break;
        case RVOIP_EVENT_BUDDY_PRESENCE:
            printf("presence of %s: %s%s%s%s%s\n", ev.entity, ev.online ? "online" : "offline",
                   ev.activity[0] ? ", " : "", ev.activity, ev.note[0] ? ", " : "", ev.note);
            break;
        case RVOIP_EVENT_LINE_STATE:
            printf("line %s: %s\n", ev.entity,
                   ev.line_state == RVOIP_LINE_IN_CALL  ? "in call"
                   : ev.line_state == RVOIP_LINE_RINGING ? "ringing"
                                                         : "idle");
            break;
        case RVOIP_EVENT_PUBLISH_RESULT:
            printf("presence published: %u %s\n", (unsigned)ev.status, ev.reason);
            break;
        }
    }
    if ((o.call || o.auto_answer) && !connected && !g_stop) exit_code = 1;
    if (account && registered) {
        /* Remove our binding; give the REGISTER a moment (rvoip_endpoint_free ends it all). */
        double until = now_s() + 2;
        rvoip_account_unregister(ep, account);
        while (now_s() < until) {
            if (rvoip_endpoint_next_event(ep, 100, &ev) != RVOIP_RESULT_OK) continue;
            if (ev.kind == RVOIP_EVENT_REGISTRATION_STATE &&
                ev.registration_state != RVOIP_REGISTRATION_REGISTERING)
                break;
        }
    }
    rvoip_endpoint_free(ep);
    return exit_code;
}
