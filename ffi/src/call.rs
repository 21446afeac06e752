//! Accounts (`rvoip_account_*`) and calls (`rvoip_call_*`), named by `uint64_t` ids.

use std::ffi::c_char;

use rvoip_sdk::api::{
    AccountId, AccountOptions, CallId, CallOptions, DtmfMode, SrtpConfig, SrtpKeying, SrtpPolicy,
    Transport,
};

use crate::audio::{rvoip_audio_sink, rvoip_audio_source, take_sink, take_source};
use crate::endpoint::rvoip_endpoint;
use crate::event::rvoip_call_stats;
use crate::rvoip_result;
use crate::util::{boundary, copy_into, opt_str_arg, ref_arg, str_arg, write_out};

/// UDP transport (for [`rvoip_account_opts::transport`]).
pub const RVOIP_TRANSPORT_UDP: u32 = 0;
/// TCP transport (for [`rvoip_account_opts::transport`]).
pub const RVOIP_TRANSPORT_TCP: u32 = 1;
/// SIP over TLS (RFC 3261 §26.2, RFC 5630), default port 5061 (for
/// [`rvoip_account_opts::transport`] and `rvoip_server_port`).
/// The server's certificate is verified against the system roots, plus
/// [`rvoip_account_opts::tls_ca_file`], or accepted by [`rvoip_account_opts::tls_pin_sha256`];
/// a connection never falls back to plaintext.
pub const RVOIP_TRANSPORT_TLS: u32 = 2;
/// SIP over WebSocket (RFC 7118), for `rvoip_server_port` of a `ws:` listener. Server
/// listeners only: an account with it gives INVALID_ARGUMENT from [`rvoip_account_add`].
pub const RVOIP_TRANSPORT_WS: u32 = 3;
/// SIP over secure WebSocket (WebSocket over TLS, RFC 7118), for `rvoip_server_port` of a
/// `wss:` listener. Server listeners only: an account with it gives INVALID_ARGUMENT from
/// [`rvoip_account_add`].
pub const RVOIP_TRANSPORT_WSS: u32 = 4;

/// Whether a call's media must, may or must not be SRTP (RFC 3711), for
/// [`rvoip_account_opts::srtp_policy`] and `rvoip_endpoint_opts::srtp_policy`: one of
/// [`RVOIP_SRTP_OPTIONAL`] (0, the default, so a zero-filled options struct means optional),
/// [`RVOIP_SRTP_OFF`] or [`RVOIP_SRTP_MANDATORY`]. A plain integer rather than a C enum so that
/// any value a caller stores is defined behaviour: other values give INVALID_ARGUMENT.
pub type rvoip_srtp_policy = u32;
/// SRTP when the peer offers it (the default, 0): an SRTP offer is answered with SRTP; our
/// offers are `RTP/AVP`, carrying `a=crypto` keys (SDES, RFC 4568) when SDES may be used.
pub const RVOIP_SRTP_OPTIONAL: u32 = 0;
/// Plain RTP only: an SRTP offer is refused with 488 (never answered in plaintext).
pub const RVOIP_SRTP_OFF: u32 = 1;
/// SRTP or no call: our offers use a secure profile (`RTP/SAVP` with SDES, RFC 4568;
/// `UDP/TLS/RTP/SAVP` with DTLS-SRTP, RFC 5764); a plain offer is refused with 488, and a
/// plain answer ends the call (CALL_STATE ENDED, status 488, a `reason` saying why).
pub const RVOIP_SRTP_MANDATORY: u32 = 2;

/// Which SRTP key exchange our offers use, for [`rvoip_account_opts::srtp_keying`] and
/// `rvoip_endpoint_opts::srtp_keying`: one of [`RVOIP_SRTP_KEYING_AUTO`] (0, the default),
/// [`RVOIP_SRTP_KEYING_SDES`] or [`RVOIP_SRTP_KEYING_DTLS`]. Answers accept either kind the
/// offer uses. A plain integer, as [`rvoip_srtp_policy`]: other values give INVALID_ARGUMENT.
pub type rvoip_srtp_keying = u32;
/// SDES (RFC 4568) when the signalling is encrypted (TLS) or `srtp_sdes_over_insecure` allows
/// it, else DTLS-SRTP (RFC 5763/5764). The default (0).
pub const RVOIP_SRTP_KEYING_AUTO: u32 = 0;
/// SDES only: the keys travel in the SDP's `a=crypto` lines (RFC 4568). A mandatory offer on
/// unencrypted signalling fails unless `srtp_sdes_over_insecure` is set.
pub const RVOIP_SRTP_KEYING_SDES: u32 = 1;
/// DTLS-SRTP only: the keys come from a DTLS handshake on the media path, checked against the
/// SDP's `a=fingerprint` (RFC 5763, RFC 5764).
pub const RVOIP_SRTP_KEYING_DTLS: u32 = 2;

