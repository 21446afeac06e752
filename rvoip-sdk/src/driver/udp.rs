//! The UDP sockets of the SIP event loops (RFC 3261 §18 over UDP): registered for reading
//! only, with batched I/O.
//!
//! - [`SipUdp`] registers its socket with tokio for read readiness only. A tokio
//!   `UdpSocket` also asks for write readiness, and Linux then wakes the event loop each time
//!   a datagram it sent is consumed by its receiver (the socket's send space grows): on the
//!   SIPp call benchmark a fifth of all wake-ups, each a context switch, carried nothing but
//!   that. Sends never wait for readiness: datagrams that find the send buffer full wait in
//!   the socket's backlog, which one task retries every millisecond while it is not empty
//!   (each datagram for up to [`BACKLOG_RETRY`], at most [`MAX_BACKLOG`] of them).
//! - [`RecvBatch`] and [`send_batch`] use Linux `recvmmsg(2)` / `sendmmsg(2)`: one system call
//!   receives every datagram waiting on a socket, and one sends every datagram a turn of the
//!   loop produced, instead of one call per datagram plus one more that finds the socket
//!   empty. Other platforms use one `recv_from` / `send_to` per datagram.
//!
//! A receive that found fewer datagrams than it had room for reports the socket drained, so
//! tokio clears its readiness; the next datagram arms it again (edge-triggered; tokio's
//! readiness tick keeps a datagram that arrives in between from being lost).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;

use crate::sip::keepalive;

/// How long a datagram that found the send buffer full is retried before it is dropped
/// (UDP may lose it anyway; the transaction layer retransmits).
pub(crate) const BACKLOG_RETRY: Duration = Duration::from_millis(200);

/// Most datagrams waiting in one socket's backlog; past it more are dropped, so that a flood
/// of replies cannot pile up memory.
pub(crate) const MAX_BACKLOG: usize = 4096;

/// A non-blocking UDP socket registered with the tokio runtime for read readiness only.
#[derive(Debug)]
pub struct SipUdp {
    fd: AsyncFd<std::net::UdpSocket>,
    backlog: Mutex<Backlog>,
}

/// Datagrams that found the send buffer full, oldest first, each with when it is given up.
#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<(SocketAddr, Bytes, tokio::time::Instant)>,
    /// Whether a task is retrying the queue.
    draining: bool,
}

impl SipUdp {
    /// Takes `sock` (made non-blocking here) into the current tokio runtime, which must be
    /// entered (tokio panics otherwise). Errors: the registration failed.
    pub fn from_std(sock: std::net::UdpSocket) -> io::Result<SipUdp> {
        sock.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns `sock`, whose descriptor stays open and the same until
        // the AsyncFd (and `sock` with it) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(SipUdp {
            fd,
            backlog: Mutex::default(),
        })
    }

    /// Binds `addr` (port 0: any free port) in the current tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<SipUdp> {
        SipUdp::from_std(std::net::UdpSocket::bind(addr)?)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Ready when a datagram may be waiting (readiness is cleared by a receive that finds
    /// the socket drained).
    pub(crate) fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.fd.poll_read_ready(cx).map_ok(|_| ())
    }

    /// Runs the receive `f` on the socket; a `WouldBlock` from it clears the readiness.
    fn try_recv_io<R>(
        &self,
        f: impl FnOnce(&std::net::UdpSocket) -> io::Result<R>,
    ) -> io::Result<R> {
        self.fd.try_io(Interest::READABLE, f)
    }

    /// Waits for one datagram into `buf`: its length and source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| s.get_ref().recv_from(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one datagram without waiting (`WouldBlock`: the send buffer is full).
    pub fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(buf, dest)
    }

    /// Queues a datagram that found the send buffer full: a task on `rt` retries the queue
    /// in order every millisecond until it is empty. Each datagram is given up after
    /// [`BACKLOG_RETRY`]; with [`MAX_BACKLOG`] waiting, this one is dropped at once.
    pub(crate) fn send_later(self: &Arc<Self>, rt: &Handle, dest: SocketAddr, bytes: Bytes) {
        let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        if b.queue.len() >= MAX_BACKLOG {
            tracing::debug!(%dest, "udp send backlog full: datagram dropped");
            return;
        }
        let give_up = tokio::time::Instant::now() + BACKLOG_RETRY;
        b.queue.push_back((dest, bytes, give_up));
        if !b.draining {
            b.draining = true;
            let me = self.clone();
            rt.spawn(async move { me.drain_backlog().await });
        }
    }

    /// The backlog's task: every millisecond, sends what the buffer takes, oldest first;
    /// ends when the queue is empty.
    async fn drain_backlog(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut b = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            while let Some((dest, bytes, give_up)) = b.queue.front() {
                if now >= *give_up {
                    tracing::debug!(dest = %dest, "udp send buffer full too long: datagram dropped");
                } else {
                    match self.try_send_to(bytes, *dest) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => tracing::debug!(dest = %dest, error = %e, "udp send failed"),
                        Ok(_) => {}
                    }
                }
                b.queue.pop_front();
            }
            if b.queue.is_empty() {
                b.draining = false;
                return;
            }
        }
    }

    /// Datagrams waiting in the backlog (tests).
    #[cfg(test)]
    fn backlog_len(&self) -> usize {
        self.backlog.lock().map(|b| b.queue.len()).unwrap_or(0)
    }
}

