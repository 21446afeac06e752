//! `rvoip_server`: the embedded registrar + proxy (the same as `rvoip-server`).

use std::ffi::c_char;

use rvoip_sdk::api::{Server, ServerConfig, Transport};
use rvoip_sdk::server::config::ListenSpec;

use crate::call::{
    RVOIP_TRANSPORT_TCP, RVOIP_TRANSPORT_TLS, RVOIP_TRANSPORT_UDP, RVOIP_TRANSPORT_WS,
    RVOIP_TRANSPORT_WSS,
};
use crate::rvoip_result;
use crate::util::{boundary, boundary_void, copy_into, opt_str_arg, ref_arg, str_arg, write_out};

/// The size of a buffer that holds any TLS certificate fingerprint from
/// [`rvoip_server_tls_fingerprint`], in bytes: 32 upper-case hex pairs joined by colons (95
/// characters) and the terminating NUL.
pub const RVOIP_TLS_FINGERPRINT_SIZE: usize = 96;

/// An embedded SIP server. Create with [`rvoip_server_new`] or [`rvoip_server_new_from_toml`],
/// then [`rvoip_server_start`]; free with [`rvoip_server_free`].
pub struct rvoip_server(pub(crate) Server);

/// Settings of an embedded server. Fill with [`rvoip_server_opts_default`]; strings copied.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_server_opts {
    /// Where to listen, comma-separated `udp:IP:PORT` / `tcp:IP:PORT` / `tls:IP:PORT` (SIP over
    /// TLS, RFC 3261 §26.2, RFC 5630) / `ws:IP:PORT` / `wss:IP:PORT` (SIP over WebSocket, plain
    /// or over TLS, RFC 7118; `wss:` uses the TLS certificate too) (default
    /// `udp:0.0.0.0:5060,tcp:0.0.0.0:5060,tls:0.0.0.0:5061`; port 0 picks a free port).
    pub listen: *const c_char,
    /// The domain served (default: the first bound non-wildcard IP, else this host's IP).
    pub domain: *const c_char,
    /// Accounts, comma-separated `user:password` (default: the demo users alice and bob).
    pub users: *const c_char,
    /// A `user:password` file to load as well, or NULL.
    pub users_file: *const c_char,
    /// Challenge INVITEs from local users (407) (default true).
    pub invite_auth: bool,
    /// One credential may register and call as any AOR (default false).
    pub lax_auth_user: bool,
    /// The TLS listeners' certificate chain, a PEM file (with `tls_key`). NULL or "" (default):
    /// a self-signed certificate is made once in `data_dir` and reused; clients then pin its
    /// fingerprint ([`rvoip_server_tls_fingerprint`]).
    pub tls_cert: *const c_char,
    /// The private key of `tls_cert`, a PEM file (PKCS#8, PKCS#1 or SEC1). Give both or
    /// neither: one without the other gives INVALID_ARGUMENT from [`rvoip_server_new`].
    pub tls_key: *const c_char,
    /// The directory where the server keeps state it makes itself (the self-signed TLS
    /// certificate `tls-cert.pem` and its key). NULL or "" (default): `$RVOIP_DATA_DIR`, else
    /// `$XDG_DATA_HOME/rvoip`, else `~/.local/share/rvoip`.
    pub data_dir: *const c_char,
}

/// Fills `opts` with the defaults. NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_opts_default(opts: *mut rvoip_server_opts) {
    if opts.is_null() {
        return;
    }
    let d = ServerConfig::default();
    // SAFETY: non-NULL writable struct.
    unsafe {
        write_out(
            opts,
            rvoip_server_opts {
                listen: std::ptr::null(),
                domain: std::ptr::null(),
                users: std::ptr::null(),
                users_file: std::ptr::null(),
                invite_auth: d.invite_auth,
                lax_auth_user: d.lax_auth_user,
                tls_cert: std::ptr::null(),
                tls_key: std::ptr::null(),
                data_dir: std::ptr::null(),
            },
        )
    };
}

