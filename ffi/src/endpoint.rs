//! `rvoip_endpoint`: create, free, events (callback or pull).

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rvoip_sdk::api::{AudioCodec, Endpoint, EndpointConfig};

use crate::call::{
    rvoip_srtp_keying, rvoip_srtp_policy, srtp_config, srtp_keying_code, srtp_policy_code,
};
use crate::event::{OwnedEvent, rvoip_event};
use crate::rvoip_result;
use crate::util::{boundary, boundary_void, opt_str_arg, ref_arg, write_out};

/// An SDK endpoint: transports, accounts, calls, events. Create with [`rvoip_endpoint_new`],
/// free with [`rvoip_endpoint_free`].
pub struct rvoip_endpoint {
    pub(crate) ep: Endpoint,
    /// The last event handed out by the pull API (its strings stay valid until the next one).
    last: Mutex<Option<OwnedEvent>>,
    /// False once freed: no callback runs after that.
    alive: Arc<AtomicBool>,
}

/// Settings of an endpoint. Fill with [`rvoip_endpoint_opts_default`], then change fields.
/// String fields are copied by [`rvoip_endpoint_new`]; NULL or "" means the default.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_endpoint_opts {
    /// UDP listen address `ip:port` (default `0.0.0.0:5060`; port 0 picks a free port);
    /// `"none"` for no UDP.
    pub udp_listen: *const c_char,
    /// TCP listen address (default: the UDP address and port); `"none"` for no TCP.
    pub tcp_listen: *const c_char,
    /// Codecs in preference order, comma-separated: `opus,g722,pcmu,pcma` (default: all built in).
    pub codecs: *const c_char,
    /// Offer and accept RFC 4733 telephone-events for DTMF (default true).
    pub dtmf: bool,
    /// RTP packetization time in ms, 10..=120 (default 20).
    pub ptime_ms: u32,
    /// Period of STATISTICS events in ms; 0 for none (default 5000).
    pub stats_interval_ms: u32,
    /// First retry delay after a failed registration, ms (default 2000; doubles up to 300 s).
    pub register_retry_ms: u32,
    /// Receive loss emulation in percent, 0..=100, for tests (default 0).
    pub rx_loss_percent: f32,
    /// IP to write in SDP and Contact instead of the local address (NAT), or NULL.
    pub public_ip: *const c_char,
    /// The DNS server `IP:PORT` (e.g. `127.0.0.1:53`, `[::1]:5353`) asked, over UDP then TCP,
    /// for the NAPTR, SRV and A/AAAA records that locate account servers and call targets
    /// (RFC 3263); the hosts file is then not read (`localhost` still means 127.0.0.1).
    /// NULL or "" (default): the system configuration (`/etc/resolv.conf` and the hosts
    /// file). Not an `IP:PORT` (a host name, no port): INVALID_ARGUMENT from
    /// [`rvoip_endpoint_new`]. Nothing is asked before the first name that needs a query: IP
    /// addresses never do.
    pub dns_server: *const c_char,
    /// SRTP (RFC 3711) for calls made or received without an account (an account has its
    /// own, `rvoip_account_opts::srtp_policy`): `RVOIP_SRTP_OPTIONAL` (0, default),
    /// `RVOIP_SRTP_OFF` or `RVOIP_SRTP_MANDATORY`. Any other value gives INVALID_ARGUMENT from
    /// [`rvoip_endpoint_new`].
    pub srtp_policy: rvoip_srtp_policy,
    /// The key exchange of those calls' SRTP offers: `RVOIP_SRTP_KEYING_AUTO` (0, default:
    /// SDES, RFC 4568, over TLS; DTLS-SRTP, RFC 5764, otherwise), `RVOIP_SRTP_KEYING_SDES` or
    /// `RVOIP_SRTP_KEYING_DTLS`. Any other value gives INVALID_ARGUMENT from
    /// [`rvoip_endpoint_new`].
    pub srtp_keying: rvoip_srtp_keying,
    /// Allow SDES keys (`a=crypto`, RFC 4568) for those calls in SDP carried over UDP or TCP,
    /// where anyone on the path can read them (default false: over TLS only, RFC 4568 §8.3).
    pub srtp_sdes_over_insecure: bool,
}

