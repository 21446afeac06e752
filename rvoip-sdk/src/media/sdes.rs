//! SDES keying for SRTP (RFC 4568): the SDP `a=crypto` attribute, parsed and written, and fresh
//! master keys for an offer or answer.
//!
//! `a=crypto:<tag> <crypto-suite> inline:<key||salt base64>[|<lifetime>][|<MKI>:<length>] [<session
//! parameters>]` (RFC 4568 §9.1, §6.1). The suites are AES_CM_128_HMAC_SHA1_80 and _32 (RFC 4568
//! §6.2: 16-byte key, 14-byte salt) and AEAD_AES_128_GCM (RFC 7714 §12: 16-byte key, 12-byte
//! salt). Everything here is pure: parsing never panics on input from the network, and an
//! attribute this stack cannot honour is an error or [`CryptoAttribute::is_acceptable`] false, so
//! that the offer/answer can skip it (RFC 4568 §7.1.2) rather than run weaker than offered.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// An SRTP crypto suite this stack implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 4568 §6.2.1).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag on SRTP (RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
    /// AES-128 GCM with a 16-byte tag (RFC 7714 §12).
    AeadAes128Gcm,
}

impl CryptoSuite {
    /// All suites, in our order of preference for an offer.
    pub const ALL: [CryptoSuite; 3] = [
        CryptoSuite::AeadAes128Gcm,
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
    ];

    /// The suite's name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            CryptoSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The suite named `name` (case-sensitive, as RFC 4568 registers them), if implemented.
    pub fn from_name(name: &str) -> Option<CryptoSuite> {
        CryptoSuite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes (14 for AES-CM, 12 for GCM).
    pub fn salt_len(self) -> usize {
        match self {
            CryptoSuite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Length of the inline key material (key followed by salt) in bytes.
    pub fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }
}

/// Why an `a=crypto` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    /// Not `tag suite key-params [session-params]`, or a tag that is not 1–9 digits.
    #[error("malformed crypto attribute: {0}")]
    Malformed(&'static str),
    /// A crypto suite this stack does not implement (the attribute is skipped, RFC 4568 §7.1.2).
    #[error("unsupported crypto suite {0}")]
    UnknownSuite(String),
    /// A key parameter that is not `inline:`, bad base64, or key material of the wrong length.
    #[error("bad key parameter: {0}")]
    BadKey(&'static str),
}

/// One `inline:` key parameter (RFC 4568 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParam {
    /// The master key followed by the master salt ([`CryptoSuite::master_len`] bytes).
    pub master: Vec<u8>,
    /// The key's lifetime in packets, if given (`|2^31` or `|1048576`).
    pub lifetime: Option<u64>,
    /// The master key identifier and its length on the wire in bytes (1–128), if given.
    pub mki: Option<(u64, u8)>,
}

/// An `a=crypto` attribute: tag, suite, keys and session parameters (RFC 4568 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag that ties an answer's attribute to the offer's (1–999999999).
    pub tag: u32,
    /// The crypto suite.
    pub suite: CryptoSuite,
    /// The master keys (at least one).
    pub keys: Vec<KeyParam>,
    /// Session parameters as written (e.g. `KDR=0`, `UNENCRYPTED_SRTCP`).
    pub session_params: Vec<String>,
}

impl CryptoAttribute {
    /// A new attribute with a fresh random master key and salt, no lifetime and no MKI.
    pub fn generate(tag: u32, suite: CryptoSuite) -> CryptoAttribute {
        let master: Vec<u8> = (0..suite.master_len())
            .map(|_| rand::random::<u8>())
            .collect();
        CryptoAttribute {
            tag,
            suite,
            keys: vec![KeyParam {
                master,
                lifetime: None,
                mki: None,
            }],
            session_params: Vec::new(),
        }
    }

