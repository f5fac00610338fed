//! A DNS server on loopback: the real sockets and query path of `mvdns-server`, serving
//! record sets given by the test instead of a watch. Stopped when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mvdns_api::MultiValueRecordSet;
use mvdns_server::Shared;
use mvdns_server::index::build_index;
use mvdns_server::rrl::RateLimitConfig;
use mvdns_server::server::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::fixtures::zones;

/// How the loopback server is set up.
#[derive(Clone, Debug)]
pub struct LoopbackOptions {
    pub max_tcp_connections: usize,
    pub tcp_idle_timeout: Duration,
    pub rate_limit: Option<RateLimitConfig>,
}

impl Default for LoopbackOptions {
    fn default() -> Self {
        Self {
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(10),
            rate_limit: None,
        }
    }
}

/// A running server: its address and what it serves from.
#[derive(Debug)]
pub struct LoopbackServer {
    pub address: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl LoopbackServer {
    /// Starts a server for the test zone ([`crate::fixtures::TEST_ZONE`]) serving
    /// `record_sets`, synced (answering) at once. Call from within a tokio runtime.
    pub fn start(record_sets: &[MultiValueRecordSet], options: LoopbackOptions) -> anyhow::Result<Self> {
        let shared = Shared::new(zones());
        let served: Vec<&MultiValueRecordSet> = record_sets.iter().collect();
        shared.index.store(Arc::new(build_index(&served, &shared.zones, 1)));
        shared.synced.store(true, Ordering::Release);
        let config = ServerConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            udp_workers: 1,
            max_tcp_connections: options.max_tcp_connections,
            tcp_idle_timeout: options.tcp_idle_timeout,
            rate_limit: options.rate_limit,
        };
        let sockets = server::bind(&config)?;
        let address = sockets.address;
        let shutdown = CancellationToken::new();
        tokio::spawn(server::serve(sockets, config, shared.clone(), shutdown.clone()));
        Ok(Self {
            address,
            shared,
            shutdown,
        })
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    use serde_json::json;

    use super::*;
    use crate::client::{Ask, answer_data, tcp, udp};
    use crate::fixtures::{record_set, value};

    #[tokio::test]
    async fn serves_the_given_record_sets_over_udp_and_tcp() -> anyhow::Result<()> {
        let web = record_set(
            "shop",
            "web",
            "2026-01-01T00:00:00Z",
            json!({"name": "web.example.internal.", "type": "A"}),
            json!([value("10.1.0.1", true), value("10.1.0.2", false)]),
        );
        let server = LoopbackServer::start(&[web], LoopbackOptions::default())?;
        let ask = Ask::new("web.example.internal.", RecordType::A);
        for response in [udp(server.address, &ask).await?, tcp(server.address, &ask).await?] {
            assert_eq!(response.metadata.response_code, ResponseCode::NoError);
            assert_eq!(answer_data(&response), ["10.1.0.1"], "healthy values only");
        }
        let missing = udp(server.address, &Ask::new("nope.example.internal.", RecordType::A)).await?;
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        Ok(())
    }
}
