//! The sockets: UDP receive loops ([`crate::udp`], one thread per SO_REUSEPORT socket,
//! batched system calls) and a bounded TCP accept loop, around [`handle`].
//!
//! The query path never waits: it loads the current index with one atomic read and
//! answers in place, so a UDP loop needs no task per packet. TCP connections are bounded
//! in number and in idle time, so slow or silent clients cannot hold the server.
//!
//! Why not hickory-server's `Server`: it spawns a task per UDP packet and accepts TCP
//! connections without a bound; both matter for a server that must keep answering
//! under hostile load. hickory-proto stays the codec ([`crate::wire`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use hickory_proto::op::ResponseCode;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::fast::answer_fast;
use crate::rrl::{RateLimitConfig, RateLimiter};
use crate::udp::serve_udp;
use crate::wire::{Served, Transport, respond};
use crate::{Error, Shared};

/// Socket settings (flags / chart values).
#[derive(Clone, Debug)]
pub struct ServerConfig {
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
    let first = udp_socket(config.listen)?;
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
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    // Bursts of queries queue in the kernel while a loop is busy; 4 MiB holds ~30k.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&address.into()).map_err(fail)?;
    Ok(socket.into())
}

fn tcp_listener(address: SocketAddr) -> Result<TcpListener, Error> {
    let fail = |source| Error::Socket { address, source };
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
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
                if let Err(error) = serve_udp(socket, &shared, limiter.as_deref(), &shutdown) {
                    tracing::error!(%error, "UDP loop failed");
                }
                let _ = ended.send(());
            });
        match spawned {
            Ok(_) => udp_loops_ended.push(ended_rx),
            Err(error) => tracing::error!(%error, "cannot start a UDP loop"),
        }
    }
    loops.spawn(tcp_loop(sockets.tcp, config, shared, shutdown));
    while loops.join_next().await.is_some() {}
    for ended in udp_loops_ended {
        let _ = ended.await;
    }
}

async fn tcp_loop(listener: TcpListener, config: ServerConfig, shared: Arc<Shared>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(config.max_tcp_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "TCP accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        // At the limit, close the new connection at once: the client retries elsewhere,
        // and the connections already open keep their service.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.count_dropped("tcp_connection_limit");
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let idle_timeout = config.tcp_idle_timeout;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            tokio::select! {
                result = tcp_connection(stream, peer, &shared, idle_timeout) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "TCP connection ended");
                    }
                }
                () = shutdown.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// Length-prefixed requests on one connection (RFC 7766), answered in order, until the
/// client closes it or sends nothing complete for `idle_timeout`.
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    idle_timeout: Duration,
) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    let mut rng = SmallRng::from_os_rng();
    loop {
        let read = async {
            let len = stream.read_u16().await?;
            buffer.resize(usize::from(len), 0);
            stream.read_exact(&mut buffer).await
        };
        match tokio::time::timeout(idle_timeout, read).await {
            Ok(Ok(_)) => {}
            // A clean close between requests.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                shared.metrics.count_dropped("tcp_idle_timeout");
                return Ok(());
            }
        }
        if !handle(shared, &buffer, Transport::Tcp, peer, &mut rng, &mut out) {
            continue;
        }
        let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&out);
        tokio::time::timeout(idle_timeout, stream.write_all(&framed))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client does not read"))??;
    }
}

/// One request: the fast path ([`answer_fast`]) when it can, else [`respond`]; the
/// response goes into `out`. Returns whether there is something to send.
pub(crate) fn handle(
    shared: &Shared,
    packet: &[u8],
    transport: Transport,
    peer: SocketAddr,
    rng: &mut SmallRng,
    out: &mut Vec<u8>,
) -> bool {
    let started = Instant::now();
    let index = shared.index.load();
    let synced = shared.synced.load(Ordering::Acquire);
    let transport_label = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let metrics = &shared.metrics;
    if synced && let Some(record_type) = answer_fast(packet, transport, &index, rng, out) {
        metrics.count_query(record_type, ResponseCode::NoError, transport_label, started.elapsed());
        return true;
    }
    let client_zones = shared.client_zones.load();
    let served = Served {
        index: &index,
        zones: &shared.zones,
        client_zones: &client_zones,
        synced,
    };
    let Some(response) = respond(packet, transport, peer.ip(), served, rng) else {
        metrics.count_dropped("not_a_query");
        return false;
    };
    if response.truncated {
        metrics.truncated.inc();
    }
    *out = response.bytes;
    let query_type = response.query_type;
    match query_type {
        Some(record_type) => metrics.count_query(record_type, response.rcode, transport_label, started.elapsed()),
        None => metrics.count_undecoded(response.rcode, transport_label, started.elapsed()),
    }
    true
}