fn bad() -> rvoip_result {
    rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT
}

/// A stopped server from `opts` (NULL: the defaults). Errors: NULL_ARGUMENT (`out`),
/// INVALID_ARGUMENT (listen spec, users, UTF-8, `tls_cert` without `tls_key` or the reverse).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_new(
    opts: *const rvoip_server_opts,
    out: *mut *mut rvoip_server,
) -> rvoip_result {
    boundary(|| {
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let mut cfg = ServerConfig::default();
        // SAFETY: NULL or a valid struct.
        if let Some(o) = unsafe { opts.as_ref() } {
            // SAFETY: the string fields are NULL or valid C strings.
            let (listen, domain, users, users_file) = unsafe {
                (
                    opt_str_arg(o.listen)?,
                    opt_str_arg(o.domain)?,
                    opt_str_arg(o.users)?,
                    opt_str_arg(o.users_file)?,
                )
            };
            // SAFETY: as above.
            let (tls_cert, tls_key, data_dir) = unsafe {
                (
                    opt_str_arg(o.tls_cert)?,
                    opt_str_arg(o.tls_key)?,
                    opt_str_arg(o.data_dir)?,
                )
            };
            if let Some(l) = listen {
                cfg.listen = l
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<ListenSpec>().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?;
            }
            cfg.domain = domain.map(str::to_string);
            if let Some(u) = users {
                cfg.users.clear();
                for pair in u.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (user, pw) = pair.split_once(':').ok_or_else(bad)?;
                    if user.is_empty() {
                        return Err(bad());
                    }
                    cfg.users.insert(user.to_string(), pw.to_string());
                }
            }
            cfg.users_file = users_file.map(Into::into);
            cfg.invite_auth = o.invite_auth;
            cfg.lax_auth_user = o.lax_auth_user;
            if tls_cert.is_some() != tls_key.is_some() {
                return Err(bad());
            }
            cfg.tls_cert = tls_cert.map(Into::into);
            cfg.tls_key = tls_key.map(Into::into);
            cfg.data_dir = data_dir.map(Into::into);
        }
        let s = Box::new(rvoip_server(Server::new(cfg)));
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(s)) };
        Ok(())
    })
}

/// A stopped server from a TOML config file (the `rvoip-server --config` format).
/// Errors: NULL_ARGUMENT, INVALID_ARGUMENT (unreadable or invalid file, UTF-8).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_new_from_toml(
    path: *const c_char,
    out: *mut *mut rvoip_server,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a valid C string.
        let path = unsafe { str_arg(path) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let s = Server::from_toml_file(std::path::Path::new(path))?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, Box::into_raw(Box::new(rvoip_server(s)))) };
        Ok(())
    })
}

/// Binds and starts serving. With a `tls:` listener and no `tls_cert`, makes the self-signed
/// certificate in the data directory first (once; later starts reuse it). Errors:
/// NULL_ARGUMENT, INVALID_STATE (running), NETWORK (bind; TLS certificate or key unreadable or
/// not matching, or the data directory not writable), INVALID_ARGUMENT (users file).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_start(server: *mut rvoip_server) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live server.
        let s = unsafe { ref_arg(server) }?;
        Ok(s.0.start()?)
    })
}

/// Stops serving (a no-op when stopped). Errors: NULL_ARGUMENT.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_stop(server: *mut rvoip_server) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live server.
        let s = unsafe { ref_arg(server) }?;
        s.0.stop();
        Ok(())
    })
}

