//! Running the DNS server in a test under the chart's DNS ServiceAccount, and two real
//! DNS clients to ask it: the test kit's own on hickory-proto over UDP and TCP sockets
//! (`mvdns_testkit::client`, re-exported here: for thousands of queries and exact
//! packets), and `dig` (BIND's client) as an independent implementation.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mvdns_server::Shared;
use mvdns_server::server::{self, ServerConfig};
use mvdns_server::watch::{self, WatchConfig};
use mvdns_server::zone::{ZoneSettings, Zones};
use tokio_util::sync::CancellationToken;

pub use mvdns_testkit::client::*;

use crate::{TestEnv, chart_service_account, client_from_kubeconfig, service_account_kubeconfig};

/// A DNS server running in this test's runtime under the chart's DNS ServiceAccount,
/// on 127.0.0.1 with a port picked by the kernel.
#[derive(Debug)]
pub struct RunningDns {
    pub address: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningDns {
    pub async fn start(env: &TestEnv, namespace: &str, zones: &[&str]) -> Result<Self> {
        Self::start_restricted(env, namespace, zones, &[]).await
    }

    /// With zones only some namespaces may publish in (`ZONE=NAMESPACE[,...]`).
    pub async fn start_restricted(env: &TestEnv, namespace: &str, zones: &[&str], restricted: &[&str]) -> Result<Self> {
        let owned = |items: &[&str]| items.iter().map(|z| (*z).to_owned()).collect();
        let settings = ZoneSettings {
            apexes: owned(zones),
            restricted: owned(restricted),
            ..ZoneSettings::default()
        };
        Self::start_with(env, namespace, &settings, (Ipv4Addr::LOCALHOST, 0).into()).await
    }

    /// With any zone settings, on `listen` (a loopback address: tools that only ask
    /// port 53, such as zonemaster, need one of their own there).
    pub async fn start_with(
        env: &TestEnv,
        namespace: &str,
        settings: &ZoneSettings,
        listen: SocketAddr,
    ) -> Result<Self> {
        let account = chart_service_account(namespace, "dns");
        let client = client_from_kubeconfig(&service_account_kubeconfig(env, namespace, &account).await?).await?;
        let zones = Zones::new(settings)?;
        let shared = Shared::new(zones);
        let config = ServerConfig {
            listen,
            udp_workers: 2,
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(5),
            rate_limit: None,
        };
        let sockets = server::bind(&config)?;
        let address = sockets.address;
        let shutdown = CancellationToken::new();
        let watch_config = WatchConfig {
            namespace: None,
            debounce: Duration::from_millis(5),
        };
        let tasks = vec![
            tokio::spawn(server::serve(sockets, config, shared.clone(), shutdown.clone())),
            tokio::spawn(watch::run(client, watch_config, shared.clone(), shutdown.clone())),
        ];
        Ok(Self {
            address,
            shared,
            shutdown,
            tasks,
        })
    }

    /// Waits (at most 30 s) for the first full sync: before it, the server is not ready.
    pub async fn wait_synced(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.shared.synced.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                bail!("the DNS server did not sync within 30s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Runs `dig @server -p port ARGS...` and returns its stdout.
pub async fn dig(server: SocketAddr, args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .await
        .context("dig is missing: hack/deps.sh installs dnsutils")?;
    Ok(String::from_utf8(output.stdout)?)
}

/// What a client saw while asking one name over and over.
#[derive(Debug, Default)]
pub struct Observed {
    pub queries: u32,
    pub wrong: Vec<String>,
}

/// Asks `ask` every few milliseconds until `stop`, checking each answer with `is_right`.
pub fn keep_asking(
    server: SocketAddr,
    ask: Ask,
    stop: Arc<AtomicBool>,
    is_right: impl Fn(&hickory_proto::op::Message) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<Observed> {
    tokio::spawn(async move {
        let mut seen = Observed::default();
        while !stop.load(Ordering::Acquire) {
            seen.queries += 1;
            match udp(server, &ask).await {
                Ok(response) if is_right(&response) => {}
                Ok(response) => seen.wrong.push(response.to_string()),
                Err(error) => seen.wrong.push(format!("no answer: {error}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    })
}
