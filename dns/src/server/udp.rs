//! The UDP receive loops: one OS thread per SO_REUSEPORT socket, moving queries in
//! batches with `recvmmsg(2)` and answers with `sendmmsg(2)`.
//!
//! Why batches: on these machines the kernel's UDP work (about 5 us per query) is most of a
//! query's cost once the answer is pre-encoded ([`crate::fast`]); one system call per
//! batch instead of two per query gained 11-24% in a probe of both ways, and is what lets mvdns
//! pass Knot DNS per core (BENCHMARKS.md). `MSG_WAITFORONE` blocks for the first datagram
//! only and then takes whatever else is queued, so a lone query is answered at once and a
//! burst is answered 32 at a time; nothing waits for a batch to fill.
//!
//! Why a thread, not a tokio task: the loop never awaits anything (the index is one atomic
//! load), so a blocking socket with a receive timeout is the simplest correct loop, and it
//! checks the shutdown token at least every [`RECEIVE_TIMEOUT`].
//!
//! The system calls are in [`crate::mmsg`], the workspace's one module with unsafe code.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio_util::sync::CancellationToken;

use super::handler::handle;
use crate::Shared;
use crate::mmsg::{self, BATCH, Received};
use crate::rrl::{RateLimiter, Verdict, truncate_to_question};
use crate::wire::{MAX_UDP_PAYLOAD, Transport};

/// How long a receive blocks before the loop looks at the shutdown token again.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_millis(100);

/// Serves `socket` until `shutdown` is cancelled. Blocking: run it on its own thread.
pub fn serve_udp(
    socket: UdpSocket,
    shared: &Shared,
    limiter: Option<&Mutex<RateLimiter>>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    let mut received = Received::default();
    let mut answers: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD)))
        .collect();
    let mut peers = [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH];
    let mut rng = SmallRng::from_os_rng();

    while !shutdown.is_cancelled() {
        match received.receive(socket.as_fd()) {
            Ok(_) => {}
            // The receive timeout: look at the shutdown token, then wait again.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => {
                // ICMP errors from earlier sends surface here on Linux; keep going.
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        }
        let mut replies = 0;
        for (request, peer) in received.datagrams() {
            let Some(peer) = peer else { continue };
            let out = &mut answers[replies];
            if handle(shared, request, Transport::Udp, peer, &mut rng, out) && rate_limit(shared, limiter, peer, out) {
                peers[replies] = peer;
                replies += 1;
            }
        }
        send_all(&socket, &answers[..replies], &peers[..replies]);
    }
    Ok(())
}

/// Applies response rate limiting to the answer in `out`; false means drop it.
fn rate_limit(shared: &Shared, limiter: Option<&Mutex<RateLimiter>>, peer: SocketAddr, out: &mut Vec<u8>) -> bool {
    let verdict = limiter.map_or(Verdict::Send, |limiter| {
        limiter.lock().map_or(Verdict::Send, |mut l| l.check(peer.ip()))
    });
    match verdict {
        Verdict::Send => true,
        Verdict::Slip => {
            truncate_to_question(out);
            shared.metrics.truncated.inc();
            shared.metrics.count_dropped("rate_limit_slipped");
            true
        }
        Verdict::Drop => {
            shared.metrics.count_dropped("rate_limit");
            false
        }
    }
}

/// Sends `answers[i]` to `peers[i]` in as few system calls as the kernel allows. A
/// datagram the kernel refuses (say, an unreachable peer) is skipped, like a lost UDP answer.
fn send_all(socket: &UdpSocket, answers: &[Vec<u8>], peers: &[SocketAddr]) {
    let mut from = 0;
    while from < answers.len() {
        match mmsg::send(socket.as_fd(), &answers[from..], &peers[from..]) {
            Ok(sent) if sent > 0 => from += sent,
            Ok(_) => from += 1,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::debug!(%error, peer = %peers[from], "UDP send failed");
                from += 1;
            }
        }
    }
}