impl AsFd for SipUdp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// Datagrams received per system call.
pub(crate) const RECV_BATCH: usize = 16;
/// Datagrams sent per system call (the kernel's `UIO_MAXIOV` is 1024).
const SEND_BATCH: usize = 64;

/// Receive buffers for up to [`RECV_BATCH`] datagrams of up to `capacity` bytes each, and
/// what the last [`RecvBatch::recv`] put in them.
pub(crate) struct RecvBatch {
    capacity: usize,
    bufs: Vec<u8>,
    got: Vec<(usize, SocketAddr)>,
}

impl RecvBatch {
    /// Buffers for datagrams of up to `capacity` bytes (a longer one is truncated to
    /// `capacity` bytes, which the caller sizes one byte over its message limit so that an
    /// oversized datagram is seen as such). Pages are touched only as datagrams fill them.
    pub(crate) fn new(capacity: usize) -> RecvBatch {
        let capacity = capacity.max(1);
        RecvBatch {
            capacity,
            bufs: vec![0; capacity * RECV_BATCH],
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Receives what is waiting on `sock`, up to [`RECV_BATCH`] datagrams, without blocking.
    /// Returns how many arrived (0: none was waiting); [`RecvBatch::get`] reads them. When
    /// fewer than the batch arrived the socket is drained and its readiness is cleared, so
    /// the caller waits for the next datagram instead of asking again. Errors other than
    /// "nothing waiting" (ICMP port unreachable reported as `ConnectionRefused`) are returned;
    /// the caller may go on.
    pub(crate) fn recv(&mut self, sock: &SipUdp) -> io::Result<usize> {
        self.got.clear();
        let mut received = 0;
        let res = sock.try_recv_io(|s| {
            received = sys::recv_many(s, &mut self.bufs, self.capacity, &mut self.got)?;
            if received < RECV_BATCH {
                // Drained: let tokio clear the readiness (see the module docs).
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match res {
            Ok(()) => Ok(received),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(received),
            Err(e) => Err(e),
        }
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes and its source.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, source) = *self.got.get(i)?;
        let start = i * self.capacity;
        let data = self.bufs.get(start..start + len.min(self.capacity))?;
        Some((data, source))
    }
}

/// Reads what is waiting on `sock` through `batch`, up to 256 datagrams (so that timers and
/// the other work of a loop are not starved under a flood), and hands each to `f` copied out
/// at its exact size (a message a transaction keeps pins only its own bytes). CRLF
/// keep-alives (RFC 5626 §3.5.1) are dropped here, and STUN Binding keep-alives (RFC 5626
/// §4.4.2) are answered here ([`keepalive::stun_answer`]); neither reaches `f`. Receive errors (ICMP port unreachable
/// surfaces as `ConnectionRefused`) are logged at debug and reading goes on.
pub(crate) fn drain(sock: &SipUdp, batch: &mut RecvBatch, mut f: impl FnMut(Bytes, SocketAddr)) {
    for _ in 0..256 / RECV_BATCH {
        let n = match batch.recv(sock) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        for k in 0..n {
            let Some((datagram, source)) = batch.get(k) else {
                continue;
            };
            if keepalive::is_crlf(datagram) {
                continue;
            }
            if keepalive::is_stun(datagram) {
                // A STUN keep-alive (RFC 5626 §4.4.2): answered here, on the socket it came in.
                if let Some(answer) = keepalive::stun_answer(datagram, source) {
                    if let Err(e) = sock.try_send_to(&answer, source) {
                        tracing::debug!(%source, error = %e, "stun answer not sent");
                    }
                }
                continue;
            }
            f(Bytes::copy_from_slice(datagram), source);
        }
        if n < RECV_BATCH {
            break; // drained
        }
    }
}

/// Sends `batch` (destination, datagram) on `sock` without blocking, in order, as few
/// system calls as it takes. Returns how many leading datagrams were handed to the kernel or
/// failed for good (an unreachable destination, a datagram too long: logged at debug and
/// skipped); the rest, from there on, found the socket buffer full (`WouldBlock`) and are
/// the caller's to queue.
pub(crate) fn send_batch(sock: &SipUdp, batch: &[(SocketAddr, Bytes)]) -> usize {
    let mut done = 0;
    while done < batch.len() {
        let Some(chunk) = batch.get(done..batch.len().min(done + SEND_BATCH)) else {
            break;
        };
        match sys::send_many(sock.fd.get_ref(), chunk) {
            Ok(n) => done += n.max(1).min(chunk.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => {
                // The first datagram of the chunk failed for good: skip it.
                if let Some((dest, _)) = chunk.first() {
                    tracing::debug!(%dest, error = %e, "udp send failed");
                }
                done += 1;
            }
        }
    }
    done
}

#[cfg(target_os = "linux")]
mod sys {
    //! `recvmmsg(2)` / `sendmmsg(2)` through libc.

    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use bytes::Bytes;
    use socket2::SockAddr;

    use super::{RECV_BATCH, SEND_BATCH};

    /// One `recvmmsg` into `bufs` (`RECV_BATCH` slots of `capacity` bytes): pushes (length,
    /// source) of each datagram to `got` and returns how many there were.
    pub(super) fn recv_many(
        sock: &UdpSocket,
        bufs: &mut [u8],
        capacity: usize,
        got: &mut Vec<(usize, SocketAddr)>,
    ) -> io::Result<usize> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid value.
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut slots = bufs.chunks_exact_mut(capacity);
        let mut n = 0;
        for ((iov, msg), name) in iovs.iter_mut().zip(msgs.iter_mut()).zip(names.iter_mut()) {
            let Some(slot) = slots.next() else { break };
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            msg.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            n += 1;
        }
        // SAFETY: the first `n` headers point at live, writable buffers and address storage
        // of the lengths given, all of which outlive the call; the fd is the socket's own.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let r = (r as usize).min(n);
        for (msg, name) in msgs.iter().zip(names.iter()).take(r) {
            // A datagram from an address family we cannot name is dropped here (never on UDP
            // sockets bound to IPv4 or IPv6).
            let Some(source) = to_socket_addr(name) else {
                continue;
            };
            got.push((msg.msg_len as usize, source));
        }
        Ok(r)
    }

    fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: ss_family says the storage holds a sockaddr_in, which it is large
                // and aligned enough for.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// One `sendmmsg` of `chunk` (at most `SEND_BATCH` datagrams): how many the kernel took.
    pub(super) fn send_many(sock: &UdpSocket, chunk: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
        let chunk = chunk.get(..chunk.len().min(SEND_BATCH)).unwrap_or(chunk);
        let names: Vec<SockAddr> = chunk.iter().map(|(d, _)| SockAddr::from(*d)).collect();
        // One iovec and one header per datagram, built in place: zeroing a whole
        // SEND_BATCH-long array for the usual one or two datagrams cost more than the copy.
        let iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, bytes)| libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter()
            .zip(names.iter())
            .map(|(iov, name)| {
                // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
                let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
                msg.msg_hdr.msg_name = name.as_ptr() as *mut libc::c_void;
                msg.msg_hdr.msg_namelen = name.len();
                msg.msg_hdr.msg_iov = (iov as *const libc::iovec).cast_mut();
                msg.msg_hdr.msg_iovlen = 1;
                msg
            })
            .collect();
        let n = msgs.len();
        // SAFETY: the `n` headers point at the datagrams' bytes, iovecs and addresses, which
        // the kernel only reads and which outlive the call; the fd is the socket's own.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as _,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! One `recv_from` / `send_to` per datagram.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use bytes::Bytes;

    use super::RECV_BATCH;

    pub(super) fn recv_many(
        sock: &UdpSocket,
        bufs: &mut [u8],
        capacity: usize,
        got: &mut Vec<(usize, SocketAddr)>,
    ) -> io::Result<usize> {
        let mut n = 0;
        for slot in bufs.chunks_exact_mut(capacity).take(RECV_BATCH) {
            match sock.recv_from(slot) {
                Ok((len, source)) => got.push((len, source)),
                Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        Ok(n)
    }

    pub(super) fn send_many(sock: &UdpSocket, chunk: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
        let (dest, bytes) = chunk.first().ok_or(io::ErrorKind::InvalidInput)?;
        sock.send_to(bytes, *dest).map(|_| 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of datagrams to two peers arrives whole and in order, and a receive batch
    /// reads them back with their sources; an empty socket reads 0.
    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = SipUdp::bind(any).unwrap();
        let b = SipUdp::bind(any).unwrap();
        let c = SipUdp::bind(any).unwrap();
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        let batch: Vec<(SocketAddr, Bytes)> = (0..40)
            .map(|i| {
                let dest = if i % 2 == 0 { to_b } else { to_c };
                (dest, Bytes::from(format!("message {i}")))
            })
            .collect();
        assert_eq!(send_batch(&a, &batch), 40);
        let mut rb = RecvBatch::new(100);
        let mut seen = Vec::new();
        while seen.len() < 20 {
            std::future::poll_fn(|cx| b.poll_recv_ready(cx))
                .await
                .unwrap();
            let n = rb.recv(&b).unwrap();
            for i in 0..n {
                let (data, source) = rb.get(i).unwrap();
                assert_eq!(source, a.local_addr().unwrap());
                seen.push(String::from_utf8(data.to_vec()).unwrap());
            }
        }
        let want: Vec<String> = (0..40).step_by(2).map(|i| format!("message {i}")).collect();
        assert_eq!(seen, want);
        assert_eq!(rb.recv(&b).unwrap(), 0, "drained");
        // A datagram longer than a slot is cut to the slot's size (the caller sees it as over
        // its limit).
        let mut small = RecvBatch::new(4);
        std::future::poll_fn(|cx| c.poll_recv_ready(cx))
            .await
            .unwrap();
        assert!(small.recv(&c).unwrap() > 0);
        assert_eq!(small.get(0).unwrap().0, b"mess");
        // One at a time, as the SDK endpoint reads.
        let d = SipUdp::bind(any).unwrap();
        assert_eq!(a.try_send_to(b"one", d.local_addr().unwrap()).unwrap(), 3);
        let mut buf = [0u8; 16];
        let (n, from) = d.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"one"[..], a.local_addr().unwrap()));
    }

    /// Datagrams queued on the backlog go out in order and the queue empties; past
    /// MAX_BACKLOG the queue takes no more.
    #[tokio::test]
    async fn the_backlog_sends_in_order_and_is_bounded() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = Arc::new(SipUdp::bind(any).unwrap());
        let b = SipUdp::bind(any).unwrap();
        let to_b = b.local_addr().unwrap();
        let rt = Handle::current();
        for i in 0..5 {
            a.send_later(&rt, to_b, Bytes::from(format!("late {i}")));
        }
        let mut buf = [0u8; 32];
        for i in 0..5 {
            let (n, _) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("late {i}").as_bytes());
        }
        for _ in 0..100 {
            if a.backlog_len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(a.backlog_len(), 0);
        // Bounded: fill it without a runtime turn in between (the task has not run yet).
        for _ in 0..MAX_BACKLOG + 10 {
            a.send_later(&rt, to_b, Bytes::from_static(b"x"));
        }
        assert_eq!(a.backlog_len(), MAX_BACKLOG);
    }
}
