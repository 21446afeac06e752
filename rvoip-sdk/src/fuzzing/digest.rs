//! The `digest` fuzz target.

use crate::auth::{Algorithm, AuthOutcome, Authenticator, NonceStatus, UserDb};
use crate::sip::msg::{Auth, ByteString};

use super::NOW_SECS;

const REALM: &str = "fuzz.example.com";

fn field<'a>(parts: &mut impl Iterator<Item = &'a [u8]>) -> String {
    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned()
}

/// Digest authentication (RFC 7616, RFC 8760) as the registrar and proxy run it:
/// - [`Authenticator::check_request`] with arbitrary `Authorization` values, method and AOR
///   never panics and never authorizes (the nonce is ours, MAC'd with a secret);
/// - [`Authenticator::verify_nonce`] of arbitrary text never panics and is `Invalid`, while a
///   nonce we minted verifies;
/// - a client answer built with [`crate::auth::authorization_value`] for arbitrary username,
///   password, URI and cnonce (quotes and backslashes included) is authorized, a replayed
///   nonce-count is not (unless the same request is retransmitted), and a wrong password fails;
/// - [`UserDb::from_file_text`] takes any text.
pub fn digest(data: &[u8]) {
    let mut parts = data.split(|&b| b == b'\n');
    let user = field(&mut parts);
    let password = field(&mut parts);
    let uri = field(&mut parts);
    let cnonce = field(&mut parts);
    let method = field(&mut parts);
    let rest: Vec<ByteString> = parts
        .map(|p| ByteString::from(String::from_utf8_lossy(p).into_owned()))
        .collect();

    let _ = UserDb::from_file_text(&String::from_utf8_lossy(data), REALM);

    let mut db = UserDb::new(REALM);
    db.add("alice", "secret");
    db.add(&user, &password);
    let mut a = Authenticator::with_secret(REALM, db, false, [9u8; 32]);

    // Arbitrary header values: never authorized.
    let out = a.check_request(NOW_SECS, &method, rest.iter(), &user, 1);
    assert!(
        !matches!(out, AuthOutcome::Authorized { .. }),
        "authorized without a nonce of ours: {rest:?}"
    );
    for v in &rest {
        assert_eq!(a.verify_nonce(NOW_SECS, v), NonceStatus::Invalid, "{v}");
        if let Ok(auth) = Auth::parse(v) {
            let out = a.check_digest(NOW_SECS, &method, &auth, "alice");
            assert!(!matches!(out, AuthOutcome::Authorized { .. }));
        }
    }

    // A real exchange with the fuzzed fields.
    let method = if method.is_empty() {
        "REGISTER".to_string()
    } else {
        method
    };
    for which in 0..2 {
        let challenge = ByteString::from(a.challenges(NOW_SECS, false)[which].clone());
        let ch = Auth::parse(&challenge).expect("our challenge parses");
        let nonce = ch.get("nonce").expect("nonce").to_owned();
        assert_eq!(a.verify_nonce(NOW_SECS, &nonce), NonceStatus::Valid);
        assert_eq!(
            a.verify_nonce(NOW_SECS + a.nonce_lifetime + 1, &nonce),
            NonceStatus::Stale
        );
        let Some(value) =
            crate::auth::authorization_value(&ch, &user, &password, &method, &uri, 1, &cnonce)
        else {
            panic!("no answer to our own challenge {challenge}");
        };
        let value = ByteString::from(value);
        let Ok(parsed) = Auth::parse(&value) else {
            // Text the header parser cannot carry (e.g. a field that trims to nothing) is a
            // client-side limit, not an authentication bypass.
            continue;
        };
        let fields_survive = parsed.get("username") == Some(user.as_str())
            && parsed.get("uri") == Some(uri.as_str())
            && parsed.get("cnonce") == Some(cnonce.as_str())
            && !cnonce.is_empty();
        let out = a.check_request(NOW_SECS, &method, std::iter::once(&value), &user, 42);
        if fields_survive {
            assert_eq!(
                out,
                AuthOutcome::Authorized { user: user.clone() },
                "a correct answer was refused: {value}"
            );
            // A retransmission of the same request is authorized again; a replay is not.
            let again = a.check_request(NOW_SECS, &method, std::iter::once(&value), &user, 42);
            assert_eq!(again, AuthOutcome::Authorized { user: user.clone() });
            let replay = a.check_request(NOW_SECS, &method, std::iter::once(&value), &user, 43);
            assert_eq!(replay, AuthOutcome::Challenge { stale: true }, "{value}");
        }
        // The wrong password never passes.
        let wrong = format!("{password}x");
        if let Some(v) =
            crate::auth::authorization_value(&ch, &user, &wrong, &method, &uri, 2, &cnonce)
        {
            let v = ByteString::from(v);
            let out = a.check_request(NOW_SECS, &method, std::iter::once(&v), &user, 44);
            assert!(
                !matches!(out, AuthOutcome::Authorized { .. }),
                "wrong password authorized: {v}"
            );
        }
    }
    let _ = Algorithm::from_wire(&user);
}