/// Reloads the settings from a TOML config file (the `rvoip-server --config` format), as
/// `rvoip-server` does on SIGHUP: users, `[domains]`, `[forward]`, `[dispatch]`, the registrar,
/// guard and body limits, and the digest settings apply to the next message; calls, bindings,
/// transactions and nonces are kept. Settings that need a restart (listen addresses, the
/// relay, TLS files…) keep their running values; their count goes to `*restart_needed` when it
/// is not NULL (0 when none changed). A stopped server keeps the settings for its next start.
/// Errors: NULL_ARGUMENT (`server`, `path`), INVALID_ARGUMENT (unreadable or invalid file,
/// unreadable users file, a bad domain, route or destination: nothing changes),
/// INVALID_STATE (the server is stopping or its control queue is full).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_reload_toml(
    server: *mut rvoip_server,
    path: *const c_char,
    restart_needed: *mut u32,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live server.
        let s = unsafe { ref_arg(server) }?;
        // SAFETY: NULL or a valid C string.
        let path = unsafe { str_arg(path) }?;
        let cfg = ServerConfig::from_toml_file(std::path::Path::new(path))
            .map_err(|_| rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)?;
        let restart = s.0.reload(cfg)?;
        if !restart_needed.is_null() {
            // SAFETY: checked non-NULL; the caller owns a u32 there.
            unsafe {
                write_out(
                    restart_needed,
                    u32::try_from(restart.len()).unwrap_or(u32::MAX),
                )
            };
        }
        Ok(())
    })
}

/// The port the running server listens on for `transport` ([`RVOIP_TRANSPORT_UDP`],
/// [`RVOIP_TRANSPORT_TCP`], [`RVOIP_TRANSPORT_TLS`], or for a `ws:` / `wss:` listener
/// [`RVOIP_TRANSPORT_WS`] / [`RVOIP_TRANSPORT_WSS`], RFC 7118), the real one when port 0 was
/// asked for. Errors: NULL_ARGUMENT, INVALID_ARGUMENT (transport), NOT_FOUND (not listening on
/// it, or stopped).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_port(
    server: *const rvoip_server,
    transport: u32,
    out: *mut u16,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live server.
        let s = unsafe { ref_arg(server) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let kind = match transport {
            RVOIP_TRANSPORT_UDP => Transport::Udp,
            RVOIP_TRANSPORT_TCP => Transport::Tcp,
            RVOIP_TRANSPORT_TLS => Transport::Tls,
            RVOIP_TRANSPORT_WS => Transport::Ws,
            RVOIP_TRANSPORT_WSS => Transport::Wss,
            _ => return Err(bad()),
        };
        let port =
            s.0.local_addrs()
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, a)| a.port())
                .ok_or(rvoip_result::RVOIP_RESULT_NOT_FOUND)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, port) };
        Ok(())
    })
}

/// Copies the SHA-256 fingerprint of the running server's TLS certificate into `buf` as a
/// NUL-terminated string: 32 upper-case hex pairs joined by colons (`AB:CD:…`, the form of
/// RFC 4572 and of `rvoip_account_opts.tls_pin_sha256`), for
/// clients to pin a self-signed certificate (RFC 3261 §26.2, RFC 5630). `len` is the size of
/// `buf` in bytes; [`RVOIP_TLS_FINGERPRINT_SIZE`] always suffices. Errors: NULL_ARGUMENT
/// (`server`, `buf`), NOT_FOUND (stopped, or no `tls:` listener), BUFFER_TOO_SMALL (`len` below
/// the fingerprint's length + 1; `buf` is not written).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_tls_fingerprint(
    server: *const rvoip_server,
    buf: *mut c_char,
    len: usize,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live server.
        let s = unsafe { ref_arg(server) }?;
        if buf.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let fp =
            s.0.tls_fingerprint()
                .ok_or(rvoip_result::RVOIP_RESULT_NOT_FOUND)?;
        if fp.len() >= len {
            return Err(rvoip_result::RVOIP_RESULT_BUFFER_TOO_SMALL);
        }
        // SAFETY: buf is non-NULL and the caller gave `len` writable bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        copy_into(dst, &fp);
        Ok(())
    })
}

/// Stops and frees the server. NULL is a no-op.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_free(server: *mut rvoip_server) {
    if server.is_null() {
        return;
    }
    // SAFETY: from rvoip_server_new*, freed once.
    boundary_void(|| drop(unsafe { Box::from_raw(server) }));
}
