//! SIP over TLS between the SDK and rvoip-server (issue 11), real sockets on 127.0.0.1:
//! - the SDK verifies the server: a self-signed certificate is refused without a pin and
//!   accepted with its pinned SHA-256 fingerprint; a CA-signed one is refused without the CA file
//!   and accepted with it; an expired one and one for another name are refused even with the CA
//!   file. A refusal is a failed registration (503) whose reason names the certificate error.
//! - the zero-config server makes its self-signed certificate once in its data directory and
//!   keeps it across restarts (a pin stays valid);
//! - a call from an account registered over TLS reaches an account registered over UDP through
//!   the server, and ends with BYE.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Party, serial};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rvoip_sdk::api::{
    AccountOptions, CallOptions, CallState, EndpointConfig, Event, RegistrationState, Server,
    ServerConfig, TlsOptions, Transport,
};
use rvoip_sdk::driver::tls::file_fingerprint;
use rvoip_sdk::server::config::ListenSpec;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvoip-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A test CA and certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "rvoip test CA");
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Writes a leaf for `names` (valid now, or expired in 2020) and the CA into `dir`:
    /// returns (cert, key, ca) paths.
    fn leaf(&self, dir: &Path, names: &[&str], expired: bool) -> (PathBuf, PathBuf, PathBuf) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k, ca) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&ca, self.cert.pem()).unwrap();
        (c, k, ca)
    }
}

/// A server on 127.0.0.1 with UDP and TLS (port 0), the given certificate (or zero-config in
/// `data_dir`), relay off (signalling only).
fn server(cert: Option<(&Path, &Path)>, data_dir: &Path) -> (Server, u16, u16) {
    let mut cfg = ServerConfig {
        listen: vec![
            "udp:127.0.0.1:0".parse::<ListenSpec>().unwrap(),
            "tls:127.0.0.1:0".parse::<ListenSpec>().unwrap(),
        ],
        domain: Some("127.0.0.1".into()),
        data_dir: Some(data_dir.to_path_buf()),
        relay: "off".parse().unwrap(),
        ..ServerConfig::default()
    };
    cfg.users.insert("alice".into(), "apw".into());
    cfg.users.insert("bob".into(), "bpw".into());
    if let Some((c, k)) = cert {
        cfg.tls_cert = Some(c.to_path_buf());
        cfg.tls_key = Some(k.to_path_buf());
    }
    let s = Server::new(cfg);
    s.start().expect("server starts");
    let port = |t: Transport| {
        s.local_addrs()
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, a)| a.port())
            .unwrap()
    };
    let (udp, tls) = (port(Transport::Udp), port(Transport::Tls));
    (s, udp, tls)
}

fn party() -> Party {
    Party::with_config(EndpointConfig {
        stats_interval: None,
        ..EndpointConfig::loopback()
    })
}

