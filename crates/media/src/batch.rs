//! Many datagrams to many destinations with one system call: `sendmmsg(2)` on Linux (through
//! `nix`), a `send_to` per datagram elsewhere.
//!
//! The forwarding path sends every publisher packet to each of its players from the one media
//! socket: N datagrams to N addresses. One `sendto` each costs a system call entry and exit per
//! datagram; `sendmmsg` hands the kernel up to [`MAX_BATCH`] of them at once. (GSO does not
//! apply: its segments all go to one destination.) tokio has no batched send, so the call is
//! made through [`UdpSocket::try_io`], which keeps tokio's readiness tracking right.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Datagrams per system call (the kernel's limit, `UIO_MAXIOV`, is 1024).
pub const MAX_BATCH: usize = 64;

/// Reusable buffers for [`SendBatch::try_send`].
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    #[cfg(target_os = "linux")]
    addrs: Vec<Option<nix::sys::socket::SockaddrStorage>>,
}

// SAFETY: `MultiHeaders` is not `Send` only because its `mmsghdr`s hold raw pointers: to its own
// boxed address and control buffers (owned, moving with it) and to the iovecs of the last call
// (stale once `sendmmsg` returned, never read again: every call rewrites the headers it passes
// to the kernel). Nothing in it is tied to the thread that made it, and `SendBatch` is not `Sync`.
// The media task needs it across `.await`s on a multi-threaded runtime.
#[cfg(target_os = "linux")]
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch {
            #[cfg(target_os = "linux")]
            headers: nix::sys::socket::MultiHeaders::preallocate(MAX_BATCH, None),
            #[cfg(target_os = "linux")]
            addrs: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// Sends the first datagrams of `items` (at most [`MAX_BATCH`]) without waiting; returns how
    /// many the kernel took (at least one), or the error of the first one (`WouldBlock` when the
    /// socket buffer is full: nothing was sent).
    pub fn try_send<B: std::ops::Deref<Target = [u8]>>(
        &mut self,
        socket: &UdpSocket,
        items: &[(B, SocketAddr)],
    ) -> io::Result<usize> {
        let items = &items[..items.len().min(MAX_BATCH)];
        if items.is_empty() {
            return Ok(0);
        }
        #[cfg(target_os = "linux")]
        {
            use std::io::IoSlice;
            use std::os::fd::AsRawFd;

            use nix::sys::socket::{sendmmsg, MsgFlags, SockaddrStorage};

            self.addrs.clear();
            self.addrs.extend(items.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))));
            let slices: Vec<[IoSlice<'_>; 1]> = items.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
            let (headers, addrs) = (&mut self.headers, &self.addrs);
            socket.try_io(tokio::io::Interest::WRITABLE, || {
                let fd = socket.as_raw_fd();
                match sendmmsg(fd, headers, &slices, addrs, [], MsgFlags::empty()) {
                    Ok(sent) => Ok(sent.count()),
                    Err(e) => Err(io::Error::from(e)),
                }
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (b, to) = &items[0];
            socket.try_send_to(b, *to).map(|_| 1)
        }
    }
}
