//! Tests for digest authentication.

use super::*;

const REALM: &str = "sip.example.com";
const T0: u64 = 1_700_000_000;

fn db() -> UserDb {
    UserDb::from_file_text("# users\n\nalice:secret\nbob:pa:ss\n", REALM).unwrap()
}

fn authn(lax: bool) -> Authenticator {
    Authenticator::with_secret(REALM, db(), lax, [7u8; 32])
}

/// Parses a challenge produced by the server, as a client would.
fn challenge(a: &Authenticator, now: u64, which: usize) -> Auth {
    let v = ByteString::from(a.challenges(now, false)[which].clone());
    Auth::parse(&v).unwrap()
}

fn answer(a: &Authenticator, now: u64, which: usize, user: &str, pw: &str, nc: u32) -> ByteString {
    answer_to(&challenge(a, now, which), user, pw, nc)
}

/// Answers one given challenge (to reuse its nonce with several nonce-counts).
fn answer_to(ch: &Auth, user: &str, pw: &str, nc: u32) -> ByteString {
    let v = authorization_value(
        ch,
        user,
        pw,
        "REGISTER",
        "sip:sip.example.com",
        nc,
        "c0ffee",
    )
    .unwrap();
    ByteString::from(v)
}

fn check(a: &mut Authenticator, now: u64, v: &ByteString, aor: &str) -> AuthOutcome {
    a.check(now, "REGISTER", std::iter::once(v), aor)
}

fn authorized(u: &str) -> AuthOutcome {
    AuthOutcome::Authorized { user: u.to_owned() }
}

fn failed(u: &str) -> AuthOutcome {
    AuthOutcome::Failed { user: u.to_owned() }
}

const FRESH: AuthOutcome = AuthOutcome::Challenge { stale: false };
const STALE: AuthOutcome = AuthOutcome::Challenge { stale: true };

#[test]
fn rfc7616_3_9_1_vectors() {
    let (user, realm, pw) = ("Mufasa", "http-auth@example.org", "Circle of Life");
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let md5 = digest_response(
        Algorithm::Md5,
        user,
        realm,
        pw,
        "GET",
        "/dir/index.html",
        nonce,
        1,
        cnonce,
    );
    assert_eq!(md5, "8ca523f5e9506fed4657c9700eebdbec");
    let sha = digest_response(
        Algorithm::Sha256,
        user,
        realm,
        pw,
        "GET",
        "/dir/index.html",
        nonce,
        1,
        cnonce,
    );
    assert_eq!(
        sha,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    // The precomputed-HA1 path gives the same answer.
    let c = Credentials::new(user, realm, pw);
    assert_eq!(c.ha1_md5, "3d78807defe7de2157e2b0b6573a855f");
    assert_eq!(
        c.ha1_sha256,
        "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
    );
    assert_eq!(
        response_from_ha1(
            Algorithm::Sha256,
            c.ha1(Algorithm::Sha256),
            "GET",
            "/dir/index.html",
            nonce,
            "00000001",
            cnonce
        ),
        sha
    );
    assert_eq!(
        response_from_ha1(
            Algorithm::Md5,
            c.ha1(Algorithm::Md5),
            "GET",
            "/dir/index.html",
            nonce,
            "00000001",
            cnonce
        ),
        md5
    );
}

#[test]
fn challenges_sha256_first_then_md5() {
    let a = authn(false);
    let [sha, md5] = a.challenges(T0, false);
    let nonce = Auth::parse(&ByteString::from(sha.clone()))
        .unwrap()
        .get("nonce")
        .unwrap()
        .to_string();
    assert_eq!(a.verify_nonce(T0, &nonce), NonceStatus::Valid);
    assert_ne!(
        a.make_nonce(T0),
        nonce,
        "every challenge gets its own nonce"
    );
    assert_eq!(
        sha,
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"")
    );
    assert_eq!(
        md5,
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
    );
    let [s, m] = a.challenges(T0, true);
    assert!(s.ends_with(", stale=true") && m.ends_with(", stale=true"));
    assert_eq!(nonce.len(), NONCE_LEN);
}

#[test]
fn same_cnonce_on_two_challenges_is_not_a_replay() {
    // Two SIPp processes (unseeded PRNG) answer two challenges with the same cnonce and nc=1.
    let mut a = authn(true);
    let v1 = answer(&a, T0, 0, "alice", "secret", 1);
    let v2 = answer(&a, T0, 0, "alice", "secret", 1);
    assert_eq!(check(&mut a, T0, &v1, "alice"), authorized("alice"));
    assert_eq!(check(&mut a, T0, &v2, "alice"), authorized("alice"));
}