/// How an account's calls send DTMF keys ([`rvoip_call_send_dtmf`]), for
/// [`rvoip_account_opts::dtmf_mode`]: [`RVOIP_DTMF_RFC4733`] (0, the default, so a zero-filled
/// options struct means RTP telephone-events) or [`RVOIP_DTMF_SIP_INFO`]. Keys are received
/// both ways whatever the mode. A plain integer, as [`rvoip_srtp_policy`]: other values give
/// INVALID_ARGUMENT.
pub type rvoip_dtmf_mode = u32;
/// DTMF as RTP telephone-events in the media stream (RFC 4733), the default (0). Needs
/// telephone-event negotiated (`rvoip_endpoint_opts::dtmf`).
pub const RVOIP_DTMF_RFC4733: u32 = 0;
/// DTMF as SIP INFO requests in the call's dialog (RFC 6086) with `application/dtmf-relay`
/// bodies (`Signal=5`, `Duration=160`), one INFO transaction after the other, as many PBXes
/// expect (PJSIP's `PJSUA_DTMF_METHOD_SIP_INFO`).
pub const RVOIP_DTMF_SIP_INFO: u32 = 1;

/// The SDK's DTMF mode of a C code; INVALID_ARGUMENT for a value that is none of the
/// `RVOIP_DTMF_*` constants.
pub(crate) fn dtmf_mode(code: rvoip_dtmf_mode) -> Result<DtmfMode, rvoip_result> {
    match code {
        RVOIP_DTMF_RFC4733 => Ok(DtmfMode::Rfc4733),
        RVOIP_DTMF_SIP_INFO => Ok(DtmfMode::SipInfo),
        _ => Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
    }
}

/// The `RVOIP_DTMF_*` code of an SDK DTMF mode.
pub(crate) fn dtmf_mode_code(m: DtmfMode) -> rvoip_dtmf_mode {
    match m {
        DtmfMode::Rfc4733 => RVOIP_DTMF_RFC4733,
        DtmfMode::SipInfo => RVOIP_DTMF_SIP_INFO,
    }
}

/// The SDK's SRTP settings from the C fields; INVALID_ARGUMENT for a value that is none of
/// the `RVOIP_SRTP_*` constants.
pub(crate) fn srtp_config(
    policy: rvoip_srtp_policy,
    keying: rvoip_srtp_keying,
    sdes_over_insecure: bool,
) -> Result<SrtpConfig, rvoip_result> {
    Ok(SrtpConfig {
        policy: match policy {
            RVOIP_SRTP_OPTIONAL => SrtpPolicy::Optional,
            RVOIP_SRTP_OFF => SrtpPolicy::Off,
            RVOIP_SRTP_MANDATORY => SrtpPolicy::Mandatory,
            _ => return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
        },
        keying: match keying {
            RVOIP_SRTP_KEYING_AUTO => SrtpKeying::Auto,
            RVOIP_SRTP_KEYING_SDES => SrtpKeying::Sdes,
            RVOIP_SRTP_KEYING_DTLS => SrtpKeying::Dtls,
            _ => return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
        },
        sdes_over_insecure,
    })
}

/// The `RVOIP_SRTP_*` policy code of an SDK policy.
pub(crate) fn srtp_policy_code(p: SrtpPolicy) -> rvoip_srtp_policy {
    match p {
        SrtpPolicy::Optional => RVOIP_SRTP_OPTIONAL,
        SrtpPolicy::Off => RVOIP_SRTP_OFF,
        SrtpPolicy::Mandatory => RVOIP_SRTP_MANDATORY,
    }
}

/// The `RVOIP_SRTP_KEYING_*` code of an SDK key exchange.
pub(crate) fn srtp_keying_code(k: SrtpKeying) -> rvoip_srtp_keying {
    match k {
        SrtpKeying::Auto => RVOIP_SRTP_KEYING_AUTO,
        SrtpKeying::Sdes => RVOIP_SRTP_KEYING_SDES,
        SrtpKeying::Dtls => RVOIP_SRTP_KEYING_DTLS,
    }
}

/// The size of a buffer that holds any address from [`rvoip_account_server`], in bytes: the
/// longest `IP:port` text, `[` + IPv6 address (39) + `%` + scope id (10) + `]:` + port (5),
/// is 58 characters, plus the terminating NUL, rounded up.
pub const RVOIP_ADDRESS_SIZE: usize = 64;

/// The largest `body_len` [`rvoip_account_send_message`] accepts, in bytes (RFC 3428 §7: a
/// pager-mode MESSAGE stays well under the path MTU; larger content needs a session).
pub const RVOIP_MESSAGE_MAX_BODY: usize = 1300;

