//! A level-triggered epoll (std has none and mio is edge-triggered only, which costs one
//! `EAGAIN` read per packet at 50 packets/s per socket), CPU pinning and timer slack.

use std::io;
use std::os::fd::RawFd;

const EPOLL_CLOEXEC: i32 = 0o2000000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLLIN: u32 = 0x001;

/// `struct epoll_event` (packed on x86-64).
#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy, Default)]
pub struct Event {
    events: u32,
    data: u64,
}

impl Event {
    pub fn token(&self) -> u64 {
        self.data
    }
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

const PR_SET_TIMERSLACK: i32 = 29;

unsafe extern "C" {
    fn epoll_pwait2(
        epfd: i32,
        events: *mut Event,
        maxevents: i32,
        timeout: *const Timespec,
        sigmask: *const u8,
    ) -> i32;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn sched_setaffinity(pid: i32, cpusetsize: usize, mask: *const u64) -> i32;
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut Event) -> i32;
    fn epoll_wait(epfd: i32, events: *mut Event, maxevents: i32, timeout: i32) -> i32;
    fn close(fd: i32) -> i32;
}

pub struct Epoll(i32);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointer arguments.
        let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    /// Watches `fd` for input (level-triggered), reported with `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = Event {
            events: EPOLLIN,
            data: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { epoll_ctl(self.0, EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` for readiness; the number of events filled in.
    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> usize {
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` has room for `max` entries.
        let n = unsafe { epoll_wait(self.0, events.as_mut_ptr(), max, timeout_ms) };
        usize::try_from(n).unwrap_or(0) // -1: EINTR and the like, nothing ready
    }

    /// Waits up to `timeout_ns` (epoll_pwait2, Linux ≥ 5.11: ns, not ms).
    pub fn wait_ns(&self, events: &mut [Event], timeout_ns: u64) -> usize {
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        let ts = Timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as i64,
            tv_nsec: (timeout_ns % 1_000_000_000) as i64,
        };
        // SAFETY: `events` has room for `max` entries; `ts` lives across the call; no mask.
        let n = unsafe { epoll_pwait2(self.0, events.as_mut_ptr(), max, &ts, std::ptr::null()) };
        usize::try_from(n).unwrap_or(0)
    }
}

/// Pins the calling thread to `cpu`. Errors: the kernel refused (no such CPU, cpuset).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    pin_tid_to_cpu(0, cpu)
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
pub fn pin_tid_to_cpu(tid: i32, cpu: usize) -> io::Result<()> {
    let mut mask = [0u64; 16]; // cpu_set_t: 1024 bits
    *mask.get_mut(cpu / 64).ok_or(io::ErrorKind::InvalidInput)? |= 1 << (cpu % 64);
    // SAFETY: `mask` is a cpu_set_t-sized bitmask that lives across the call.
    if unsafe { sched_setaffinity(tid, std::mem::size_of_val(&mask), mask.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's timer slack (default 50 µs), so short sleeps end on time.
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
    unsafe { prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0) };
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { close(self.0) };
    }
}
