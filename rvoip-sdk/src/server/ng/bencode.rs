//! Bencode (BitTorrent BEP 3), the body encoding of rtpengine's "ng" control protocol: integers
//! `i42e`, byte strings `4:spam`, lists `l…e` and dictionaries `d…e`.
//!
//! The decoder takes dictionary keys in any order (Kamailio's and OpenSIPS's `rtpengine`
//! modules send them unsorted), keeps them in arrival order, and borrows every byte string from
//! the input ([`Bytes`] slices, no copy). It refuses, with the offset of the fault, anything
//! malformed: a missing `e`, a length past the end, an integer that is not one, nesting deeper
//! than [`Limits::max_depth`] or more than [`Limits::max_items`] values. It never panics. The
//! encoder writes dictionary keys in arrival order.

use bytes::Bytes;

/// A bencoded value. Byte strings are bytes, not text: SDP bodies travel in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer (`i-3e`), 64-bit signed.
    Int(i64),
    /// A byte string (`3:abc`).
    Bytes(Bytes),
    /// A list (`l…e`).
    List(Vec<Value>),
    /// A dictionary (`d…e`): byte-string keys with values, in arrival order. Looked up with
    /// [`Value::get`], which takes the first of repeated keys.
    Dict(Vec<(Bytes, Value)>),
}

/// Bounds on what [`decode`] accepts, against hostile input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries. Default 16 (ng messages nest 3 deep).
    pub max_depth: usize,
    /// Most values in one message, at every level together. Default 4096.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_items: 4096,
        }
    }
}

/// Why [`decode`] refused its input; `at` is the byte offset of the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("bencode: truncated at byte {at}")]
    Truncated {
        /// Byte offset.
        at: usize,
    },
    /// A byte that starts no value, or a malformed integer or length.
    #[error("bencode: unexpected byte at {at}")]
    Unexpected {
        /// Byte offset.
        at: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("bencode: dictionary key at {at} is not a byte string")]
    KeyNotBytes {
        /// Byte offset.
        at: usize,
    },
    /// Nesting deeper than [`Limits::max_depth`], or more values than [`Limits::max_items`].
    #[error("bencode: limit exceeded at byte {at}")]
    TooLarge {
        /// Byte offset.
        at: usize,
    },
    /// Bytes after the one top-level value.
    #[error("bencode: trailing bytes at {at}")]
    Trailing {
        /// Byte offset.
        at: usize,
    },
}

