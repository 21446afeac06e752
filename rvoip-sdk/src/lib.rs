//! # rvoip-sdk
//!
//! The rvoip engine: SIP signalling (RFC 3261) as sans-IO protocol cores under a tokio driver.
//!
//! Layers (dependencies point down only):
//! - [`sip::msg`]: our own strict SIP message parser and serializer (RFC 3261 §7, §25).
//! - [`sip::transaction`]: client and server transactions with timers A–K (RFC 3261 §17).
//! - [`auth`]: HTTP digest authentication (RFC 7616, RFC 8760) for the registrar and proxy.
//! - [`server`]: registrar (§10), location service and stateful proxy (§16), sans-IO.
//! - [`driver`]: tokio UDP/TCP transports (§18) that feed the cores, and the `rvoip-server` runtime.
//! - [`sip::dialog`], [`sip::ua`]: dialogs (§12) and the user agent core: registration with
//!   digest auth, INVITE sessions with CANCEL, hold/resume and BYE (§10, §13–§15), sans-IO.
//! - [`sdp`]: RFC 3264 offer/answer for one audio stream; [`media`]: codecs (G.711, G.722,
//!   Opus), RTP/RTCP, jitter buffer, DTMF (RFC 4733), statistics and MOS, audio I/O.
//! - [`api`]: the public SDK — `Endpoint`, `Account`, `Call` and one ordered event stream —
//!   that the C ABI and the UniFFI bindings wrap.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod api;
pub mod auth;
pub mod driver;
#[doc(hidden)]
pub mod fuzzing;
pub mod media;
pub mod sdp;
pub mod server;
pub mod sip;

/// The crate version, e.g. `"0.1.0"`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The crate version as a C string, for the C ABI.
pub const VERSION_CSTR: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(s) => s,
    Err(_) => c"0",
};

/// Tests of this crate that run against the wall clock (media over real sockets, audio devices
/// that run unthrottled on the ALSA null device) take this lock, so a 2-core CI machine runs
/// at most one of them at a time and their media clocks are not starved by each other.
#[cfg(test)]
pub(crate) fn realtime_test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The global allocator of this crate's unit tests: the system allocator, counting the bytes
/// each thread has live, so a test can check a memory accounting against the real heap
/// ([`test_heap::live_bytes`]). Counts requested sizes (no allocator rounding).
#[cfg(test)]
pub(crate) mod test_heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    fn add(delta: isize) {
        // During thread teardown the counter may be gone: nothing to count then.
        let _ = LIVE.try_with(|c| c.set(c.get() + delta));
    }

    struct Counting;

    // SAFETY: every call forwards to `System` with the caller's arguments unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Bytes allocated and not yet freed by the calling thread (frees of blocks that other
    /// threads allocated count against it too).
    pub(crate) fn live_bytes() -> isize {
        LIVE.with(Cell::get)
    }
}