    /// Parses the value of an `a=crypto` attribute (what follows `a=crypto:`). Errors:
    /// [`SdesError::Malformed`], [`SdesError::UnknownSuite`], [`SdesError::BadKey`].
    pub fn parse(value: &str) -> Result<CryptoAttribute, SdesError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields.next().ok_or(SdesError::Malformed("empty"))?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SdesError::Malformed("tag is not 1-9 digits"));
        }
        let tag: u32 = tag
            .parse()
            .map_err(|_| SdesError::Malformed("tag is not 1-9 digits"))?;
        let suite = fields
            .next()
            .ok_or(SdesError::Malformed("no crypto suite"))?;
        let suite =
            CryptoSuite::from_name(suite).ok_or_else(|| SdesError::UnknownSuite(suite.into()))?;
        let key_params = fields
            .next()
            .ok_or(SdesError::Malformed("no key parameters"))?;
        let keys = key_params
            .split(';')
            .map(|k| parse_key(k, suite))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CryptoAttribute {
            tag,
            suite,
            keys,
            session_params: fields.map(str::to_string).collect(),
        })
    }

    /// Whether this stack can use the attribute as it stands: every session parameter known and
    /// none that turns encryption or authentication off (`UNENCRYPTED_SRTP`, `UNENCRYPTED_SRTCP`,
    /// `UNAUTHENTICATED_SRTP`: accepting those would answer SRTP with something weaker), only a
    /// key derivation rate of 0, and a single key without MKI (RFC 4568 §6.3: an answerer skips
    /// attributes it does not fully support).
    pub fn is_acceptable(&self) -> bool {
        self.keys.len() == 1
            && self.keys.iter().all(|k| k.mki.is_none())
            && self.session_params.iter().all(|p| p == "KDR=0")
    }
}

impl std::fmt::Display for CryptoAttribute {
    /// The attribute value (without `a=crypto:`), keys in base64 with their lifetime and MKI.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ", self.tag, self.suite.name())?;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "inline:{}", STANDARD.encode(&k.master))?;
            if let Some(l) = k.lifetime {
                if l.is_power_of_two() && l > 1 {
                    write!(f, "|2^{}", l.trailing_zeros())?;
                } else {
                    write!(f, "|{l}")?;
                }
            }
            if let Some((v, len)) = k.mki {
                write!(f, "|{v}:{len}")?;
            }
        }
        for p in &self.session_params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// One `inline:key||salt[|lifetime][|mki:length]` key parameter.
fn parse_key(s: &str, suite: CryptoSuite) -> Result<KeyParam, SdesError> {
    let info = s
        .strip_prefix("inline:")
        .ok_or(SdesError::BadKey("not an inline: key"))?;
    let mut parts = info.split('|');
    let b64 = parts.next().unwrap_or("");
    let master = STANDARD
        .decode(b64)
        .map_err(|_| SdesError::BadKey("key is not base64"))?;
    if master.len() != suite.master_len() {
        return Err(SdesError::BadKey("key and salt of the wrong length"));
    }
    let mut lifetime = None;
    let mut mki = None;
    for p in parts {
        match p.split_once(':') {
            Some((value, len)) if mki.is_none() => {
                let value: u64 = digits(value).ok_or(SdesError::BadKey("bad MKI value"))?;
                let len: u8 = digits(len)
                    .filter(|l| (1..=128).contains(l))
                    .and_then(|l| u8::try_from(l).ok())
                    .ok_or(SdesError::BadKey("MKI length is not 1-128"))?;
                mki = Some((value, len));
            }
            None if lifetime.is_none() && mki.is_none() => {
                let l = match p.strip_prefix("2^") {
                    Some(exp) => digits(exp)
                        .filter(|e| *e <= 63)
                        .map(|e| 1u64 << e)
                        .ok_or(SdesError::BadKey("bad lifetime"))?,
                    None => digits(p).ok_or(SdesError::BadKey("bad lifetime"))?,
                };
                if l == 0 {
                    return Err(SdesError::BadKey("zero lifetime"));
                }
                lifetime = Some(l);
            }
            _ => return Err(SdesError::BadKey("unexpected key field")),
        }
    }
    Ok(KeyParam {
        master,
        lifetime,
        mki,
    })
}

