//! One probe of one endpoint: TCP connect, or an HTTP(S) GET.
//!
//! Every probe ends: the connection within `connectTimeoutSeconds`, the whole response
//! (TLS handshake included) within `responseTimeoutSeconds`, and at most 16 KiB of
//! headers and 5,120 bytes of body are read. Redirects are not followed (a 3xx is a
//! success, as in Route 53), so a redirect loop cannot trap the checker. The HTTP
//! exchange is a minimal HTTP/1.1 request written by hand: we need a status line and a
//! bounded prefix of the body, nothing more, and owning the reads keeps them bounded.
//!
//! Before any packet goes to an endpoint, its address passes the [`ProbePolicy`]; a host
//! name is resolved once and the connection goes to the address that was judged, so a
//! name that resolves elsewhere a moment later cannot slip past the policy. A failure is
//! reported as its class (refused, timed out, TLS, status code, string not found), never
//! with bytes of the response or a remote error text: the result is visible to whoever
//! wrote the record set, and must not tell them what an internal server said.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mvdns_api::{HealthCheck, HealthCheckType};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::policy::{ProbePolicy, Refusal};

/// Bytes of body searched for `searchString` (Route 53's figure).
pub const SEARCH_WINDOW: usize = 5120;
const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The result after `invert`.
    pub healthy: bool,
    /// Why the probe failed (or, inverted, why it succeeded).
    pub error: Option<String>,
    /// The policy refused every address of the target: nothing was sent to it.
    pub refused: Option<Refusal>,
    pub latency: Duration,
}

/// Why a probe did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    /// The policy refused the target's addresses; no packet was sent to it.
    Refused(Refusal),
    /// The probe ran and failed; the text is the failure's class.
    Failed(String),
}

fn failed(class: impl Into<String>) -> Failure {
    Failure::Failed(class.into())
}

/// Probes `target` (an address or host name) as `check` says, if `policy` allows it for
/// a record set in `namespace`.
pub async fn probe(target: &str, check: &HealthCheck, policy: &ProbePolicy, namespace: &str) -> ProbeOutcome {
    let started = Instant::now();
    let result = run_probe(target, check, policy, namespace).await;
    let latency = started.elapsed();
    let (healthy, error, refused) = match (result, check.invert) {
        (Ok(()), false) => (true, None, None),
        (Err(Failure::Failed(error)), false) => (false, Some(error), None),
        (Ok(()), true) => (false, Some("the probe succeeded (inverted check)".into()), None),
        (Err(Failure::Failed(_)), true) => (true, None, None),
        // Never healthy, inverted or not: a check that was not run proves nothing.
        (Err(Failure::Refused(refusal)), _) => (false, Some(format!("ProbeRefused: {refusal}")), Some(refusal)),
    };
    ProbeOutcome {
        healthy,
        error,
        refused,
        latency,
    }
}

/// The address a probe of `target` connects to: the target itself if it is an address,
/// else the first address its name resolves to that the policy allows.
async fn probe_address(target: &str, port: u16, policy: &ProbePolicy, namespace: &str) -> Result<SocketAddr, Failure> {
    let candidates: Vec<SocketAddr> = match target.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((target.trim_end_matches('.'), port))
            .await
            .map_err(|_| failed("the name does not resolve"))?
            .collect(),
    };
    first_allowed(&candidates, policy, namespace)
}