/// Fills `opts` with the defaults. NULL is ignored. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_opts_default(opts: *mut rvoip_endpoint_opts) {
    if opts.is_null() {
        return;
    }
    let d = EndpointConfig::default();
    // SAFETY: non-NULL, points to writable memory for the struct (caller's contract).
    unsafe {
        write_out(
            opts,
            rvoip_endpoint_opts {
                udp_listen: std::ptr::null(),
                tcp_listen: std::ptr::null(),
                codecs: std::ptr::null(),
                dtmf: d.dtmf,
                ptime_ms: d.ptime_ms,
                stats_interval_ms: 5000,
                register_retry_ms: 2000,
                rx_loss_percent: 0.0,
                public_ip: std::ptr::null(),
                dns_server: std::ptr::null(),
                srtp_policy: srtp_policy_code(d.srtp.policy),
                srtp_keying: srtp_keying_code(d.srtp.keying),
                srtp_sdes_over_insecure: d.srtp.sdes_over_insecure,
            },
        )
    };
}

fn parse_codecs(s: &str) -> Result<Vec<AudioCodec>, rvoip_result> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| match c.to_ascii_lowercase().as_str() {
            "pcmu" => Ok(AudioCodec::PCMU),
            "pcma" => Ok(AudioCodec::PCMA),
            "g722" => Ok(AudioCodec::G722),
            "opus" => Ok(AudioCodec::OPUS),
            _ => Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
        })
        .collect()
}

fn parse_listen(
    s: Option<&str>,
    default: Option<std::net::SocketAddr>,
) -> Result<Option<std::net::SocketAddr>, rvoip_result> {
    match s {
        None => Ok(default),
        Some(s) if s.eq_ignore_ascii_case("none") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
    }
}

/// Creates an endpoint and binds its transports. `opts` may be NULL for the defaults.
/// On success `*out` is an endpoint to free with [`rvoip_endpoint_free`].
/// Errors: NULL_ARGUMENT (`out`), INVALID_ARGUMENT (bad listen, public IP or DNS server
/// address, codec, UTF-8, an SRTP policy or keying that is none of the `RVOIP_SRTP_*` values),
/// NETWORK (a socket cannot be bound). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_new(
    opts: *const rvoip_endpoint_opts,
    out: *mut *mut rvoip_endpoint,
) -> rvoip_result {
    boundary(|| {
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let mut cfg = EndpointConfig::default();
        // SAFETY: NULL or a valid opts struct (caller's contract).
        if let Some(o) = unsafe { opts.as_ref() } {
            // SAFETY: the string fields are NULL or valid C strings.
            let (udp, tcp, codecs, public_ip, dns_server) = unsafe {
                (
                    opt_str_arg(o.udp_listen)?,
                    opt_str_arg(o.tcp_listen)?,
                    opt_str_arg(o.codecs)?,
                    opt_str_arg(o.public_ip)?,
                    opt_str_arg(o.dns_server)?,
                )
            };
            cfg.udp = parse_listen(udp, cfg.udp)?;
            cfg.tcp = match tcp {
                None => cfg.udp.or(cfg.tcp),
                some => parse_listen(some, cfg.tcp)?,
            };
            if let Some(c) = codecs {
                cfg.codecs = parse_codecs(c)?;
            }
            if let Some(ip) = public_ip {
                cfg.public_ip = Some(
                    ip.parse()
                        .map_err(|_| rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)?,
                );
            }
            if let Some(dns) = dns_server {
                cfg.dns_server = Some(
                    dns.parse()
                        .map_err(|_| rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)?,
                );
            }
            cfg.dtmf = o.dtmf;
            cfg.ptime_ms = o.ptime_ms;
            cfg.stats_interval = (o.stats_interval_ms > 0)
                .then(|| Duration::from_millis(o.stats_interval_ms.into()));
            cfg.register_retry_min = Duration::from_millis(o.register_retry_ms.max(100).into());
            if !(0.0..=100.0).contains(&o.rx_loss_percent) {
                return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
            }
            cfg.rx_loss_percent = o.rx_loss_percent;
            cfg.srtp = srtp_config(o.srtp_policy, o.srtp_keying, o.srtp_sdes_over_insecure)?;
        }
        let ep = Endpoint::new(cfg)?;
        let boxed = Box::new(rvoip_endpoint {
            ep,
            last: Mutex::new(None),
            alive: Arc::new(AtomicBool::new(true)),
        });
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, Box::into_raw(boxed)) };
        Ok(())
    })
}

