//! Fuzz entry points (`cargo fuzz`, see `fuzz/` and `tests/fuzz/run.sh`), one per target.
//!
//! Each function runs the real code on arbitrary bytes, as they would arrive from the network,
//! and asserts invariants that hold for every input: a panic here is a bug (either in the code
//! under test, or an invariant stated wrongly). `tests/fuzz_replay.rs` replays the committed
//! seeds and past crashers through the same functions under `cargo test`.
//!
//! Not a stable API: hidden from the documentation. One module per target; the input helpers
//! they share are here.

mod bencode;
mod digest;
mod dtls;
mod ng;
mod rtp_rtcp;
mod sdp;
mod server_core;
mod sip_message;
mod srtp;
mod user_agent;

pub use bencode::bencode;
pub use digest::digest;
pub use dtls::dtls;
pub use ng::ng;
pub use rtp_rtcp::rtp_rtcp;
pub use sdp::sdp;
pub use server_core::server_core;
pub use sip_message::sip_message;
pub use srtp::srtp;
pub use user_agent::user_agent;

use crate::sip::msg::Limits;

/// A cursor over the fuzz input that never fails: past the end it yields zeros.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
    /// A chunk with a 2-byte length prefix (clamped to what is left).
    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Limits with no size or count cap, for re-parsing what we serialized ourselves (the wire
/// form may be longer than the input: full header names, `": "`, a Content-Length).
const UNLIMITED: Limits = Limits {
    max_message_bytes: usize::MAX,
    max_headers: usize::MAX,
};

/// The simulated wall clock of the digest and server-core targets (Unix seconds).
const NOW_SECS: u64 = 1_700_000_000;
