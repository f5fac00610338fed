//! The admin port of both binaries: `/livez`, `/readyz` and `/metrics`. Each binary says
//! what ready means and what its metrics are ([`AdminState`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin endpoints report.
pub trait AdminState: Send + Sync + 'static {
    /// `Ok` when ready; otherwise what it is waiting for (the body of the 503).
    fn ready(&self) -> Result<(), &'static str>;
    /// The metrics in the Prometheus text format.
    fn metrics(&self) -> String;
}

/// Binds the admin address and logs it.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "admin server listening");
    Ok(listener)
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
