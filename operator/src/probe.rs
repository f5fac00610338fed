//! One probe of one endpoint: TCP connect, or an HTTP(S) GET.
//!
//! Every probe ends: the connection within `connectTimeoutSeconds`, the whole response
//! (TLS handshake included) within `responseTimeoutSeconds`, and at most 16 KiB of
//! headers and 5,120 bytes of body are read. Redirects are not followed (a 3xx is a
//! success, as in Route 53), so a redirect loop cannot trap the checker. The HTTP
//! exchange is a minimal HTTP/1.1 request written by hand: we need a status line and a
//! bounded prefix of the body, nothing more, and owning the reads keeps them bounded.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mvdns_api::{HealthCheck, HealthCheckType};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bytes of body searched for `searchString` (Route 53's figure).
pub const SEARCH_WINDOW: usize = 5120;
const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The result after `invert`.
    pub healthy: bool,
    /// Why the probe failed (or, inverted, why it succeeded).
    pub error: Option<String>,
    pub latency: Duration,
}

/// Probes `target` (an address or host name) as `check` says.
pub async fn probe(target: &str, check: &HealthCheck) -> ProbeOutcome {
    let started = Instant::now();
    let result = run_probe(target, check).await;
    let latency = started.elapsed();
    match (result, check.invert) {
        (Ok(()), false) => ProbeOutcome {
            healthy: true,
            error: None,
            latency,
        },
        (Err(error), false) => ProbeOutcome {
            healthy: false,
            error: Some(error),
            latency,
        },
        (Ok(()), true) => ProbeOutcome {
            healthy: false,
            error: Some("the probe succeeded (inverted check)".into()),
            latency,
        },
        (Err(_), true) => ProbeOutcome {
            healthy: true,
            error: None,
            latency,
        },
    }
}

async fn run_probe(target: &str, check: &HealthCheck) -> Result<(), String> {
    let connect_timeout = Duration::from_secs(u64::from(check.connect_timeout_seconds));
    let response_timeout = Duration::from_secs(u64::from(check.response_timeout_seconds));
    // An IPv6 literal needs brackets in a socket address.
    let address = if target.contains(':') {
        format!("[{target}]:{}", check.port)
    } else {
        format!("{target}:{}", check.port)
    };
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| format!("no connection to {address} within {connect_timeout:?}"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let host = check
        .host
        .clone()
        .unwrap_or_else(|| target.trim_end_matches('.').to_owned());
    let exchange = async {
        match check.check_type {
            HealthCheckType::TCP => Ok(()),
            HealthCheckType::HTTP => http_check(stream, &host, check).await,
            HealthCheckType::HTTPS => {
                let name =
                    ServerName::try_from(host.clone()).map_err(|e| format!("bad TLS server name {host:?}: {e}"))?;
                let tls = tls_connector(check.verify_certificate)
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {address} failed: {e}"))?;
                http_check(tls, &host, check).await
            }
        }
    };
    tokio::time::timeout(response_timeout, exchange)
        .await
        .map_err(|_| format!("no complete response from {address} within {response_timeout:?}"))?
}

async fn http_check<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    check: &HealthCheck,
) -> Result<(), String> {
    let path = check.path.as_deref().unwrap_or("/");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mvdns-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let want_body = check.search_string.is_some();
    let response = read_bounded(&mut stream, want_body).await?;
    evaluate_response(&response, check.search_string.as_deref())
}

/// Reads until the headers end (and, if a body is wanted, its first 5,120 bytes or
/// the end of the stream), never more than the bounds.
async fn read_bounded<S: AsyncRead + Unpin>(stream: &mut S, want_body: bool) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let header_end = find(&buffer, b"\r\n\r\n");
        match header_end {
            Some(end) if !want_body || buffer.len() >= end + 4 + SEARCH_WINDOW => break,
            None if buffer.len() > MAX_HEADER_BYTES => {
                return Err("response headers larger than 16 KiB".into());
            }
            _ => {}
        }
        let read = stream.read(&mut chunk).await;
        match read {
            Ok(0) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            // A server that closes without TLS close_notify still sent its response.
            Err(_) if find(&buffer, b"\r\n\r\n").is_some() => break,
            Err(e) => return Err(format!("cannot read the response: {e}")),
        }
    }
    Ok(buffer)
}

/// Healthy on a 2xx or 3xx status line, and, with a search string, when the string
/// is in the first 5,120 bytes of the body. Pure, for tests.
pub fn evaluate_response(response: &[u8], search_string: Option<&str>) -> Result<(), String> {
    let status_line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/"))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", status_line.trim()))?;
    if !(200..400).contains(&code) {
        return Err(format!("HTTP status {code}"));
    }
    if let Some(wanted) = search_string {
        let body_start = find(response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
        let body = &response[body_start..response.len().min(body_start + SEARCH_WINDOW)];
        if find(body, wanted.as_bytes()).is_none() {
            return Err(format!("{wanted:?} not in the first {SEARCH_WINDOW} bytes of the body"));
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// TLS clients, built once: one that verifies against the Mozilla roots, and one that
/// accepts any certificate (the default, as in Route 53: endpoints are often addressed
/// by IP with self-signed or internal certificates).
fn tls_connector(verify: bool) -> TlsConnector {
    static VERIFYING: OnceLock<TlsConnector> = OnceLock::new();
    static ACCEPTING: OnceLock<TlsConnector> = OnceLock::new();
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    if verify {
        VERIFYING
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let config = rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
                TlsConnector::from(Arc::new(config.unwrap_or_else(|_| unverified_config())))
            })
            .clone()
    } else {
        ACCEPTING
            .get_or_init(|| TlsConnector::from(Arc::new(unverified_config())))
            .clone()
    }
}

fn unverified_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// Accepts any server certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_and_search_strings() {
        assert!(evaluate_response(b"HTTP/1.1 200 OK\r\n\r\nall ok", Some("ok")).is_ok());
        assert!(evaluate_response(b"HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n", None).is_ok());
        assert_eq!(
            evaluate_response(b"HTTP/1.1 503 Unavailable\r\n\r\n", None),
            Err("HTTP status 503".into())
        );
        assert!(evaluate_response(b"SSH-2.0-OpenSSH\r\n", None).is_err());
        let mut late = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        late.extend(std::iter::repeat_n(b'x', SEARCH_WINDOW));
        late.extend(b"ok");
        assert!(
            evaluate_response(&late, Some("ok")).is_err(),
            "only the first 5120 bytes count"
        );
    }
}