impl Value {
    /// The value of `key` in a dictionary (the first, if repeated); `None` for a missing key or
    /// a value that is not a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_ref() == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The bytes of a byte string; `None` for other values.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A byte string that is UTF-8, as text; `None` otherwise.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The integer of an integer value; `None` otherwise.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of a list; `None` for other values.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// A byte-string value from text.
    pub fn text(s: &str) -> Value {
        Value::Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Appends the bencoding of this value to `out` (dictionary keys in their stored order).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(items) => {
                out.push(b'd');
                for (k, v) in items {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The bencoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decodes exactly one bencoded value filling all of `input`. Errors: [`BencodeError`].
pub fn decode(input: &Bytes, limits: &Limits) -> Result<Value, BencodeError> {
    let mut d = Decoder {
        input,
        at: 0,
        items: 0,
        limits,
    };
    let v = d.value(0)?;
    if d.at != input.len() {
        return Err(BencodeError::Trailing { at: d.at });
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a Bytes,
    at: usize,
    items: usize,
    limits: &'a Limits,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.at)
            .copied()
            .ok_or(BencodeError::Truncated { at: self.at })
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        self.items += 1;
        if self.items > self.limits.max_items || depth > self.limits.max_depth {
            return Err(BencodeError::TooLarge { at: self.at });
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let end = self.find(b'e')?;
                let i = parse_int(self.input.get(self.at..end).unwrap_or_default())
                    .ok_or(BencodeError::Unexpected { at: self.at })?;
                self.at = end + 1;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotBytes { at: self.at });
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                }
                self.at += 1;
                Ok(Value::Dict(items))
            }
            _ => Err(BencodeError::Unexpected { at: self.at }),
        }
    }

    /// A byte string `<len>:<bytes>` at the cursor.
    fn bytes(&mut self) -> Result<Bytes, BencodeError> {
        let colon = self.find(b':')?;
        let digits = self.input.get(self.at..colon).unwrap_or_default();
        let len = parse_len(digits).ok_or(BencodeError::Unexpected { at: self.at })?;
        let start = colon + 1;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(BencodeError::Truncated { at: start })?;
        self.at = end;
        Ok(self.input.slice(start..end))
    }

    /// The offset of the next `byte` at or after the cursor.
    fn find(&self, byte: u8) -> Result<usize, BencodeError> {
        self.input
            .get(self.at..)
            .and_then(|rest| rest.iter().position(|&b| b == byte))
            .map(|p| self.at + p)
            .ok_or(BencodeError::Truncated {
                at: self.input.len(),
            })
    }
}

/// A byte-string length: decimal digits, no sign, at most 9 of them (a datagram is < 64 KiB).
fn parse_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An integer: an optional `-` and decimal digits that fit in an `i64`.
fn parse_int(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Result<Value, BencodeError> {
        decode(&Bytes::copy_from_slice(s), &Limits::default())
    }

    #[test]
    fn an_unsorted_ng_offer_decodes_and_encodes_back() {
        // As Kamailio's rtpengine module sends it: keys not in sorted order.
        let full: &[u8] = b"d7:command5:offer3:sdp10:v=0\r\no=-\r\n7:call-id4:abcd8:from-tag2:t1\
                            5:flagsl13:trust-addresse7:replacel6:originee";
        let v = dec(full).unwrap();
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(v.get("call-id").and_then(Value::as_str), Some("abcd"));
        assert_eq!(
            v.get("flags").and_then(Value::as_list).map(<[Value]>::len),
            Some(1)
        );
        assert_eq!(
            v.get("replace")
                .and_then(Value::as_list)
                .and_then(|l| l.first())
                .and_then(Value::as_str),
            Some("origin")
        );
        assert_eq!(v.encode(), full, "keys stay in arrival order");
    }

    #[test]
    fn integers_strings_lists_and_nesting() {
        assert_eq!(dec(b"i-42e"), Ok(Value::Int(-42)));
        assert_eq!(dec(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(dec(b"0:"), Ok(Value::Bytes(Bytes::new())));
        assert_eq!(dec(b"li1e3:abcle"), Err(BencodeError::Truncated { at: 11 }));
        assert_eq!(
            dec(b"li1e3:abclee"),
            Ok(Value::List(vec![
                Value::Int(1),
                Value::text("abc"),
                Value::List(vec![])
            ]))
        );
    }

    #[test]
    fn malformed_input_is_refused_with_its_offset() {
        for (input, want) in [
            (&b""[..], BencodeError::Truncated { at: 0 }),
            (b"i12", BencodeError::Truncated { at: 3 }),
            (b"ie", BencodeError::Unexpected { at: 1 }),
            (b"i-e", BencodeError::Unexpected { at: 1 }),
            (b"i1x2e", BencodeError::Unexpected { at: 1 }),
            (
                b"i99999999999999999999e",
                BencodeError::Unexpected { at: 1 },
            ),
            (b"5:abc", BencodeError::Truncated { at: 2 }),
            (b"-1:a", BencodeError::Unexpected { at: 0 }),
            (b"9999999999:a", BencodeError::Unexpected { at: 0 }),
            (b"di1ei2ee", BencodeError::KeyNotBytes { at: 1 }),
            (b"d3:keye", BencodeError::Unexpected { at: 6 }),
            (b"i1ei2e", BencodeError::Trailing { at: 3 }),
            (b"x", BencodeError::Unexpected { at: 0 }),
        ] {
            assert_eq!(
                dec(input),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn deep_nesting_and_huge_dictionaries_hit_the_limits() {
        let deep = [vec![b'l'; 10_000], vec![b'e'; 10_000]].concat();
        assert!(matches!(dec(&deep), Err(BencodeError::TooLarge { .. })));
        let mut huge = b"d".to_vec();
        for i in 0..5000 {
            huge.extend_from_slice(format!("{}:k{i}i1e", 1 + i.to_string().len()).as_bytes());
        }
        huge.push(b'e');
        assert!(matches!(dec(&huge), Err(BencodeError::TooLarge { .. })));
    }
}
