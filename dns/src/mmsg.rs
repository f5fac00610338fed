//! `recvmmsg(2)` and `sendmmsg(2)` behind a safe interface: the one module of the
//! workspace allowed unsafe code (the workspace denies it everywhere else).
//!
//! Why: with answers pre-encoded ([`crate::fast`]) the kernel's UDP work is most of a
//! query's cost; one system call per batch instead of two per query is the measured
//! difference between matching Knot DNS per core and passing it (BENCHMARKS.md). Neither
//! std nor socket2 offers these calls, and nix's wrapper reads uninitialised addresses
//! when asked how many datagrams `sendmmsg` sent.
//!
//! Every pointer handed to the kernel points into a value that outlives the call: the
//! batch's own arrays, or the caller's slices borrowed for the call.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use libc::{c_uint, c_void, iovec, mmsghdr, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t};

/// Datagrams moved per system call at most.
pub const BATCH: usize = 32;
/// The largest datagram read: nothing larger is a sensible query; longer ones are cut and
/// then fail to decode (FORMERR).
pub const DATAGRAM: usize = 4096;

/// Buffers for one batch of received datagrams, allocated once per loop.
pub struct Received {
    buffers: Box<[[u8; DATAGRAM]; BATCH]>,
    lengths: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    count: usize,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for Received {
    fn default() -> Self {
        Self {
            buffers: Box::new([[0; DATAGRAM]; BATCH]),
            lengths: [0; BATCH],
            peers: [None; BATCH],
            count: 0,
        }
    }
}

impl Received {
    /// Blocks until at least one datagram arrives (or the socket's receive timeout
    /// passes: `WouldBlock`), then takes up to [`BATCH`] that are already queued
    /// (`MSG_WAITFORONE`). Returns how many it took.
    pub fn receive(&mut self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        self.count = 0;
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut addresses: [sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iovecs: [iovec; BATCH] = std::array::from_fn(|_| iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        });
        // SAFETY: as above.
        let mut headers: [mmsghdr; BATCH] = unsafe { zeroed() };
        for (((header, iov), address), buffer) in headers
            .iter_mut()
            .zip(&mut iovecs)
            .zip(&mut addresses)
            .zip(self.buffers.iter_mut())
        {
            iov.iov_base = buffer.as_mut_ptr().cast::<c_void>();
            iov.iov_len = buffer.len();
            header.msg_hdr.msg_name = ptr::from_mut(address).cast::<c_void>();
            header.msg_hdr.msg_namelen = socklen(size_of::<sockaddr_storage>());
            header.msg_hdr.msg_iov = ptr::from_mut(iov);
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `headers` holds BATCH entries, each pointing at one of our buffers, its
        // iovec and an address slot, all alive and exclusively borrowed for the call.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as c_uint,
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
        for (i, header) in headers.iter().enumerate().take(received) {
            self.lengths[i] = (header.msg_len as usize).min(DATAGRAM);
            self.peers[i] = socket_addr(&addresses[i], header.msg_hdr.msg_namelen);
        }
        self.count = received;
        Ok(received)
    }

    /// The datagrams of the last [`Received::receive`], with their senders (`None` when
    /// the kernel gave an address family other than IPv4/IPv6).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        (0..self.count).map(|i| (&self.buffers[i][..self.lengths[i]], self.peers[i]))
    }
}

/// Sends `datagrams[i]` to `peers[i]` with one `sendmmsg`, up to [`BATCH`] of them.
/// Returns how many the kernel took: fewer than asked when one failed (the error of that
/// one is reported by the next call that starts with it).
pub fn send<D: AsRef<[u8]>>(socket: BorrowedFd<'_>, datagrams: &[D], peers: &[SocketAddr]) -> io::Result<usize> {
    let count = datagrams.len().min(peers.len()).min(BATCH);
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut addresses: [sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iovecs: [iovec; BATCH] = std::array::from_fn(|_| iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    });
    // SAFETY: as above.
    let mut headers: [mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, (bytes, peer)) in datagrams.iter().zip(peers).take(count).enumerate() {
        let bytes = bytes.as_ref();
        // The kernel only reads through iov_base on send; the cast to *mut is what the
        // C struct's field type demands.
        iovecs[i].iov_base = bytes.as_ptr().cast_mut().cast::<c_void>();
        iovecs[i].iov_len = bytes.len();
        let length = write_socket_addr(*peer, &mut addresses[i]);
        headers[i].msg_hdr.msg_name = ptr::from_mut(&mut addresses[i]).cast::<c_void>();
        headers[i].msg_hdr.msg_namelen = length;
        headers[i].msg_hdr.msg_iov = ptr::from_mut(&mut iovecs[i]);
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers point at live iovecs over the caller's borrowed
    // bytes and at initialised addresses; the kernel reads `count` of them.
    let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), count as c_uint, 0) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

fn socklen(size: usize) -> socklen_t {
    socklen_t::try_from(size).unwrap_or(socklen_t::MAX)
}

/// Reads an IPv4 or IPv6 socket address the kernel wrote into `storage`.
fn socket_addr(storage: &sockaddr_storage, length: socklen_t) -> Option<SocketAddr> {
    let length = length as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if length >= size_of::<sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // and aligned enough for.
            let v4 = unsafe { &*ptr::from_ref(storage).cast::<sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if length >= size_of::<sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*ptr::from_ref(storage).cast::<sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `address` into `storage` as the kernel expects it; returns its length.
fn write_socket_addr(address: SocketAddr, storage: &mut sockaddr_storage) -> socklen_t {
    match address {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let out = unsafe { &mut *ptr::from_mut(storage).cast::<sockaddr_in>() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            socklen(size_of::<sockaddr_in>())
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let out = unsafe { &mut *ptr::from_mut(storage).cast::<sockaddr_in6>() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_addr.s6_addr = v6.ip().octets();
            out.sin6_scope_id = v6.scope_id();
            socklen(size_of::<sockaddr_in6>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn addresses_round_trip_through_the_c_structs() {
        for address in ["192.0.2.7:5353", "[2001:db8::1]:53", "[fe80::1%3]:1234"] {
            let address: SocketAddr = address.parse().expect("address");
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut storage: sockaddr_storage = unsafe { zeroed() };
            let length = write_socket_addr(address, &mut storage);
            assert_eq!(socket_addr(&storage, length), Some(address));
        }
        // SAFETY: as above.
        let unknown: sockaddr_storage = unsafe { zeroed() };
        assert_eq!(socket_addr(&unknown, socklen(size_of::<sockaddr_storage>())), None);
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let to_server = server.local_addr().expect("address");
        let mut sent = 0;
        while sent < messages.len() {
            let peers = vec![to_server; messages.len() - sent];
            sent += send(client.as_fd(), &messages[sent..], &peers).expect("send");
        }
        let mut received = Received::default();
        let mut got = Vec::new();
        while got.len() < messages.len() {
            let n = received.receive(server.as_fd()).expect("receive");
            assert!((1..=BATCH).contains(&n));
            for (bytes, peer) in received.datagrams() {
                assert_eq!(peer, Some(client.local_addr().expect("address")));
                got.push(bytes.to_vec());
            }
        }
        assert_eq!(got, messages);
    }
}
