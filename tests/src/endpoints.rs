//! Real endpoints on loopback for health-check tests: an HTTP(S) server whose answer a
//! test changes while it runs, and a server that accepts and never answers.
//! Each binds its own 127.0.0.x address, so record sets can list them as A values.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the endpoint does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers with this status code and body.
    Respond(u16, String),
    /// Accepts the connection, reads the request, never answers.
    Silent,
    /// Refuses connections (the listener is closed).
    Down,
}

/// A loopback server a test controls. Stops when dropped.
#[allow(missing_debug_implementations)] // TlsAcceptor is not Debug
pub struct Endpoint {
    pub address: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    task: Option<JoinHandle<()>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Endpoint {
    /// An HTTP server on `ip` (e.g. 127.0.0.2), or HTTPS with a self-signed certificate.
    pub async fn start(ip: &str, behaviour: Behaviour, https: bool) -> Result<Self> {
        let tls = if https { Some(self_signed_acceptor()?) } else { None };
        let listener = TcpListener::bind((ip.parse::<IpAddr>()?, 0)).await?;
        let address = listener.local_addr()?;
        let mut endpoint = Self {
            address,
            behaviour: Arc::new(Mutex::new(behaviour)),
            task: None,
            tls,
        };
        endpoint.task = Some(endpoint.serve(listener));
        Ok(endpoint)
    }

    pub fn ip(&self) -> String {
        self.address.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Changes the behaviour; `Down` closes the listener, anything else reopens it.
    pub async fn set(&mut self, behaviour: Behaviour) -> Result<()> {
        let down = behaviour == Behaviour::Down;
        *self.behaviour.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = behaviour;
        match (down, self.task.is_some()) {
            (true, true) => {
                if let Some(task) = self.task.take() {
                    task.abort();
                    let _ = task.await;
                }
            }
            (false, false) => {
                let listener = TcpListener::bind(self.address).await?;
                self.task = Some(self.serve(listener));
            }
            _ => {}
        }
        Ok(())
    }

    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let (behaviour, tls) = (self.behaviour.clone(), self.tls.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let current = behaviour.lock().map(|b| b.clone()).unwrap_or(Behaviour::Silent);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                answer(stream, current).await;
                            }
                        }
                        None => answer(stream, current).await,
                    }
                });
            }
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, behaviour: Behaviour) {
    let mut request = [0u8; 2048];
    let _ = stream.read(&mut request).await;
    match behaviour {
        Behaviour::Respond(code, body) => {
            let response = format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        // Hold the connection open well past any probe timeout.
        Behaviour::Silent => tokio::time::sleep(std::time::Duration::from_secs(120)).await,
        Behaviour::Down => {}
    }
}

fn self_signed_acceptor() -> Result<tokio_rustls::TlsAcceptor> {
    let certified = rcgen::generate_simple_self_signed(vec!["endpoint.test".to_string()])?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