/// An account to add. Fill with [`rvoip_account_opts_default`]; strings are copied.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_account_opts {
    /// The address-of-record, e.g. `sip:alice@example.com`. Required.
    pub aor: *const c_char,
    /// Digest user name; NULL or "" for the AOR's user part.
    pub username: *const c_char,
    /// Digest password (NULL for none).
    pub password: *const c_char,
    /// Registrar / outbound proxy `host[:port]`; NULL for the AOR's host.
    pub server: *const c_char,
    /// [`RVOIP_TRANSPORT_UDP`], [`RVOIP_TRANSPORT_TCP`] or [`RVOIP_TRANSPORT_TLS`]. A `sips:`
    /// AOR needs TLS (RFC 5630 §3). [`RVOIP_TRANSPORT_WS`] and [`RVOIP_TRANSPORT_WSS`] are for
    /// server listeners only (INVALID_ARGUMENT).
    pub transport: u32,
    /// Requested registration lifetime in seconds (default 3600).
    pub expires_s: u32,
    /// With [`RVOIP_TRANSPORT_TLS`]: a PEM file of extra trusted CA certificates, added to the
    /// system roots (RFC 5922 §7: the server's certificate must chain to a trusted root and
    /// name the server's host). NULL or "" for the system roots only (default). Read by
    /// [`rvoip_account_add`]; an unreadable file or one without a certificate gives
    /// INVALID_ARGUMENT. Ignored with UDP and TCP.
    pub tls_ca_file: *const c_char,
    /// With [`RVOIP_TRANSPORT_TLS`]: the SHA-256 fingerprint of the server's certificate, as
    /// 32 hex pairs (`AB:CD:…`; case, colons and spaces free; what
    /// `rvoip_server_tls_fingerprint` and
    /// `rvoip-server` print). A certificate with this fingerprint is accepted whatever signed
    /// it and whatever names it carries (a self-signed server); any other is verified as
    /// usual. NULL or "" for no pin (default); a malformed one gives INVALID_ARGUMENT from
    /// [`rvoip_account_add`]. Ignored with UDP and TCP.
    pub tls_pin_sha256: *const c_char,
    /// SRTP (RFC 3711) for the account's calls, made and received: [`RVOIP_SRTP_OPTIONAL`]
    /// (0, default), [`RVOIP_SRTP_OFF`] or [`RVOIP_SRTP_MANDATORY`]. A mandatory call the peer
    /// cannot secure ends with status 488 and a `reason` naming the cause. Any other value
    /// gives INVALID_ARGUMENT from [`rvoip_account_add`].
    pub srtp_policy: rvoip_srtp_policy,
    /// The key exchange of the account's SRTP offers: [`RVOIP_SRTP_KEYING_AUTO`] (0, default:
    /// SDES, RFC 4568, over TLS; DTLS-SRTP, RFC 5764, otherwise), [`RVOIP_SRTP_KEYING_SDES`] or
    /// [`RVOIP_SRTP_KEYING_DTLS`]. Answers accept either kind. Any other value gives
    /// INVALID_ARGUMENT from [`rvoip_account_add`].
    pub srtp_keying: rvoip_srtp_keying,
    /// Allow SDES keys (`a=crypto`, RFC 4568) in SDP carried over UDP or TCP, where anyone on
    /// the path can read them (default false: SDES over TLS only, RFC 4568 §8.3).
    pub srtp_sdes_over_insecure: bool,
    /// How the account's calls send DTMF ([`rvoip_call_send_dtmf`]): [`RVOIP_DTMF_RFC4733`]
    /// (0, default: RTP telephone-events) or [`RVOIP_DTMF_SIP_INFO`] (SIP INFO with
    /// `application/dtmf-relay`). Received keys are taken both ways. Any other value gives
    /// INVALID_ARGUMENT from [`rvoip_account_add`].
    pub dtmf_mode: rvoip_dtmf_mode,
}

/// Fills `opts` with the defaults (all strings NULL, UDP, 3600 s, no TLS CA file or pin,
/// SRTP optional with automatic keying and no SDES over UDP/TCP, DTMF by RFC 4733). NULL is
/// ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_opts_default(opts: *mut rvoip_account_opts) {
    if opts.is_null() {
        return;
    }
    let srtp = SrtpConfig::default();
    // SAFETY: non-NULL writable struct (caller's contract).
    unsafe {
        write_out(
            opts,
            rvoip_account_opts {
                aor: std::ptr::null(),
                username: std::ptr::null(),
                password: std::ptr::null(),
                server: std::ptr::null(),
                transport: RVOIP_TRANSPORT_UDP,
                expires_s: 3600,
                tls_ca_file: std::ptr::null(),
                tls_pin_sha256: std::ptr::null(),
                srtp_policy: srtp_policy_code(srtp.policy),
                srtp_keying: srtp_keying_code(srtp.keying),
                srtp_sdes_over_insecure: srtp.sdes_over_insecure,
                dtmf_mode: dtmf_mode_code(rvoip_sdk::api::DtmfMode::default()),
            },
        )
    };
}

