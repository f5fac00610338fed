//! The admin port of both binaries: `/livez`, `/readyz` and `/metrics`. Each binary says
//! what ready means and what its metrics are ([`AdminState`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;
use socket2::{Protocol, Type};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::listen;

/// What the admin endpoints report.
pub trait AdminState: Send + Sync + 'static {
    /// `Ok` when ready; otherwise what it is waiting for (the body of the 503).
    fn ready(&self) -> Result<(), &'static str>;
    /// The metrics in the Prometheus text format.
    fn metrics(&self) -> String;
}

/// Binds the admin address and logs it: `[::]` takes both families, and falls back to
/// `0.0.0.0` on a kernel without IPv6 ([`crate::listen`]).
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = match listen_tcp(address) {
        Err(error) if let Some(fallback) = listen::ipv4_fallback(address, &error) => {
            tracing::warn!(%address, %fallback, %error, "no IPv6 here: the admin server listens on IPv4 only");
            listen_tcp(fallback)?
        }
        other => other?,
    };
    tracing::info!(address = %listener.local_addr()?, "admin server listening");
    Ok(listener)
}

fn listen_tcp(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = listen::socket_for(address, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

/// Serves the admin endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve<S: AdminState>(
    listener: TcpListener,
    state: Arc<S>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<S>))
        .route(
            "/metrics",
            get(|State(state): State<Arc<S>>| async move { state.metrics() }),
        )
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn readyz<S: AdminState>(State(state): State<Arc<S>>) -> (StatusCode, &'static str) {
    match state.ready() {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(waiting) => (StatusCode::SERVICE_UNAVAILABLE, waiting),
    }
}

/// A registry in the text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}