#[test]
fn round_trip_sha256_and_md5() {
    let mut a = authn(false);
    let v = answer(&a, T0, 0, "alice", "secret", 1);
    assert!(v.contains("algorithm=SHA-256"));
    assert_eq!(check(&mut a, T0 + 1, &v, "alice"), authorized("alice"));
    // A password containing ':' (bob:pa:ss), with MD5.
    let v = answer(&a, T0, 1, "bob", "pa:ss", 1);
    assert!(v.contains("algorithm=MD5"));
    assert_eq!(check(&mut a, T0 + 2, &v, "bob"), authorized("bob"));
}

#[test]
fn nonce_reuse_with_higher_nc_is_accepted_and_replay_rejected() {
    let mut a = authn(false);
    let ch = challenge(&a, T0, 0);
    let v1 = answer_to(&ch, "alice", "secret", 1);
    assert_eq!(check(&mut a, T0, &v1, "alice"), authorized("alice"));
    // Same nc again: replay.
    assert_eq!(check(&mut a, T0 + 1, &v1, "alice"), STALE);
    let v2 = answer_to(&ch, "alice", "secret", 2);
    assert_eq!(check(&mut a, T0 + 2, &v2, "alice"), authorized("alice"));
    // Going back to nc=1 is a replay too.
    assert_eq!(check(&mut a, T0 + 3, &v1, "alice"), STALE);
    assert_eq!(a.tracked_nonces(), 1);
}

#[test]
fn stale_nonce_asks_for_retry() {
    let mut a = authn(false);
    let v = answer(&a, T0, 0, "alice", "secret", 1);
    assert_eq!(
        a.verify_nonce(T0 + 300, &a.make_nonce(T0)),
        NonceStatus::Valid
    );
    assert_eq!(
        a.verify_nonce(T0 + 301, &a.make_nonce(T0)),
        NonceStatus::Stale
    );
    assert_eq!(check(&mut a, T0 + 301, &v, "alice"), STALE);
    // A stale nonce with a wrong password is not reported as stale.
    let bad = answer(&a, T0, 0, "alice", "wrong", 1);
    assert_eq!(check(&mut a, T0 + 301, &bad, "alice"), failed("alice"));
    // A shorter lifetime.
    a.nonce_lifetime = 10;
    let v = answer(&a, T0, 0, "alice", "secret", 1);
    assert_eq!(check(&mut a, T0 + 11, &v, "alice"), STALE);
}

#[test]
fn forged_nonces_are_invalid() {
    let mut a = authn(false);
    let good = a.make_nonce(T0);
    // Flip one MAC digit.
    let mut forged = good.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(a.verify_nonce(T0, &forged), NonceStatus::Invalid);
    // Another timestamp with the old MAC.
    let moved = format!("{:016x}{}", T0 + 1, &good[16..]);
    assert_eq!(a.verify_nonce(T0 + 1, &moved), NonceStatus::Invalid);
    // Minted by another process (other secret).
    let other = Authenticator::with_secret(REALM, db(), false, [8u8; 32]);
    assert_eq!(
        a.verify_nonce(T0, &other.make_nonce(T0)),
        NonceStatus::Invalid
    );
    // From the future, garbage, wrong length.
    assert_eq!(
        a.verify_nonce(T0, &a.make_nonce(T0 + 60)),
        NonceStatus::Invalid
    );
    assert_eq!(a.verify_nonce(T0, "zz"), NonceStatus::Invalid);
    assert_eq!(
        a.verify_nonce(T0, &"g".repeat(NONCE_LEN)),
        NonceStatus::Invalid
    );
    assert_eq!(
        a.verify_nonce(T0, &format!("{good}é")),
        NonceStatus::Invalid
    );
    // A correct digest over a forged nonce (the client computed it honestly) is refused.
    let ch = ByteString::from(format!(
        "Digest realm=\"{REALM}\", nonce=\"{forged}\", algorithm=MD5, qop=\"auth\""
    ));
    let v = authorization_value(
        &Auth::parse(&ch).unwrap(),
        "alice",
        "secret",
        "REGISTER",
        "sip:sip.example.com",
        1,
        "abc",
    )
    .unwrap();
    assert_eq!(check(&mut a, T0, &ByteString::from(v), "alice"), FRESH);
}

