//! The `bencode` fuzz target.

use bytes::Bytes;

use crate::server::ng::bencode::{Limits, decode};

/// The bencode codec of the ng control protocol ([`crate::server::ng::bencode`]) on arbitrary
/// bytes, as a UDP control datagram would bring them. Nothing may panic; whatever decodes must
/// encode to bytes that decode to the same value, and re-encode to the same bytes.
pub fn bencode(data: &[u8]) {
    let limits = Limits::default();
    let Ok(value) = decode(&Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    let encoded = value.encode();
    let again = match decode(&Bytes::from(encoded.clone()), &limits) {
        Ok(v) => v,
        Err(e) => panic!("our encoding does not decode ({e}): {encoded:?}"),
    };
    assert_eq!(again, value, "round trip changed the value");
    assert_eq!(again.encode(), encoded, "encoding is not stable");
}