/// Hangs up every call, stops the endpoint and frees it. NULL is a no-op. After it returns
/// no callback of this endpoint runs any more (when called from inside the callback, the
/// current one finishes). Call once per endpoint; not concurrently with other calls on the
/// same endpoint.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_free(ep: *mut rvoip_endpoint) {
    if ep.is_null() {
        return;
    }
    boundary_void(|| {
        // SAFETY: a pointer from rvoip_endpoint_new, freed once (caller's contract).
        let ep = unsafe { Box::from_raw(ep) };
        ep.alive.store(false, Ordering::SeqCst);
        ep.ep.shutdown();
        drop(ep);
    });
}

/// An event callback: `user_data` as given, and the event (valid during the call only).
pub type rvoip_event_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const rvoip_event)>;

struct UserData(*mut c_void);
// SAFETY: the pointer is only handed back to the app's callback, on the event thread; the app
// promised it may be used there.
unsafe impl Send for UserData {}

/// Delivers every further event to `cb(user_data, event)`, one at a time on one SDK event
/// thread, never under an internal lock: the callback may call any function, including
/// hanging up, freeing other objects and freeing this endpoint. Events that happened before
/// are delivered first. Once set, [`rvoip_endpoint_next_event`] gives INVALID_STATE.
/// Errors: NULL_ARGUMENT (`ep` or `cb`), INVALID_STATE (a callback is already set).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_set_event_callback(
    ep: *mut rvoip_endpoint,
    cb: rvoip_event_cb,
    user_data: *mut c_void,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        let cb = cb.ok_or(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT)?;
        let alive = ep.alive.clone();
        let ud = UserData(user_data);
        ep.ep.set_event_handler(Box::new(move |e| {
            let ud = &ud;
            if !alive.load(Ordering::SeqCst) {
                return;
            }
            let owned = OwnedEvent::new(&e);
            // SAFETY: the app's callback with its own user_data and an event valid for the call.
            unsafe { cb(ud.0, &owned.ev) };
        }))?;
        Ok(())
    })
}

/// Waits up to `timeout_ms` for the next event and copies it to `*out` (the pull API). Its
/// strings stay valid until the next call of this function on `ep`, or its free. Not for
/// concurrent use on one endpoint from several threads.
/// Errors: NULL_ARGUMENT, TIMEOUT (no event), INVALID_STATE (an event callback is set).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_next_event(
    ep: *mut rvoip_endpoint,
    timeout_ms: u32,
    out: *mut rvoip_event,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        if ep.ep.has_event_handler() {
            return Err(rvoip_result::RVOIP_RESULT_INVALID_STATE);
        }
        let Some(e) = ep.ep.next_event(Duration::from_millis(timeout_ms.into())) else {
            return Err(rvoip_result::RVOIP_RESULT_TIMEOUT);
        };
        let owned = OwnedEvent::new(&e);
        // SAFETY: out checked non-NULL.
        unsafe { write_out(out, owned.ev) };
        let mut last = ep
            .last
            .lock()
            .map_err(|_| rvoip_result::RVOIP_RESULT_PANIC)?;
        *last = Some(owned);
        Ok(())
    })
}

/// The endpoint's UDP port (the one peers call for direct calls). Errors: NULL_ARGUMENT,
/// NOT_FOUND (no UDP transport).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_udp_port(
    ep: *const rvoip_endpoint,
    out: *mut u16,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let port = ep
            .ep
            .udp_addr()
            .ok_or(rvoip_result::RVOIP_RESULT_NOT_FOUND)?
            .port();
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, port) };
        Ok(())
    })
}