/// The first candidate the policy allows; else the refusal of the first one.
fn first_allowed(candidates: &[SocketAddr], policy: &ProbePolicy, namespace: &str) -> Result<SocketAddr, Failure> {
    let mut first_refusal = None;
    for candidate in candidates {
        match policy.check_for(*candidate, namespace) {
            Ok(()) => return Ok(*candidate),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    Err(first_refusal.map_or_else(|| failed("the name resolves to no address"), Failure::Refused))
}

async fn run_probe(target: &str, check: &HealthCheck, policy: &ProbePolicy, namespace: &str) -> Result<(), Failure> {
    let connect_timeout = Duration::from_secs(u64::from(check.connect_timeout_seconds));
    let response_timeout = Duration::from_secs(u64::from(check.response_timeout_seconds));
    let address = tokio::time::timeout(connect_timeout, probe_address(target, check.port, policy, namespace))
        .await
        .map_err(|_| failed(format!("the name did not resolve within {connect_timeout:?}")))??;
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(address))
        .await
        .map_err(|_| failed(format!("no connection within {connect_timeout:?}")))?
        // The error's kind ("connection refused"), not its text.
        .map_err(|e| failed(format!("cannot connect: {}", e.kind())))?;
    let host = check
        .host
        .clone()
        .unwrap_or_else(|| target.trim_end_matches('.').to_owned());
    let exchange = async {
        match check.check_type {
            HealthCheckType::TCP => Ok(()),
            HealthCheckType::HTTP => http_check(stream, &host, check).await,
            HealthCheckType::HTTPS => {
                let name = ServerName::try_from(host.clone()).map_err(|_| format!("bad TLS server name {host:?}"))?;
                // Not the TLS error's text: it can carry the names in the server's certificate.
                let tls = tls_connector(check.verify_certificate)
                    .connect(name, stream)
                    .await
                    .map_err(|_| "TLS handshake failed".to_owned())?;
                http_check(tls, &host, check).await
            }
        }
    };
    tokio::time::timeout(response_timeout, exchange)
        .await
        .map_err(|_| failed(format!("no complete response within {response_timeout:?}")))?
        .map_err(Failure::Failed)
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
        .map_err(|_| "cannot send the request".to_owned())?;
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
            Err(_) => return Err("cannot read the response".into()),
        }
    }
    Ok(buffer)
}

/// Healthy on a 2xx or 3xx status line, and, with a search string, when the string
/// is in the first 5,120 bytes of the body. Pure, for tests. The error names the class
/// of failure and the status code, never other bytes of the response.
pub fn evaluate_response(response: &[u8], search_string: Option<&str>) -> Result<(), String> {
    let status_line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/"))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP response".to_owned())?;
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
        assert_eq!(
            evaluate_response(b"SSH-2.0-OpenSSH secret banner\r\n", None),
            Err("not an HTTP response".into()),
            "no byte of what the server said"
        );
        let mut late = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        late.extend(std::iter::repeat_n(b'x', SEARCH_WINDOW));
        late.extend(b"ok");
        assert!(
            evaluate_response(&late, Some("ok")).is_err(),
            "only the first 5120 bytes count"
        );
    }

    fn socket(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn a_name_connects_to_its_first_allowed_address() {
        let policy = ProbePolicy::parse(&["127.0.0.2/32".into(), "10.0.0.0/8".into()], &[]).expect("valid");
        let resolved = [
            socket("169.254.169.254:80"),
            socket("10.1.0.1:80"),
            socket("127.0.0.2:80"),
        ];
        assert_eq!(first_allowed(&resolved, &policy, "shop"), Ok(socket("10.1.0.1:80")));
        let refused = first_allowed(&resolved[..1], &policy, "shop");
        assert!(
            matches!(&refused, Err(Failure::Refused(r)) if r.0.contains("link-local")),
            "{refused:?}"
        );
        // A name whose addresses a namespace rule keeps for others.
        let restricted = policy
            .clone()
            .with_namespace_rules(&["10.0.0.0/8=payments".into()])
            .expect("valid");
        let refused = first_allowed(&resolved[1..2], &restricted, "shop");
        assert!(
            matches!(&refused, Err(Failure::Refused(r)) if r.0.contains("not from shop")),
            "{refused:?}"
        );
        assert_eq!(
            first_allowed(&resolved[1..2], &restricted, "payments"),
            Ok(socket("10.1.0.1:80"))
        );
        assert_eq!(
            first_allowed(&[], &policy, "shop"),
            Err(failed("the name resolves to no address"))
        );
    }

    #[tokio::test]
    async fn a_refused_check_sends_nothing_and_is_never_healthy() -> Result<(), Box<dyn std::error::Error>> {
        // A listener on a loopback address the policy does not name: no connection may arrive.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let check: HealthCheck =
            serde_json::from_value(serde_json::json!({"type": "TCP", "port": port, "invert": true}))?;
        let outcome = probe("127.0.0.1", &check, &ProbePolicy::default(), "shop").await;
        assert!(!outcome.healthy, "an inverted check that was refused is not healthy");
        let refusal = outcome.refused.map(|r| r.0).unwrap_or_default();
        assert!(refusal.contains("loopback"), "{refusal}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the refused probe connected");
        Ok(())
    }
}