/// Adds an account (not registered yet: [`rvoip_account_register`]); `*account_id` gets its id.
/// The server name is resolved now (default port 5060, 5061 with TLS). With
/// [`RVOIP_TRANSPORT_TLS`] the TLS settings are read now too; a certificate the server shows
/// later that fails verification ends the REGISTER with a REGISTRATION_STATE event FAILED,
/// status 503, whose reason names the certificate error. Errors: NULL_ARGUMENT (`ep`, `opts`,
/// `opts->aor`, `account_id`), INVALID_ARGUMENT (bad AOR, transport, UTF-8, `sips:` AOR
/// without TLS, unreadable CA file, malformed pin, an SRTP policy or keying that is none of
/// the `RVOIP_SRTP_*` values, a DTMF mode that is none of the `RVOIP_DTMF_*` values), NETWORK
/// (unresolvable server).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_add(
    ep: *mut rvoip_endpoint,
    opts: *const rvoip_account_opts,
    account_id: *mut u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or live objects (caller's contract).
        let (ep, o) = unsafe { (ref_arg(ep)?, ref_arg(opts)?) };
        if account_id.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        // SAFETY: NULL or valid C strings.
        let (aor, user, pw, server, ca_file, pin) = unsafe {
            (
                str_arg(o.aor)?,
                opt_str_arg(o.username)?,
                opt_str_arg(o.password)?,
                opt_str_arg(o.server)?,
                opt_str_arg(o.tls_ca_file)?,
                opt_str_arg(o.tls_pin_sha256)?,
            )
        };
        let mut a = AccountOptions::new(aor, pw.unwrap_or(""));
        a.username = user.unwrap_or("").to_string();
        a.server = server.map(str::to_string);
        a.transport = match o.transport {
            RVOIP_TRANSPORT_UDP => Transport::Udp,
            RVOIP_TRANSPORT_TCP => Transport::Tcp,
            RVOIP_TRANSPORT_TLS => Transport::Tls,
            _ => return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
        };
        a.tls.ca_file = ca_file.map(Into::into);
        a.tls.pin_sha256 = pin.map(str::to_string);
        a.srtp = srtp_config(o.srtp_policy, o.srtp_keying, o.srtp_sdes_over_insecure)?;
        a.dtmf_mode = dtmf_mode(o.dtmf_mode)?;
        a.expires_s = if o.expires_s == 0 { 3600 } else { o.expires_s };
        let acc = ep.ep.add_account(a)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(account_id, acc.id().0) };
        Ok(())
    })
}

pub(crate) fn account(
    ep: &rvoip_endpoint,
    id: u64,
) -> Result<rvoip_sdk::api::Account, rvoip_result> {
    Ok(ep.ep.account(AccountId(id))?)
}

pub(crate) fn call(ep: &rvoip_endpoint, id: u64) -> Result<rvoip_sdk::api::Call, rvoip_result> {
    Ok(ep.ep.call(CallId(id))?)
}

/// Registers the account and keeps it registered (refresh; retries with backoff). Progress
/// arrives as REGISTRATION_STATE events. Errors: NULL_ARGUMENT, NOT_FOUND.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_register(
    ep: *mut rvoip_endpoint,
    account_id: u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(account(ep, account_id)?.register()?)
    })
}

/// Unregisters the account (REGISTER with Expires 0) and stops refreshing.
/// Errors: NULL_ARGUMENT, NOT_FOUND.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_unregister(
    ep: *mut rvoip_endpoint,
    account_id: u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(account(ep, account_id)?.unregister()?)
    })
}

/// Unregisters (if registered) and removes the account; its id becomes stale.
/// Errors: NULL_ARGUMENT, NOT_FOUND.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_remove(
    ep: *mut rvoip_endpoint,
    account_id: u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(account(ep, account_id)?.remove()?)
    })
}

/// The `RVOIP_TRANSPORT_*` code of a transport.
pub(crate) fn transport_code(t: Transport) -> u32 {
    match t {
        Transport::Udp => RVOIP_TRANSPORT_UDP,
        Transport::Tcp => RVOIP_TRANSPORT_TCP,
        Transport::Tls => RVOIP_TRANSPORT_TLS,
        Transport::Ws => RVOIP_TRANSPORT_WS,
        Transport::Wss => RVOIP_TRANSPORT_WSS,
    }
}