/// A decimal number of at most 19 digits (no sign, no spaces).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4568 §9's example attribute.
    const RFC_EXAMPLE: &str =
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";

    #[test]
    fn the_rfc_example_parses_and_writes_back() {
        let a = CryptoAttribute::parse(RFC_EXAMPLE).unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.suite, CryptoSuite::AesCm128HmacSha1_80);
        assert_eq!(a.keys.len(), 1);
        assert_eq!(a.keys[0].master.len(), 30);
        assert_eq!(a.keys[0].lifetime, Some(1 << 20));
        assert_eq!(a.keys[0].mki, Some((1, 4)));
        assert_eq!(a.to_string(), RFC_EXAMPLE);
        // It names an MKI: this stack does not take it.
        assert!(!a.is_acceptable());
    }

    #[test]
    fn generated_keys_round_trip_for_every_suite() {
        for suite in CryptoSuite::ALL {
            let a = CryptoAttribute::generate(7, suite);
            assert_eq!(a.keys[0].master.len(), suite.master_len());
            let back = CryptoAttribute::parse(&a.to_string()).unwrap();
            assert_eq!(back, a);
            assert!(back.is_acceptable());
        }
        let (a, b) = (
            CryptoAttribute::generate(1, CryptoSuite::AeadAes128Gcm),
            CryptoAttribute::generate(1, CryptoSuite::AeadAes128Gcm),
        );
        assert_ne!(a.keys[0].master, b.keys[0].master, "fresh keys");
    }

    #[test]
    fn weakening_or_unknown_session_parameters_are_not_acceptable() {
        let base = CryptoAttribute::generate(1, CryptoSuite::AesCm128HmacSha1_32).to_string();
        for p in [
            "UNENCRYPTED_SRTP",
            "UNENCRYPTED_SRTCP",
            "UNAUTHENTICATED_SRTP",
            "FEC_ORDER=SRTP_FEC",
            "KDR=24",
        ] {
            let a = CryptoAttribute::parse(&format!("{base} {p}")).unwrap();
            assert!(!a.is_acceptable(), "{p}");
        }
        assert!(
            CryptoAttribute::parse(&format!("{base} KDR=0"))
                .unwrap()
                .is_acceptable()
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let key30 = STANDARD.encode([7u8; 30]);
        let key28 = STANDARD.encode([7u8; 28]);
        let cases = [
            String::new(),
            "1".into(),
            "1 AES_CM_128_HMAC_SHA1_80".into(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{key30}"),
            format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{key30}"),
            format!("1 F8_128_HMAC_SHA1_80 inline:{key30}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {key30}"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64".into(),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key28}"),
            format!("1 AEAD_AES_128_GCM inline:{key30}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|0"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|2^64"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|1:0"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|1:129"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|1:4|2^20"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|||"),
        ];
        for c in &cases {
            assert!(CryptoAttribute::parse(c).is_err(), "accepted {c:?}");
        }
        assert!(matches!(
            CryptoAttribute::parse(&format!("1 F8_128_HMAC_SHA1_80 inline:{key30}")),
            Err(SdesError::UnknownSuite(_))
        ));
        // The GCM suite takes 28 bytes.
        assert!(CryptoAttribute::parse(&format!("1 AEAD_AES_128_GCM inline:{key28}")).is_ok());
    }

    #[test]
    fn random_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4568);
        let alphabet = b"0123456789 AES_CM_128_HMAC_SHA1_80:inline|^;=+/KDRabcxyz";
        for _ in 0..20_000 {
            let n = rng.gen_range(0..80);
            let s: String = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
                .collect();
            let _ = CryptoAttribute::parse(&s);
            let _ = CryptoAttribute::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{s}"));
        }
    }
}
