//! The mvdns-server binary: flags (each also an environment variable), logging, the
//! sockets, the watch and the admin port, and a graceful shutdown on SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mvdns_runtime::{CommonArgs, admin};
use mvdns_server::Shared;
use mvdns_server::rrl::RateLimitConfig;
use mvdns_server::server::{self, ServerConfig};
use mvdns_server::watch::{self, WatchConfig};
use mvdns_server::zone::{ZoneSettings, Zones};

/// The admin port when `--admin-listen` is not given.
const ADMIN_LISTEN: &str = "[::]:9153";

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Authoritative DNS for MultiValueRecordSets: random healthy values per answer"
)]
struct Args {
    /// Zones to serve (apex names); several allowed, comma-separated in the env var.
    #[arg(long = "zone", env = "MVDNS_ZONES", value_delimiter = ',', required = true)]
    zones: Vec<String>,
    /// Zones only some namespaces may publish in, `ZONE=NAMESPACE[,NAMESPACE...]`;
    /// repeat the flag, or separate entries with `;` in the env var. The operator takes
    /// the same list and reports refusals in status.
    #[arg(long = "restrict-zone", env = "MVDNS_RESTRICTED_ZONES", value_delimiter = ';')]
    restricted_zones: Vec<String>,
    /// Address for DNS over UDP and TCP. `[::]` (the default) takes IPv4 and IPv6 on one
    /// socket, and IPv4 alone where the kernel has no IPv6.
    #[arg(long, env = "MVDNS_LISTEN", default_value = "[::]:5353")]
    listen: SocketAddr,
    /// Watch record sets in this namespace only (default: all namespaces).
    #[arg(long, env = "MVDNS_NAMESPACE")]
    namespace: Option<String>,
    /// SOA MNAME (primary name server); default the first `--nameserver`, else `ns.<zone>`.
    #[arg(long, env = "MVDNS_SOA_MNAME")]
    soa_mname: Option<String>,
    /// SOA RNAME (responsible mailbox as a name); default `hostmaster.<zone>`.
    #[arg(long, env = "MVDNS_SOA_RNAME")]
    soa_rname: Option<String>,
    /// NS records at every apex; default the SOA MNAME.
    #[arg(long = "nameserver", env = "MVDNS_NAMESERVERS", value_delimiter = ',')]
    nameservers: Vec<String>,
    /// TTL of negative answers (the SOA MINIMUM), in seconds.
    #[arg(long, env = "MVDNS_NEGATIVE_TTL", default_value_t = 30)]
    negative_ttl: u32,
    /// UDP sockets (SO_REUSEPORT) with their own receive loop; default: one per core.
    #[arg(long, env = "MVDNS_UDP_WORKERS")]
    udp_workers: Option<usize>,
    /// Open TCP connections at most; more are closed at once.
    #[arg(long, env = "MVDNS_MAX_TCP_CONNECTIONS", default_value_t = 512)]
    max_tcp_connections: usize,
    /// Seconds a TCP connection may stay without a complete request.
    #[arg(long, env = "MVDNS_TCP_IDLE_TIMEOUT_SECONDS", default_value_t = 10)]
    tcp_idle_timeout_seconds: u64,
    /// Response rate limiting over UDP: responses per second per client subnet (/24,
    /// /56); 0 turns it off (the default: behind CoreDNS or NodeLocal DNSCache every
    /// query comes from a few addresses).
    #[arg(long, env = "MVDNS_RRL_RESPONSES_PER_SECOND", default_value_t = 0)]
    rrl_responses_per_second: u32,
    /// Every Nth rate-limited response is sent as an empty truncated answer, so real
    /// clients retry over TCP; 0 drops them all.
    #[arg(long, env = "MVDNS_RRL_SLIP", default_value_t = 2)]
    rrl_slip: u32,
    /// Changes to record sets within this window are served together.
    #[arg(long, env = "MVDNS_DEBOUNCE_MS", default_value_t = 5)]
    debounce_ms: u64,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.common.init_logging().map_err(anyhow::Error::msg)?;

    let zones = Zones::new(&ZoneSettings {
        apexes: args.zones,
        soa_mname: args.soa_mname,
        soa_rname: args.soa_rname,
        nameservers: args.nameservers,
        negative_ttl: args.negative_ttl,
        restricted: args.restricted_zones,
        ..ZoneSettings::default()
    })?;
    let server_config = ServerConfig {
        listen: args.listen,
        udp_workers: args
            .udp_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        max_tcp_connections: args.max_tcp_connections,
        rate_limit: (args.rrl_responses_per_second > 0).then_some(RateLimitConfig {
            responses_per_second: args.rrl_responses_per_second,
            slip: args.rrl_slip,
        }),
        tcp_idle_timeout: Duration::from_secs(args.tcp_idle_timeout_seconds),
    };
    let watch_config = WatchConfig {
        namespace: args.namespace,
        debounce: Duration::from_millis(args.debounce_ms),
    };
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration")?;
    let shared = Shared::new(zones);

    let sockets = server::bind(&server_config)?;
    tracing::info!(address = %sockets.address, zones = ?shared.zones.iter().map(|z| z.apex.to_string()).collect::<Vec<_>>(), "DNS listening on UDP and TCP");
    let admin_listen: SocketAddr = args.common.admin_listen.unwrap_or(ADMIN_LISTEN.parse()?);
    let admin_listener = admin::bind(admin_listen).await.context("cannot bind the admin port")?;
    let shutdown = mvdns_runtime::shutdown_on_signal();

    let admin = tokio::spawn(admin::serve(admin_listener, shared.clone(), shutdown.clone()));
    let dns = tokio::spawn(server::serve(sockets, server_config, shared.clone(), shutdown.clone()));
    let feed = tokio::spawn(watch::run(client, watch_config, shared, shutdown.clone()));

    shutdown.cancelled().await;
    let _ = tokio::join!(feed, dns);
    admin.await??;
    Ok(())
}