/// The server destination the account uses now: `*out_transport` gets its transport
/// ([`RVOIP_TRANSPORT_UDP`], [`RVOIP_TRANSPORT_TCP`] or [`RVOIP_TRANSPORT_TLS`]) and `addr_buf`
/// its IP address and port as a NUL-terminated string (`192.0.2.1:5060`, `[2001:db8::1]:5061`).
/// That is the first destination the account's server (or its AOR's host) resolved to when it
/// was added, per RFC 3263 (NAPTR, SRV, A/AAAA; an IP address is its own destination, with
/// port 5060, or 5061 for TLS, when none is given), or the one its registration failed over to
/// after a transport error, a timeout or a 503 (RFC 3263 §4.3). The account's REGISTERs, calls
/// and messages go there. `len` is the size of `addr_buf` in bytes; [`RVOIP_ADDRESS_SIZE`]
/// always suffices. Errors: NULL_ARGUMENT (`ep`, `out_transport`, `addr_buf`), NOT_FOUND (no
/// such account), SHUTDOWN, BUFFER_TOO_SMALL (`len` below the address's length + 1); on an
/// error nothing is written.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_server(
    ep: *const rvoip_endpoint,
    account_id: u64,
    out_transport: *mut u32,
    addr_buf: *mut c_char,
    len: usize,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        if out_transport.is_null() || addr_buf.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let (transport, addr) = account(ep, account_id)?.server()?;
        let addr = addr.to_string();
        if addr.len() >= len {
            return Err(rvoip_result::RVOIP_RESULT_BUFFER_TOO_SMALL);
        }
        // SAFETY: addr_buf is non-NULL and the caller gave `len` writable bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(addr_buf, len) };
        copy_into(dst, &addr);
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_transport, transport_code(transport)) };
        Ok(())
    })
}

/// Sends an instant message (RFC 3428 MESSAGE in pager mode: outside any dialog) from
/// `account_id`'s AOR to `to` (a SIP URI, e.g. `sip:bob@example.com`) through the account's
/// server, answering a digest challenge (401/407) with the account's credentials. The account
/// need not be registered. `content_type` is the MIME type of the body (`type/subtype`, e.g.
/// `text/plain;charset=UTF-8`). `body` is `body_len` bytes (any bytes, NULs included; not a C
/// string), at most [`RVOIP_MESSAGE_MAX_BODY`]; it may be NULL when `body_len` is 0. Everything
/// is copied before return.
///
/// `*out_message_id` gets the message's id (non-zero, never reused). The outcome arrives later
/// as one MESSAGE_RESULT event with this `message_id`, the final SIP `status` and its `reason`:
/// 2xx when delivered; a failure status otherwise, e.g. 404 (no such user), 480 (not
/// registered), 408 (no answer within Timer F, 32 s) or 503 (transport error).
///
/// Errors: NULL_ARGUMENT (`ep`, `to`, `content_type`, `out_message_id`, or `body` with a
/// non-zero `body_len`), INVALID_ARGUMENT (not a SIP URI, a content type without `/`, invalid
/// UTF-8, `body_len` over [`RVOIP_MESSAGE_MAX_BODY`], a `sips:` target from an account without
/// TLS), NOT_FOUND (no such account), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_send_message(
    ep: *mut rvoip_endpoint,
    account_id: u64,
    to: *const c_char,
    content_type: *const c_char,
    body: *const u8,
    body_len: usize,
    out_message_id: *mut u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint / valid C strings (caller's contract).
        let (ep, to, content_type) =
            unsafe { (ref_arg(ep)?, str_arg(to)?, str_arg(content_type)?) };
        if out_message_id.is_null() || (body.is_null() && body_len > 0) {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        if body_len > RVOIP_MESSAGE_MAX_BODY {
            return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        }
        let body: &[u8] = if body_len == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, and the caller gave `body_len` readable bytes (at most
            // RVOIP_MESSAGE_MAX_BODY, checked above); copied by send_message before return.
            unsafe { std::slice::from_raw_parts(body, body_len) }
        };
        let id = account(ep, account_id)?.send_message(to, content_type, body)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_message_id, id.0) };
        Ok(())
    })
}

/// The audio of a call. Fill with [`rvoip_call_opts_default`]. The call takes ownership of
/// `source` and `sink` (whether or not the function succeeds): do not free them afterwards.
/// NULL means the default device (with audio device support) or silence / discard.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_call_opts {
    /// What we send, or NULL.
    pub source: *mut rvoip_audio_source,
    /// Where received audio goes, or NULL.
    pub sink: *mut rvoip_audio_sink,
}