#[test]
fn unknown_user_and_wrong_password_are_indistinguishable() {
    let mut a = authn(true);
    let wrong_pw = answer(&a, T0, 0, "alice", "nope", 1);
    let unknown = answer(&a, T0, 0, "mallory", "nope", 1);
    let r1 = check(&mut a, T0, &wrong_pw, "alice");
    let r2 = check(&mut a, T0, &unknown, "mallory");
    // Both are a failed attempt (answered like a fresh challenge), told apart only by the
    // name that was tried, which the sender knows anyway.
    assert_eq!(r1, failed("alice"));
    assert_eq!(r2, failed("mallory"));
    // Same with MD5, and neither consumed a nonce-count slot.
    let wrong_pw = answer(&a, T0, 1, "alice", "nope", 1);
    let unknown = answer(&a, T0, 1, "mallory", "nope", 1);
    assert_eq!(check(&mut a, T0, &wrong_pw, "alice"), failed("alice"));
    assert_eq!(check(&mut a, T0, &unknown, "mallory"), failed("mallory"));
    assert_eq!(a.tracked_nonces(), 0);
    // Even after expiry the two stay identical (never stale=true for a bad digest).
    assert_eq!(
        check(&mut a, T0 + 1000, &wrong_pw, "alice"),
        failed("alice")
    );
    assert_eq!(
        check(&mut a, T0 + 1000, &unknown, "mallory"),
        failed("mallory")
    );
}

#[test]
fn strict_mode_requires_username_equal_to_aor_user() {
    let mut strict = authn(false);
    let v = answer(&strict, T0, 0, "alice", "secret", 1);
    assert_eq!(check(&mut strict, T0, &v, "bob"), failed("alice"));
    // The failed attempt did not burn nc=1.
    assert_eq!(check(&mut strict, T0, &v, "alice"), authorized("alice"));
    let mut lax = authn(true);
    let v = answer(&lax, T0, 0, "alice", "secret", 1);
    assert_eq!(check(&mut lax, T0, &v, "bob"), authorized("alice"));
}

#[test]
fn unknown_scheme_other_realm_and_missing_params_challenge() {
    let mut a = authn(false);
    // RFC 4475 regaut01.
    let v = ByteString::from_static("NoOneKnowsThisScheme opaque-data=here");
    assert_eq!(check(&mut a, T0, &v, "j.user"), FRESH);
    assert_eq!(a.check(T0, "REGISTER", std::iter::empty(), "alice"), FRESH);
    // Good credentials for another realm are skipped; ours are found in the second value.
    let ours = answer(&a, T0, 0, "alice", "secret", 1);
    let other = ByteString::from(ours.replace(REALM, "other.example.com"));
    let vals = [other.clone(), ours.clone()];
    assert_eq!(
        a.check(T0, "REGISTER", vals.iter(), "alice"),
        authorized("alice")
    );
    assert_eq!(check(&mut a, T0, &other, "alice"), FRESH);
    // Without qop (RFC 2069 style), without cnonce, with a bad nc, with an unknown algorithm.
    let ours = answer(&a, T0, 0, "alice", "secret", 5);
    for broken in [
        ours.replace(", qop=auth", ""),
        ours.replace(", cnonce=\"c0ffee\"", ""),
        ours.replace("nc=00000005", "nc=5"),
        ours.replace("nc=00000005", "nc=0000000x"),
        ours.replace("nc=00000005", "nc=00000000"),
        ours.replace("algorithm=SHA-256", "algorithm=SHA-256-sess"),
        ours.replace("qop=auth", "qop=auth-int"),
    ] {
        assert_eq!(
            check(&mut a, T0, &ByteString::from(broken.clone()), "alice"),
            FRESH,
            "{broken}"
        );
    }
    // Wrong method: HA2 differs (a failed attempt).
    assert_eq!(
        a.check(T0, "INVITE", std::iter::once(&ours), "alice"),
        failed("alice")
    );
    assert_eq!(check(&mut a, T0, &ours, "alice"), authorized("alice"));
    // Upper-case hex response is accepted.
    let ours = answer(&a, T0, 0, "alice", "secret", 6);
    let (head, tail) = ours.split_once("response=\"").unwrap();
    let (resp, rest) = tail.split_once('"').unwrap();
    let upper = format!("{head}response=\"{}\"{rest}", resp.to_ascii_uppercase());
    assert_eq!(
        check(&mut a, T0, &ByteString::from(upper), "alice"),
        authorized("alice")
    );
}

