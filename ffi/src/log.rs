//! Library logs to a C callback: `(user_data, level, target, message)`, from `tracing`.

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::rvoip_result;
use crate::util::{boundary, cstring};

/// Errors.
pub const RVOIP_LOG_ERROR: u32 = 1;
/// Warnings.
pub const RVOIP_LOG_WARN: u32 = 2;
/// Informational messages.
pub const RVOIP_LOG_INFO: u32 = 3;
/// Debugging messages (per SIP message).
pub const RVOIP_LOG_DEBUG: u32 = 4;
/// Tracing (very verbose).
pub const RVOIP_LOG_TRACE: u32 = 5;

/// A log callback: `user_data` as given, `level` (RVOIP_LOG_ERROR..RVOIP_LOG_TRACE), the
/// module that logged (`target`) and the message; both strings valid during the call only.
/// Called on whatever library thread logs, possibly several at once: make it thread-safe.
pub type rvoip_log_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: u32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char),
    user_data: *mut c_void,
}
// SAFETY: the app promised its callback and user_data may be used from any thread.
unsafe impl Send for Sink {}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);
static MAX_LEVEL: AtomicU32 = AtomicU32::new(0);
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn level_num(l: &tracing::Level) -> u32 {
    match *l {
        tracing::Level::ERROR => RVOIP_LOG_ERROR,
        tracing::Level::WARN => RVOIP_LOG_WARN,
        tracing::Level::INFO => RVOIP_LOG_INFO,
        tracing::Level::DEBUG => RVOIP_LOG_DEBUG,
        tracing::Level::TRACE => RVOIP_LOG_TRACE,
    }
}

#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

struct CLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CLayer {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_num(meta.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut m = Message::default();
        event.record(&mut m);
        let target = cstring(meta.target());
        let message = cstring(&format!("{}{}", m.message, m.fields));
        if let Ok(g) = SINK.lock()
            && let Some(s) = g.as_ref()
        {
            // SAFETY: the app's callback with strings valid for the call.
            unsafe {
                (s.cb)(
                    s.user_data,
                    level_num(meta.level()),
                    target.as_ptr(),
                    message.as_ptr(),
                )
            };
        }
    }
}

/// Sends the library's log records up to `max_level` (RVOIP_LOG_ERROR..RVOIP_LOG_TRACE; 0 turns
/// logging off) to `cb(user_data, level, target, message)`; NULL `cb` turns it off. May be
/// called again to change either. The first call installs the library as the process's
/// `tracing` subscriber (if the process has none yet). Errors: INVALID_ARGUMENT (`max_level`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_set_log_callback(
    cb: rvoip_log_cb,
    user_data: *mut c_void,
    max_level: u32,
) -> rvoip_result {
    boundary(|| {
        if max_level > RVOIP_LOG_TRACE {
            return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        }
        INSTALLED.get_or_init(|| {
            let sub = tracing_subscriber::registry().with(CLayer);
            tracing::subscriber::set_global_default(sub).is_ok()
        });
        let mut g = SINK.lock().map_err(|_| rvoip_result::RVOIP_RESULT_PANIC)?;
        *g = cb.map(|cb| Sink { cb, user_data });
        MAX_LEVEL.store(if g.is_some() { max_level } else { 0 }, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    })
}
