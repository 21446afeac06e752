//! The SDP side of DTLS-SRTP: `a=setup` (RFC 4145 §4, RFC 5763 §5), the DTLS role it decides,
//! and `a=fingerprint` (RFC 8122 §5), parsed and printed without panicking on any input.

use std::fmt;

use sha2::Digest;

/// The `a=setup` attribute (RFC 4145 §4, RFC 5763 §5): who opens the DTLS association. The
/// offerer writes `actpass` (RFC 5763 §5 MUST); `holdconn` is not used for DTLS and not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `active`: this side runs the DTLS client.
    Active,
    /// `passive`: this side runs the DTLS server.
    Passive,
    /// `actpass`: either; the answer decides.
    ActPass,
}

impl Setup {
    /// The attribute value: `active`, `passive` or `actpass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
        }
    }

    /// Parses an attribute value (surrounding whitespace and ASCII case ignored); `None` for
    /// `holdconn` or anything unknown.
    pub fn parse(value: &str) -> Option<Setup> {
        let v = value.trim();
        [Setup::Active, Setup::Passive, Setup::ActPass]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(v))
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the DTLS handshake we run: `a=setup:active` is the client (RFC 5763 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsRole {
    /// We send the ClientHello.
    Client,
    /// We wait for the ClientHello.
    Server,
}

impl DtlsRole {
    /// The answerer's role and the `a=setup` to write in the answer, given the offer's
    /// (RFC 5763 §5): to `actpass` we answer `active` (RECOMMENDED) and are the client; to
    /// `passive` we answer `active` (client); to `active` we answer `passive` (server).
    pub fn for_answer(offer_setup: Setup) -> (DtlsRole, Setup) {
        match offer_setup {
            Setup::ActPass | Setup::Passive => (DtlsRole::Client, Setup::Active),
            Setup::Active => (DtlsRole::Server, Setup::Passive),
        }
    }

    /// The offerer's role given the answer's `a=setup` (RFC 5763 §5): the answer `active` makes
    /// us the server, `passive` the client; `actpass` in an answer is invalid (`None`).
    pub fn for_offerer(answer_setup: Setup) -> Option<DtlsRole> {
        match answer_setup {
            Setup::Active => Some(DtlsRole::Server),
            Setup::Passive => Some(DtlsRole::Client),
            Setup::ActPass => None,
        }
    }
}

/// A hash function of `a=fingerprint` (RFC 8122 §5) that this stack computes. `sha-1` (which
/// RFC 8122 deprecates), `sha-224`, `md5` and `md2` are not supported and do not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FingerprintHash {
    /// `sha-256` (32 bytes); the one we write, and the one RFC 8122 §5 requires.
    Sha256,
    /// `sha-384` (48 bytes).
    Sha384,
    /// `sha-512` (64 bytes).
    Sha512,
}

impl FingerprintHash {
    const ALL: [FingerprintHash; 3] = [
        FingerprintHash::Sha256,
        FingerprintHash::Sha384,
        FingerprintHash::Sha512,
    ];

    /// The hash function's name in `a=fingerprint` (lower case, as registered).
    pub fn name(self) -> &'static str {
        match self {
            FingerprintHash::Sha256 => "sha-256",
            FingerprintHash::Sha384 => "sha-384",
            FingerprintHash::Sha512 => "sha-512",
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            FingerprintHash::Sha256 => 32,
            FingerprintHash::Sha384 => 48,
            FingerprintHash::Sha512 => 64,
        }
    }

    /// The function named `name` (ASCII case ignored), if supported.
    pub fn from_name(name: &str) -> Option<FingerprintHash> {
        FingerprintHash::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            FingerprintHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            FingerprintHash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            FingerprintHash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A certificate fingerprint, the value of `a=fingerprint` (RFC 8122 §5): a hash function and
/// the digest of the DER-encoded certificate. Displays as `sha-256 AB:CD:…` (upper-case hex).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    hash: FingerprintHash,
    digest: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate with `hash`.
    pub fn of_certificate(hash: FingerprintHash, der: &[u8]) -> Fingerprint {
        Fingerprint {
            hash,
            digest: hash.digest(der),
        }
    }

    /// A fingerprint from its parts; `None` if `digest` is not
    /// [`FingerprintHash::digest_len`] bytes long.
    pub fn new(hash: FingerprintHash, digest: Vec<u8>) -> Option<Fingerprint> {
        (digest.len() == hash.digest_len()).then_some(Fingerprint { hash, digest })
    }

    /// Parses an attribute value, `<hash-func> <XX:XX:…>` (RFC 8122 §5; hex of either case).
    /// `None` for an unsupported hash, a digest of the wrong length, or anything malformed.
    pub fn parse(value: &str) -> Option<Fingerprint> {
        let mut tokens = value.split_ascii_whitespace();
        let (Some(name), Some(hex_digest), None) = (tokens.next(), tokens.next(), tokens.next())
        else {
            return None;
        };
        let hash = FingerprintHash::from_name(name)?;
        let mut digest = Vec::with_capacity(hash.digest_len());
        for pair in hex_digest.split(':') {
            if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            digest.push(u8::from_str_radix(pair, 16).ok()?);
        }
        Fingerprint::new(hash, digest)
    }

    /// The hash function.
    pub fn hash(&self) -> FingerprintHash {
        self.hash
    }

    /// The digest bytes ([`FingerprintHash::digest_len`] of them).
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Whether the DER-encoded certificate `der` has this fingerprint.
    pub fn matches(&self, der: &[u8]) -> bool {
        self.hash.digest(der) == self.digest
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        for (i, b) in self.digest.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}