/// Fills `opts` with the defaults (NULL source and sink). NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_opts_default(opts: *mut rvoip_call_opts) {
    if opts.is_null() {
        return;
    }
    // SAFETY: non-NULL writable struct.
    unsafe {
        write_out(
            opts,
            rvoip_call_opts {
                source: std::ptr::null_mut(),
                sink: std::ptr::null_mut(),
            },
        )
    };
}

/// Takes the audio out of `opts` (consuming its objects).
///
/// # Safety
/// `opts` is NULL or a valid struct whose pointers are NULL or objects from this library.
pub(crate) unsafe fn take_audio(opts: *const rvoip_call_opts) -> CallOptions {
    // SAFETY: caller's contract.
    match unsafe { opts.as_ref() } {
        None => CallOptions::default(),
        Some(o) => CallOptions {
            // SAFETY: NULL or library-made objects, consumed here once.
            source: unsafe { take_source(o.source) },
            // SAFETY: as above.
            sink: unsafe { take_sink(o.sink) },
        },
    }
}

/// Places a call to `uri` (`sip:bob@example.com`): through `account_id`'s server, or directly
/// to the URI's host when `account_id` is 0. `*call_id` gets the call's id; progress arrives as
/// CALL_STATE events. Errors: NULL_ARGUMENT (`ep`, `uri`, `call_id`), INVALID_ARGUMENT (URI),
/// NOT_FOUND (account), NETWORK (resolution, media ports).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_make(
    ep: *mut rvoip_endpoint,
    account_id: u64,
    uri: *const c_char,
    opts: *const rvoip_call_opts,
    call_id: *mut u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: the call takes the audio objects whatever happens next.
        let audio = unsafe { take_audio(opts) };
        // SAFETY: NULL or a live endpoint / valid string.
        let (ep, uri) = unsafe { (ref_arg(ep)?, str_arg(uri)?) };
        if call_id.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let acc = match account_id {
            0 => None,
            id => Some(account(ep, id)?),
        };
        let c = ep.ep.make_call(acc.as_ref(), uri, audio)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(call_id, c.id().0) };
        Ok(())
    })
}

/// Answers an incoming call with 200 OK. Errors: NULL_ARGUMENT, NOT_FOUND, INVALID_STATE (not
/// an unanswered incoming call), NETWORK, MEDIA.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_answer(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    opts: *const rvoip_call_opts,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: consumed whatever happens next.
        let audio = unsafe { take_audio(opts) };
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.answer(audio)?)
    })
}

/// Early media (RFC 3960 §3): answers an unanswered incoming call's SDP offer in a 183 Session
/// Progress and starts its audio with `opts` (e.g. a ringback tone or an announcement from a
/// source) before [`rvoip_call_answer`]; the caller's call goes to CALL_STATE EARLY_MEDIA.
/// A later [`rvoip_call_answer`] sends the same SDP in its 200 and keeps this audio (its own
/// `opts` are then freed unused). The call takes the audio objects, as
/// [`rvoip_call_answer`]. Errors: NULL_ARGUMENT, NOT_FOUND, INVALID_STATE (not an unanswered
/// incoming call, an INVITE without an SDP offer, or early media already started), NETWORK
/// (media ports), MEDIA.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_answer_early(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    opts: *const rvoip_call_opts,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: consumed whatever happens next.
        let audio = unsafe { take_audio(opts) };
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.answer_early(audio)?)
    })
}

/// Redirects an unanswered incoming call: a 302 Moved Temporarily whose Contacts are the
/// `n` SIP URIs of `targets`, the first preferred (RFC 3261 §8.1.3.4, §21.3.3): call
/// forwarding done by the phone itself. The caller's UA tries them (with rvoip, the caller
/// gets CALL_REDIRECTED); our call ends (CALL_STATE ENDED, status 302). The strings are
/// copied. Errors: NULL_ARGUMENT (`ep`, `targets`, or one of its `n` pointers),
/// INVALID_ARGUMENT (`n` is 0, a target that is not a SIP URI, invalid UTF-8), NOT_FOUND,
/// INVALID_STATE (not an unanswered incoming call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_redirect(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    targets: *const *const c_char,
    n: usize,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        if targets.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        if n == 0 {
            return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        }
        // SAFETY: non-NULL, and the caller gave `n` readable pointers.
        let ptrs = unsafe { std::slice::from_raw_parts(targets, n) };
        let uris = ptrs
            .iter()
            // SAFETY: each is NULL or a valid C string (caller's contract).
            .map(|&p| unsafe { str_arg(p) })
            .collect::<Result<Vec<&str>, _>>()?;
        Ok(call(ep, call_id)?.redirect(&uris)?)
    })
}

