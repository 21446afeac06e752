//! The panic boundary and argument helpers every exported function uses.

use std::ffi::{CStr, CString, c_char};

use crate::rvoip_result;

/// Runs `body` inside the panic boundary: a panic becomes `RVOIP_RESULT_PANIC`, an `Err(r)`
/// becomes `r`, `Ok(())` becomes `RVOIP_RESULT_OK`.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), rvoip_result>) -> rvoip_result {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => rvoip_result::RVOIP_RESULT_OK,
        Ok(Err(r)) => r,
        Err(_) => rvoip_result::RVOIP_RESULT_PANIC,
    }
}

/// Like [`boundary`] for functions without a result (`_free`): a panic is swallowed.
pub(crate) fn boundary_void(body: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
}

/// A required UTF-8 string argument. NULL → NULL_ARGUMENT, bad UTF-8 → INVALID_ARGUMENT.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char) -> Result<&'a str, rvoip_result> {
    if p.is_null() {
        return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)
}

/// An optional UTF-8 string argument: NULL or "" → `None`; bad UTF-8 → INVALID_ARGUMENT.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char) -> Result<Option<&'a str>, rvoip_result> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let s = unsafe { str_arg(p) }?;
    Ok((!s.is_empty()).then_some(s))
}

/// A required reference argument.
///
/// # Safety
/// `p` is NULL or points to a valid, live `T`.
pub(crate) unsafe fn ref_arg<'a, T>(p: *const T) -> Result<&'a T, rvoip_result> {
    // SAFETY: the caller guarantees validity when non-NULL.
    unsafe { p.as_ref() }.ok_or(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT)
}

/// Writes an out-parameter (checked for NULL before any work is done by the caller).
///
/// # Safety
/// `p` is non-NULL and points to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) {
    // SAFETY: the caller checked p for NULL; C owns the memory.
    unsafe { p.write(v) }
}

/// A C string from Rust text (interior NULs are dropped, never an error).
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Copies `s` into a fixed C char array, NUL-terminated, truncated on a UTF-8 boundary.
pub(crate) fn copy_into(dst: &mut [c_char], s: &str) {
    let Some(max) = dst.len().checked_sub(1) else {
        return;
    };
    let mut n = s.len().min(max);
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    for (d, b) in dst.iter_mut().zip(s.as_bytes().iter().take(n)) {
        *d = *b as c_char;
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}
