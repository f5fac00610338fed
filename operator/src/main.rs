//! The mvdns-operator binary: flags (each also an environment variable), logging,
//! signals; everything else is in the library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use mvdns_api::zones::PublishRules;
use mvdns_operator::leader::LeaseConfig;
use mvdns_operator::{Health, OperatorConfig};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

/// Writes the healthy values of MultiValueRecordSets into their status.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "MVDNS_LEASE_NAMESPACE", default_value = "mvdns-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "MVDNS_LEASE_NAME", default_value = "mvdns-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a lease lasts without renewal, in seconds; a standby takes over after it.
    #[arg(long, env = "MVDNS_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// How often the leader renews the lease, in seconds.
    #[arg(long, env = "MVDNS_LEASE_RENEW_SECONDS", default_value_t = 5)]
    lease_renew_seconds: u64,
    /// Window in which changes to one record set are coalesced into one status write, in ms.
    #[arg(long, env = "MVDNS_COALESCE_MS", default_value_t = 100)]
    coalesce_ms: u64,
    /// The zones the DNS servers serve (the chart passes the same list to both); a
    /// record set named outside them gets `Ready=False, reason NotServed`. Default:
    /// names are not checked.
    #[arg(long = "zone", env = "MVDNS_ZONES", value_delimiter = ',')]
    zones: Vec<String>,
    /// Zones only some namespaces may publish in, `ZONE=NAMESPACE[,NAMESPACE...]`
    /// (repeat the flag, or separate entries with `;` in the env var).
    #[arg(long = "restrict-zone", env = "MVDNS_RESTRICTED_ZONES", value_delimiter = ';')]
    restricted_zones: Vec<String>,
    /// Health-check probes in flight at most; a slow endpoint holds one slot until its timeout.
    #[arg(long, env = "MVDNS_PROBE_CONCURRENCY", default_value_t = 256)]
    probe_concurrency: usize,
    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "MVDNS_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "MVDNS_LOG_FORMAT", value_enum, default_value = "plain")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Plain => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let identity = args
        .identity
        .unwrap_or_else(|| format!("mvdns-operator-{:08x}", rand::random::<u32>()));
    let config = OperatorConfig {
        lease: LeaseConfig {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity,
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_period: Duration::from_secs(args.lease_renew_seconds),
        },
        coalesce: Duration::from_millis(args.coalesce_ms),
        probe_concurrency: args.probe_concurrency,
        publish: PublishRules::parse(&args.zones, &args.restricted_zones)
            .map_err(|e| anyhow::anyhow!("--zone/--restrict-zone: {e}"))?,
    };
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration")?;
    let shutdown = CancellationToken::new();
    let health = Arc::new(Health::default());

    let listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .context("cannot bind the admin port")?;
    tracing::info!(address = %listener.local_addr()?, "admin server listening");
    let admin = tokio::spawn(mvdns_operator::admin::serve(listener, health.clone(), shutdown.clone()));

    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    mvdns_operator::run(client, config, health, shutdown).await;
    admin.await??;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