/// Registers alice over TLS to `127.0.0.1:tls_port` with `tls`: Ok, or Err((status, reason)).
fn register_tls(p: &mut Party, tls_port: u16, tls: TlsOptions) -> Result<(), (u16, String)> {
    let mut o = AccountOptions::new("sip:alice@127.0.0.1", "apw");
    o.server = Some(format!("127.0.0.1:{tls_port}"));
    o.transport = Transport::Tls;
    o.tls = tls;
    o.expires_s = 300;
    let acc = p.ep.add_account(o).expect("account");
    acc.register().unwrap();
    let id = acc.id();
    p.wait("registration result", |e| match e {
        Event::RegistrationState { account, state } if *account == id => match state {
            RegistrationState::Registered { .. } => Some(Ok(())),
            RegistrationState::Failed { status, reason, .. } => {
                Some(Err((*status, reason.clone())))
            }
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn self_signed_server_is_refused_without_a_pin_and_accepted_with_it() {
    let _s = serial();
    let dir = temp_dir("selfsigned");
    let (srv, _, tls_port) = server(None, &dir);
    let fingerprint = file_fingerprint(&dir.join("tls-cert.pem")).expect("zero-config cert");
    let mut a = party();
    let (status, reason) = register_tls(&mut a, tls_port, TlsOptions::default()).unwrap_err();
    assert_eq!(status, 503);
    assert!(reason.contains("certificate"), "{reason}");
    let mut b = party();
    let pinned = TlsOptions {
        pin_sha256: Some(fingerprint.clone()),
        ..TlsOptions::default()
    };
    register_tls(&mut b, tls_port, pinned.clone()).expect("pinned registration");
    // A restart keeps the certificate: the pin is still valid.
    srv.stop();
    let (_srv2, _, tls_port2) = server(None, &dir);
    assert_eq!(
        file_fingerprint(&dir.join("tls-cert.pem")).unwrap(),
        fingerprint
    );
    let mut c = party();
    register_tls(&mut c, tls_port2, pinned).expect("pinned registration after restart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ca_signed_server_needs_the_ca_file_and_the_right_name_and_dates() {
    let _s = serial();
    let ca = Ca::new();
    for (case, names, expired, ok_with_ca) in [
        ("good", &["127.0.0.1", "localhost"][..], false, true),
        ("othername", &["example.com"][..], false, false),
        ("expired", &["127.0.0.1"][..], true, false),
    ] {
        let dir = temp_dir(case);
        let (cert, key, ca_file) = ca.leaf(&dir, names, expired);
        let (_srv, _, tls_port) = server(Some((&cert, &key)), &dir);
        let mut p = party();
        let without = register_tls(&mut p, tls_port, TlsOptions::default());
        assert!(
            matches!(&without, Err((503, r)) if r.contains("certificate")),
            "{case}: {without:?}"
        );
        let mut q = party();
        let with_ca = TlsOptions {
            ca_file: Some(ca_file),
            ..TlsOptions::default()
        };
        let r = register_tls(&mut q, tls_port, with_ca);
        if ok_with_ca {
            r.unwrap_or_else(|e| panic!("{case}: {e:?}"));
        } else {
            let (status, reason) = r.expect_err(case);
            assert_eq!(status, 503, "{case}");
            let want = if expired {
                "expired"
            } else {
                "not valid for name"
            };
            assert!(reason.to_lowercase().contains(want), "{case}: {reason}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn call_from_a_tls_account_to_a_udp_account_through_the_server() {
    let _s = serial();
    let dir = temp_dir("call");
    let (_srv, udp_port, tls_port) = server(None, &dir);
    let pin = file_fingerprint(&dir.join("tls-cert.pem")).unwrap();
    let mut alice = party();
    let mut o = AccountOptions::new("sip:alice@127.0.0.1", "apw");
    o.server = Some(format!("127.0.0.1:{tls_port}"));
    o.transport = Transport::Tls;
    o.tls.pin_sha256 = Some(pin);
    o.expires_s = 300;
    let a = alice.register_with(o);
    let mut bob = party();
    bob.register_at(&format!("127.0.0.1:{udp_port}"), "bob", "bpw");
    let call = alice
        .ep
        .make_call(Some(&a), "sip:bob@127.0.0.1", CallOptions::default())
        .expect("call");
    let incoming = bob.incoming();
    incoming.answer(CallOptions::default()).unwrap();
    alice.state(&call, "alice connected", |s| *s == CallState::Connected);
    bob.state(&incoming, "bob connected", |s| *s == CallState::Connected);
    std::thread::sleep(Duration::from_millis(300));
    call.hangup().unwrap();
    bob.state(&incoming, "bob ended", |s| {
        matches!(s, CallState::Ended { status: 200, .. })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Half a TLS configuration (a certificate without its key, or the reverse) is refused at start,
/// not replaced by the zero-config self-signed certificate.
#[test]
fn a_certificate_without_its_key_is_refused() {
    let dir = temp_dir("halfcfg");
    let ca = Ca::new();
    let (cert, key, _) = ca.leaf(&dir, &["127.0.0.1"], false);
    for (c, k) in [(Some(cert.clone()), None), (None, Some(key.clone()))] {
        let cfg = ServerConfig {
            listen: vec!["tls:127.0.0.1:0".parse::<ListenSpec>().unwrap()],
            data_dir: Some(dir.join("data")),
            tls_cert: c,
            tls_key: k,
            relay: "off".parse().unwrap(),
            ..ServerConfig::default()
        };
        let e = Server::new(cfg)
            .start()
            .expect_err("half a TLS configuration");
        assert!(e.to_string().contains("tls_cert and tls_key"), "{e}");
        assert!(!dir.join("data").join("tls-cert.pem").exists());
    }
}