/// Refuses an unanswered incoming call with `status` (300..=699, e.g. 486 Busy Here).
/// Errors: NULL_ARGUMENT, NOT_FOUND, INVALID_STATE, INVALID_ARGUMENT (status).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_reject(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    status: u16,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.reject(status)?)
    })
}

/// Ends the call: CANCEL before an answer, 603 for an unanswered incoming call, BYE once up.
/// Errors: NULL_ARGUMENT, NOT_FOUND (unknown or already ended: a second hang-up),
/// INVALID_STATE (an unanswered outgoing call whose CANCEL is already pending: it ends with
/// 487 shortly).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_hangup(ep: *mut rvoip_endpoint, call_id: u64) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.hangup()?)
    })
}

/// Puts the peer on hold (re-INVITE, `a=sendonly`). Errors: NULL_ARGUMENT, NOT_FOUND,
/// INVALID_STATE (not connected, or a re-INVITE in progress).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_hold(ep: *mut rvoip_endpoint, call_id: u64) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.hold()?)
    })
}

/// Takes the peer off hold (re-INVITE, `a=sendrecv`). Errors: as [`rvoip_call_hold`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_resume(ep: *mut rvoip_endpoint, call_id: u64) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.resume()?)
    })
}

/// Sends DTMF `digits` (`0`-`9`, `*`, `#`, `A`-`D`) as RFC 4733 events, in order.
/// Errors: NULL_ARGUMENT, NOT_FOUND, INVALID_ARGUMENT (a bad digit or UTF-8), INVALID_STATE
/// (no media yet, or no telephone-event negotiated).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_send_dtmf(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    digits: *const c_char,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint / valid string.
        let (ep, digits) = unsafe { (ref_arg(ep)?, str_arg(digits)?) };
        Ok(call(ep, call_id)?.send_dtmf(digits)?)
    })
}

/// Mutes (`true`) or unmutes what we send. Errors: NULL_ARGUMENT, NOT_FOUND.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_set_mute(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    muted: bool,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(call(ep, call_id)?.set_mute(muted)?)
    })
}

/// Replaces what the call sends, mid-call (device switch, file). Takes ownership of `source`
/// (whether or not it succeeds). Errors: NULL_ARGUMENT, NOT_FOUND, MEDIA.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_set_source(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    source: *mut rvoip_audio_source,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: consumed here once.
        let s = unsafe { take_source(source) };
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        let s = s.ok_or(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT)?;
        Ok(call(ep, call_id)?.set_source(s)?)
    })
}

/// Replaces where the call's received audio goes, mid-call. Takes ownership of `sink`.
/// Errors: NULL_ARGUMENT, NOT_FOUND, MEDIA.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_set_sink(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    sink: *mut rvoip_audio_sink,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: consumed here once.
        let s = unsafe { take_sink(sink) };
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        let s = s.ok_or(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT)?;
        Ok(call(ep, call_id)?.set_sink(s)?)
    })
}

