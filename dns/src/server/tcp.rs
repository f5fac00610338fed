//! DNS over TCP (RFC 7766): a bounded accept loop and length-prefixed requests answered
//! in order on each connection. Connections are bounded in number (at the limit a new one
//! is closed at once, and the open ones keep their service) and in idle time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ServerConfig;
use super::handler::handle;
use crate::Shared;
use crate::wire::Transport;

/// Accepts and serves connections until `shutdown` is cancelled.
pub async fn serve_tcp(listener: TcpListener, config: ServerConfig, shared: Arc<Shared>, shutdown: CancellationToken) {
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
