//! A small rtpengine ng client for the benches (relay_load, transcode_load): a cookie, a space
//! and a bencoded dictionary over UDP, the reply matched by its cookie.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::LOCALHOST;

/// A bencode value to send: a string, a list or a dictionary (keys in the order given; rtpengine
/// takes them in any order, as Kamailio sends them).
pub enum Val {
    S(String),
    L(Vec<Val>),
    D(Vec<(&'static str, Val)>),
}

/// A string value.
pub fn s(v: impl Into<String>) -> Val {
    Val::S(v.into())
}

fn put(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Appends the bencoding of `v` to `out`.
pub fn benc(out: &mut Vec<u8>, v: &Val) {
    match v {
        Val::S(s) => put(out, s.as_bytes()),
        Val::L(l) => {
            out.push(b'l');
            l.iter().for_each(|v| benc(out, v));
            out.push(b'e');
        }
        Val::D(d) => {
            out.push(b'd');
            for (k, v) in d {
                put(out, k.as_bytes());
                benc(out, v);
            }
            out.push(b'e');
        }
    }
}

/// The string value of top-level key `key` of a bencoded dictionary (enough for ng replies).
pub fn benc_get(b: &[u8], key: &str) -> Option<String> {
    fn string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
        let colon = i + b.get(i..)?.iter().position(|&c| c == b':')?;
        let n: usize = std::str::from_utf8(b.get(i..colon)?).ok()?.parse().ok()?;
        Some((b.get(colon + 1..colon + 1 + n)?, colon + 1 + n))
    }
    fn skip(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'i' => Some(i + b.get(i..)?.iter().position(|&c| c == b'e')? + 1),
            b'l' | b'd' => {
                let mut j = i + 1;
                while *b.get(j)? != b'e' {
                    j = skip(b, j)?;
                }
                Some(j + 1)
            }
            _ => string(b, i).map(|(_, j)| j),
        }
    }
    if *b.first()? != b'd' {
        return None;
    }
    let mut i = 1;
    while *b.get(i)? != b'e' {
        let (k, j) = string(b, i)?;
        if k == key.as_bytes() {
            return string(b, j).map(|(v, _)| String::from_utf8_lossy(v).into_owned());
        }
        i = skip(b, j)?;
    }
    None
}

/// An ng control connection.
pub struct Ng {
    sock: UdpSocket,
    to: SocketAddr,
    n: u64,
}

impl Ng {
    /// A client of the ng socket at `to`.
    pub fn new(to: SocketAddr) -> Ng {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("ng socket");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        Ng { sock, to, n: 0 }
    }

    /// Sends one command (again after 2 s without the reply, three times in all) and returns
    /// the reply's bencoded dictionary. Panics when the relay does not answer.
    pub fn cmd(&mut self, items: Vec<(&'static str, Val)>) -> Vec<u8> {
        self.n += 1;
        let cookie = format!("{}_{}", std::process::id(), self.n);
        let mut msg = format!("{cookie} ").into_bytes();
        benc(&mut msg, &Val::D(items));
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            self.sock.send_to(&msg, self.to).expect("ng send");
            // Until the read times out (then send again): the reply with our cookie.
            while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let r = &buf[..n];
                if let Some(sp) = r.iter().position(|&c| c == b' ')
                    && &r[..sp] == cookie.as_bytes()
                {
                    return r[sp + 1..].to_vec();
                }
            }
        }
        panic!("the relay at {} does not answer (ng)", self.to);
    }
}
