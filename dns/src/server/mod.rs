//! The sockets and the two transports around one request handler, in the shape of
//! hickory's `server/transport/{udp,tcp}.rs` over its request handler: the transports
//! ([`udp`]: one thread per SO_REUSEPORT socket, batched system calls; [`tcp`]: a bounded
//! accept loop) only move bytes; [`handler`] does the fast path, the slow path and the
//! query metrics.
//!
//! The query path never waits: it loads the current index with one atomic read and
//! answers in place, so a UDP loop needs no task per packet. TCP connections are bounded
//! in number and in idle time, so slow or silent clients cannot hold the server.
//!
//! Why not hickory-server's `Server`: it spawns a task per UDP packet and accepts TCP
//! connections without a bound; both matter for a server that must keep answering
//! under hostile load. hickory-proto stays the codec ([`crate::wire`]).

pub mod handler;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mvdns_runtime::listen;
use socket2::{Protocol, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::rrl::{RateLimitConfig, RateLimiter};
use crate::{Error, Shared};

/// Socket settings (flags / chart values).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `[::]:port` serves both families on one set of sockets ([`listen`]).
    pub listen: SocketAddr,
    /// UDP sockets sharing the port with SO_REUSEPORT, each with its own receive loop.
    pub udp_workers: usize,
    pub max_tcp_connections: usize,
    /// A TCP connection is closed when no complete request arrives within this time.
    pub tcp_idle_timeout: Duration,
    /// Response rate limiting per client subnet over UDP; `None` answers everything.
    pub rate_limit: Option<RateLimitConfig>,
}

/// The bound sockets, so that callers (and tests binding port 0) learn the address
/// before serving starts.
#[derive(Debug)]
pub struct Sockets {
    pub address: SocketAddr,
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
}

/// Binds the UDP sockets and the TCP listener on one port. With port 0 the first socket
/// picks the port and the others join it; when that number is already taken for TCP
/// (the kernel picks UDP and TCP ports independently, and a connection elsewhere on the
/// machine may hold it), it picks again, up to 16 times.
pub fn bind(config: &ServerConfig) -> Result<Sockets, Error> {
    let attempts = if config.listen.port() == 0 { 16 } else { 1 };
    let mut result = bind_once(config);
    for _ in 1..attempts {
        match &result {
            Err(Error::Socket { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse => {
                result = bind_once(config);
            }
            _ => break,
        }
    }
    result
}

fn bind_once(config: &ServerConfig) -> Result<Sockets, Error> {
    let first = match udp_socket(config.listen) {
        Err(Error::Socket { source, .. }) if let Some(fallback) = listen::ipv4_fallback(config.listen, &source) => {
            tracing::warn!(listen = %config.listen, %fallback, error = %source, "no IPv6 here: DNS is served over IPv4 only");
            udp_socket(fallback)?
        }
        other => other?,
    };
    let address = first.local_addr().map_err(|source| Error::Socket {
        address: config.listen,
        source,
    })?;
    let mut udp = vec![first];
    for _ in 1..config.udp_workers.max(1) {
        udp.push(udp_socket(address)?);
    }
    let tcp = tcp_listener(address)?;
    Ok(Sockets { address, udp, tcp })
}

fn udp_socket(address: SocketAddr) -> Result<std::net::UdpSocket, Error> {
    let fail = |source| Error::Socket { address, source };
    let socket = listen::socket_for(address, Type::DGRAM, Protocol::UDP).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    // Bursts of queries queue in the kernel while a loop is busy; 4 MiB holds ~30k.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&address.into()).map_err(fail)?;
    Ok(socket.into())
}

fn tcp_listener(address: SocketAddr) -> Result<TcpListener, Error> {
    let fail = |source| Error::Socket { address, source };
    let socket = listen::socket_for(address, Type::STREAM, Protocol::TCP).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&address.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    TcpListener::from_std(socket.into()).map_err(fail)
}

/// Serves on `sockets` until `shutdown` is cancelled, then returns once every loop ended.
pub async fn serve(sockets: Sockets, config: ServerConfig, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut loops = tokio::task::JoinSet::new();
    let limiter = config.rate_limit.map(|c| Arc::new(Mutex::new(RateLimiter::new(c))));
    let mut udp_loops_ended = Vec::new();
    for (number, socket) in sockets.udp.into_iter().enumerate() {
        let (shared, limiter, shutdown) = (shared.clone(), limiter.clone(), shutdown.clone());
        let (ended, ended_rx) = tokio::sync::oneshot::channel::<()>();
        // A blocking loop on a plain thread (not tokio's blocking pool, which a runtime
        // waits for when dropped); it ends within udp::RECEIVE_TIMEOUT of the shutdown.
        let spawned = std::thread::Builder::new()
            .name(format!("mvdns-udp-{number}"))
            .spawn(move || {
                if let Err(error) = udp::serve_udp(socket, &shared, limiter.as_deref(), &shutdown) {
                    tracing::error!(%error, "UDP loop failed");
                }
                let _ = ended.send(());
            });
        match spawned {
            Ok(_) => udp_loops_ended.push(ended_rx),
            Err(error) => tracing::error!(%error, "cannot start a UDP loop"),
        }
    }
    loops.spawn(tcp::serve_tcp(sockets.tcp, config, shared, shutdown));
    while loops.join_next().await.is_some() {}
    for ended in udp_loops_ended {
        let _ = ended.await;
    }
}