/// Copies the call's current media statistics to `*out` (zeros before media starts).
/// Errors: NULL_ARGUMENT, NOT_FOUND.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_get_stats(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    out: *mut rvoip_call_stats,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let s = call(ep, call_id)?.stats()?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, rvoip_call_stats::from_stats(&s)) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_size_limit_is_the_sdks() {
        assert_eq!(RVOIP_MESSAGE_MAX_BODY, rvoip_sdk::sip::ua::MAX_MESSAGE_BODY);
    }

    #[test]
    fn the_longest_address_fits_rvoip_address_size() {
        use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
        let widest = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from([0xffff; 8]),
            65535,
            0,
            u32::MAX,
        ));
        let text = widest.to_string();
        assert_eq!(text.len(), 58, "{text}");
        assert!(text.len() < RVOIP_ADDRESS_SIZE);
    }

    #[test]
    fn zero_srtp_fields_are_the_sdks_defaults_and_the_codes_round_trip() {
        assert_eq!(srtp_config(0, 0, false), Ok(SrtpConfig::default()));
        for p in [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Mandatory] {
            for k in [SrtpKeying::Auto, SrtpKeying::Sdes, SrtpKeying::Dtls] {
                for insecure in [false, true] {
                    let want = SrtpConfig {
                        policy: p,
                        keying: k,
                        sdes_over_insecure: insecure,
                    };
                    let got = srtp_config(srtp_policy_code(p), srtp_keying_code(k), insecure);
                    assert_eq!(got, Ok(want));
                }
            }
        }
        let mut a = std::mem::MaybeUninit::<rvoip_account_opts>::uninit();
        // SAFETY: a writable struct; rvoip_account_opts_default fills every field.
        let a = unsafe {
            rvoip_account_opts_default(a.as_mut_ptr());
            a.assume_init()
        };
        assert_eq!(
            (a.srtp_policy, a.srtp_keying, a.srtp_sdes_over_insecure),
            (RVOIP_SRTP_OPTIONAL, RVOIP_SRTP_KEYING_AUTO, false)
        );
    }

    #[test]
    fn dtmf_mode_codes_round_trip_and_zero_is_the_default() {
        assert_eq!(dtmf_mode(0), Ok(DtmfMode::default()));
        for m in [DtmfMode::Rfc4733, DtmfMode::SipInfo] {
            assert_eq!(dtmf_mode(dtmf_mode_code(m)), Ok(m));
        }
        for v in [2, 255, u32::MAX] {
            assert_eq!(
                dtmf_mode(v),
                Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)
            );
        }
        let mut a = std::mem::MaybeUninit::<rvoip_account_opts>::uninit();
        // SAFETY: a writable struct; rvoip_account_opts_default fills every field.
        let a = unsafe {
            rvoip_account_opts_default(a.as_mut_ptr());
            a.assume_init()
        };
        assert_eq!(a.dtmf_mode, RVOIP_DTMF_RFC4733);
    }

    #[test]
    fn srtp_values_outside_the_constants_are_invalid_arguments() {
        let bad = rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT;
        for v in [3, 4, 255, u32::MAX] {
            assert_eq!(srtp_config(v, RVOIP_SRTP_KEYING_AUTO, false), Err(bad));
            assert_eq!(srtp_config(RVOIP_SRTP_OPTIONAL, v, false), Err(bad));
        }
    }

    #[test]
    fn account_and_endpoint_refuse_unknown_srtp_values() {
        use crate::endpoint::{rvoip_endpoint_free, rvoip_endpoint_new, rvoip_endpoint_opts};
        use crate::rvoip_endpoint_opts_default;
        let mut eo = std::mem::MaybeUninit::<rvoip_endpoint_opts>::uninit();
        // SAFETY: a writable struct; the filler writes every field.
        let mut eo = unsafe {
            rvoip_endpoint_opts_default(eo.as_mut_ptr());
            eo.assume_init()
        };
        assert_eq!(eo.srtp_policy, RVOIP_SRTP_OPTIONAL);
        assert_eq!(eo.srtp_keying, RVOIP_SRTP_KEYING_AUTO);
        assert!(!eo.srtp_sdes_over_insecure);
        eo.udp_listen = c"127.0.0.1:0".as_ptr();
        eo.tcp_listen = c"none".as_ptr();
        let mut ep: *mut rvoip_endpoint = std::ptr::null_mut();
        eo.srtp_policy = 3;
        // SAFETY: valid options and out-pointer.
        let r = unsafe { rvoip_endpoint_new(&eo, &mut ep) };
        assert_eq!(r, rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        assert!(ep.is_null());
        eo.srtp_policy = RVOIP_SRTP_MANDATORY;
        eo.srtp_keying = 9;
        // SAFETY: as above.
        let r = unsafe { rvoip_endpoint_new(&eo, &mut ep) };
        assert_eq!(r, rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        eo.srtp_keying = RVOIP_SRTP_KEYING_DTLS;
        // SAFETY: as above.
        let r = unsafe { rvoip_endpoint_new(&eo, &mut ep) };
        assert_eq!(r, rvoip_result::RVOIP_RESULT_OK);
        assert!(!ep.is_null());

        let mut a = std::mem::MaybeUninit::<rvoip_account_opts>::uninit();
        // SAFETY: a writable struct; the filler writes every field.
        let mut a = unsafe {
            rvoip_account_opts_default(a.as_mut_ptr());
            a.assume_init()
        };
        a.aor = c"sip:carol@127.0.0.1".as_ptr();
        a.server = c"127.0.0.1:9".as_ptr();
        let mut id = 0u64;
        for (policy, keying) in [(7, RVOIP_SRTP_KEYING_AUTO), (RVOIP_SRTP_MANDATORY, 3)] {
            a.srtp_policy = policy;
            a.srtp_keying = keying;
            // SAFETY: a live endpoint, valid options and out-pointer.
            let r = unsafe { rvoip_account_add(ep, &a, &mut id) };
            assert_eq!(r, rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
            assert_eq!(id, 0);
        }
        a.srtp_policy = RVOIP_SRTP_MANDATORY;
        a.srtp_keying = RVOIP_SRTP_KEYING_SDES;
        a.srtp_sdes_over_insecure = true;
        // SAFETY: as above.
        let r = unsafe { rvoip_account_add(ep, &a, &mut id) };
        assert_eq!(r, rvoip_result::RVOIP_RESULT_OK);
        assert_ne!(id, 0);
        // SAFETY: from rvoip_endpoint_new, freed once.
        unsafe { rvoip_endpoint_free(ep) };
    }
}
