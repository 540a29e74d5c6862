//! Many datagrams to many destinations with one system call: `sendmmsg(2)` on Linux, a
//! `send_to` per datagram elsewhere.
//!
//! The forwarding path sends every publisher packet to each of its players from the one media
//! socket: N datagrams to N addresses. One `sendto` each costs a system call entry and exit per
//! datagram; `sendmmsg` hands the kernel up to [`MAX_BATCH`] of them at once. (GSO does not
//! apply: its segments all go to one destination.) tokio has no batched send, so the call is
//! made through [`UdpSocket::try_io`], which keeps tokio's readiness tracking right.
//!
//! Written against `libc` directly: nix's `sendmmsg` returns its results as `recvmmsg`-style
//! messages whose iteration reads address buffers the kernel never fills on a send, and the only
//! thing needed here is the count the system call returns. Every pointer handed to the kernel
//! points into this function's own stack frame and the caller's slices, and none outlives the
//! call.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Datagrams per system call (the kernel's limit, `UIO_MAXIOV`, is 1024).
pub const MAX_BATCH: usize = 64;

/// Sends batches of datagrams ([`SendBatch::try_send`]). Holds nothing between calls.
#[derive(Debug, Default)]
pub struct SendBatch {
    _private: (),
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch { _private: () }
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
            socket.try_io(tokio::io::Interest::WRITABLE, || sendmmsg(socket, items))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (b, to) = &items[0];
            socket.try_send_to(b, *to).map(|_| 1)
        }
    }
}

/// One `sendmmsg(2)` of `items` (at most [`MAX_BATCH`], not empty).
#[cfg(target_os = "linux")]
fn sendmmsg<B: std::ops::Deref<Target = [u8]>>(socket: &UdpSocket, items: &[(B, SocketAddr)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    debug_assert!(!items.is_empty() && items.len() <= MAX_BATCH);
    let addrs: Vec<socket2::SockAddr> = items.iter().map(|(_, a)| socket2::SockAddr::from(*a)).collect();
    let mut iovs: Vec<libc::iovec> = items
        .iter()
        .map(|(b, _)| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = addrs
        .iter()
        .zip(iovs.iter_mut())
        .map(|(addr, iov)| {
            // SAFETY: `msghdr` and `mmsghdr` are plain C structs for which all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: `headers` holds `headers.len()` initialised entries; each names an address in
    // `addrs` and one iovec in `iovs`, which points into a live slice of `items`; all of them
    // outlive the call, and the kernel only reads them (it writes `msg_len` in `headers`).
    let sent = unsafe {
        libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), headers.len() as libc::c_uint, libc::MSG_DONTWAIT)
    };
    match sent {
        n if n < 0 => Err(io::Error::last_os_error()),
        // Linux returns at least 1 or an error for a non-empty batch; 0 is taken as "try later"
        // so that no caller can spin on it.
        0 => Err(io::ErrorKind::WouldBlock.into()),
        n => Ok(n as usize),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Every datagram of a batch reaches its own destination, whole and once; a batch larger
    /// than [`MAX_BATCH`] sends only its first [`MAX_BATCH`].
    #[tokio::test]
    async fn a_batch_reaches_each_destination() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut receivers = Vec::new();
        for _ in 0..3 {
            receivers.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let items: Vec<(Vec<u8>, SocketAddr)> =
            (0..MAX_BATCH + 6).map(|i| (vec![i as u8; 10 + i], receivers[i % 3].local_addr().unwrap())).collect();
        let mut batch = SendBatch::new();
        let mut sent = 0;
        while sent < MAX_BATCH {
            sender.writable().await.unwrap();
            match batch.try_send(&sender, &items[sent..MAX_BATCH + 6]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(sent, MAX_BATCH, "one call sends at most MAX_BATCH");
        let mut buf = [0u8; 256];
        for (i, (bytes, to)) in items[..MAX_BATCH].iter().enumerate() {
            let r = receivers.iter().find(|r| r.local_addr().unwrap() == *to).unwrap();
            let (n, from) = tokio::time::timeout(std::time::Duration::from_secs(5), r.recv_from(&mut buf))
                .await
                .expect("datagram in time")
                .unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            assert_eq!(&buf[..n], &bytes[..], "datagram {i}");
        }
        for r in &receivers {
            assert!(r.try_recv_from(&mut buf).is_err(), "nothing more than the batch");
        }
    }
}