#[test]
fn nonce_table_is_bounded_and_expires() {
    let mut a = authn(false);
    a.max_nonces = 3;
    for i in 0..5 {
        let v = answer(&a, T0 + i, 0, "alice", "secret", 1);
        assert_eq!(check(&mut a, T0 + i, &v, "alice"), authorized("alice"));
        assert!(a.tracked_nonces() <= 3);
    }
    assert_eq!(a.tracked_nonces(), 3);
    // After the lifetime, old entries go away on the next success.
    let v = answer(&a, T0 + 1000, 0, "alice", "secret", 1);
    assert_eq!(check(&mut a, T0 + 1000, &v, "alice"), authorized("alice"));
    assert_eq!(a.tracked_nonces(), 1);
}

#[test]
fn user_file_parsing() {
    let db = UserDb::from_file_text("  # c\n\n carol : x y \r\n", "r").unwrap();
    assert_eq!(db.len(), 1);
    assert_eq!(
        db.get("carol").unwrap(),
        &Credentials::new("carol", "r", " x y")
    );
    assert_eq!(db.realm(), "r");
    assert_eq!(
        UserDb::from_file_text("a:b\n\nnocolon\n", "r").unwrap_err(),
        AuthError::BadLine {
            line: 3,
            what: "expected user:password"
        }
    );
    assert!(matches!(
        UserDb::from_file_text(":pw", "r"),
        Err(AuthError::BadLine { line: 1, .. })
    ));
    assert!(matches!(
        UserDb::from_file_text("u:", "r"),
        Err(AuthError::BadLine { line: 1, .. })
    ));
    assert!(matches!(
        UserDb::from_file_text("u:1\n#\nu:2", "r"),
        Err(AuthError::Duplicate { line: 3, .. })
    ));
    assert!(UserDb::from_file_text("", "r").unwrap().is_empty());
    // Debug never prints secrets.
    assert_eq!(
        format!("{:?}", Credentials::new("u", "r", "p")),
        "Credentials { .. }"
    );
}

#[test]
fn client_declines_unusable_challenges() {
    let p = |s: &'static str| Auth::parse(&ByteString::from_static(s)).unwrap();
    let ok = |c: &Auth| authorization_value(c, "u", "p", "INVITE", "sip:x", 1, "cn");
    assert!(ok(&p("Basic realm=\"x\"")).is_none());
    assert!(ok(&p("Digest realm=\"x\", nonce=\"n\"")).is_none()); // no qop
    assert!(
        ok(&p(
            "Digest realm=\"x\", nonce=\"n\", qop=\"auth\", algorithm=SHA-512-256"
        ))
        .is_none()
    );
    let v = ok(&p(
        "Digest realm=\"x\", nonce=\"n\", qop=\"auth-int,auth\", opaque=\"o\"",
    ))
    .unwrap();
    assert!(
        v.contains("algorithm=MD5") && v.ends_with(", opaque=\"o\""),
        "{v}"
    );
    assert!(v.contains(&format!(
        "response=\"{}\"",
        digest_response(
            Algorithm::Md5,
            "u",
            "x",
            "p",
            "INVITE",
            "sip:x",
            "n",
            1,
            "cn"
        )
    )));
}

#[test]
fn challenge_without_qop_gets_the_rfc2617_compatible_answer() {
    let ch = crate::sip::msg::Auth::parse(
        &"Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"o1\""
            .into(),
    )
    .unwrap();
    // Not answerable as qop=auth …
    assert!(
        authorization_value(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "INVITE",
            "sip:bob@example.com",
            1,
            "c"
        )
        .is_none()
    );
    // … but in the RFC 2069 form: KD(HA1, nonce:HA2), checked against Python's hashlib.
    let v = crate::auth::authorization_value_without_qop(
        &ch,
        "Mufasa",
        "Circle Of Life",
        "INVITE",
        "sip:bob@example.com",
    )
    .unwrap();
    assert!(
        v.contains("response=\"d85bba3530f0e5922f43aaa196ab7aeb\""),
        "{v}"
    );
    assert!(v.contains("opaque=\"o1\"") && !v.contains("qop") && !v.contains("cnonce"));
    let with_qop =
        crate::sip::msg::Auth::parse(&"Digest realm=\"r\", nonce=\"n\", qop=\"auth\"".into())
            .unwrap();
    assert!(
        crate::auth::authorization_value_without_qop(&with_qop, "u", "p", "INVITE", "sip:x")
            .is_none()
    );
}
