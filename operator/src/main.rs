//! The mvdns-operator binary: flags (each also an environment variable), logging,
//! signals; everything else is in the library.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mvdns_api::zones::PublishRules;
use mvdns_operator::health::limits::TenantLimits;
use mvdns_operator::health::policy::ProbePolicy;
use mvdns_operator::leader::LeaseConfig;
use mvdns_operator::slices::DEFAULT_MAX_STATUS_VALUES;
use mvdns_operator::{Health, OperatorConfig};
use mvdns_runtime::{CommonArgs, admin};

/// The admin port when `--admin-listen` is not given.
const ADMIN_LISTEN: &str = "[::]:8080";

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
    /// Address blocks health checks may connect to (CIDR, comma-separated). Empty: any
    /// address but the special classes (loopback, link-local with cloud metadata,
    /// unspecified, multicast, broadcast), which a block inside that class must name
    /// (e.g. 127.0.0.2/32). Given: only these blocks.
    #[arg(long = "probe-allow-cidr", env = "MVDNS_PROBE_ALLOW_CIDRS", value_delimiter = ',')]
    probe_allow_cidrs: Vec<String>,
    /// Address blocks health checks may never connect to (CIDR, comma-separated); they win
    /// over --probe-allow-cidr.
    #[arg(long = "probe-deny-cidr", env = "MVDNS_PROBE_DENY_CIDRS", value_delimiter = ',')]
    probe_deny_cidrs: Vec<String>,
    /// Blocks only some namespaces may probe, perhaps only on some ports:
    /// `BLOCK[:PORT[,PORT...]]=NAMESPACE[,NAMESPACE...]` (ports may be ranges, 8000-8099);
    /// repeat the flag, or separate entries with `;` in the env var. Such a rule only
    /// refuses; it never opens what the other rules refuse.
    #[arg(
        long = "probe-restrict-cidr",
        env = "MVDNS_PROBE_RESTRICTED_CIDRS",
        value_delimiter = ';'
    )]
    probe_restricted_cidrs: Vec<String>,
    /// Health-checked values one namespace may have running at most; beyond it a value is
    /// not probed and not served (condition ProbeRefused). 0: no cap.
    #[arg(long, env = "MVDNS_PROBE_MAX_CHECKS_PER_NAMESPACE", default_value_t = 500)]
    probe_max_checks_per_namespace: usize,
    /// Probes per second one namespace's health checks may send at most; asking for more
    /// stretches their intervals (condition ProbeThrottled). 0: no cap.
    #[arg(long, env = "MVDNS_PROBE_RATE_PER_NAMESPACE", default_value_t = 50.0)]
    probe_rate_per_namespace: f64,
    /// Watch record sets and pods in these namespaces only (comma-separated): a Role in each
    /// is then all the operator needs. Default: all namespaces.
    #[arg(long = "namespace", env = "MVDNS_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// This replica's own addresses (the chart passes the pod's IPs): never probed, so no
    /// record set can reach the operator's admin port.
    #[arg(long = "own-address", env = "POD_IPS", value_delimiter = ',')]
    own_addresses: Vec<IpAddr>,
    /// Health-check probes in flight at most; a slow endpoint holds one slot until its timeout.
    #[arg(long, env = "MVDNS_PROBE_CONCURRENCY", default_value_t = 256)]
    probe_concurrency: usize,
    /// A record set with more values than this is served from MultiValueRecordSlices of at
    /// most 100 values each (a change rewrites one slice), its status keeping the counts.
    /// A high bound brings back the status feed (the whole set rewritten on every change,
    /// refused by etcd past about 15,000 values); the benchmarks compare the two.
    #[arg(long, env = "MVDNS_MAX_STATUS_VALUES", default_value_t = DEFAULT_MAX_STATUS_VALUES as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_status_values: u32,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.common.init_logging().map_err(anyhow::Error::msg)?;

    let kube_config = kube::Config::infer()
        .await
        .context("no Kubernetes client configuration")?;
    let probe_policy = protected_addresses(&kube_config, &args.own_addresses)
        .await
        .into_iter()
        .fold(
            ProbePolicy::parse(&args.probe_allow_cidrs, &args.probe_deny_cidrs)
                .and_then(|policy| policy.with_namespace_rules(&args.probe_restricted_cidrs))
                .map_err(|e| anyhow::anyhow!(e))?,
            |policy, (address, what)| policy.protect(address, what),
        );
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
        probe_policy,
        namespaces: args.namespaces.into_iter().filter(|n| !n.trim().is_empty()).collect(),
        max_status_values: args.max_status_values as usize,
        tenant_limits: TenantLimits {
            max_checks_per_namespace: args.probe_max_checks_per_namespace,
            probes_per_second_per_namespace: args.probe_rate_per_namespace.max(0.0),
        },
    };
    let client = kube::Client::try_from(kube_config).context("cannot build the Kubernetes client")?;
    let health = Arc::new(Health::default());
    let admin_listen: SocketAddr = args.common.admin_listen.unwrap_or(ADMIN_LISTEN.parse()?);
    let listener = admin::bind(admin_listen).await.context("cannot bind the admin port")?;
    let shutdown = mvdns_runtime::shutdown_on_signal();
    let admin = tokio::spawn(admin::serve(listener, health.clone(), shutdown.clone()));
    mvdns_operator::run(client, config, health, shutdown).await;
    admin.await??;
    Ok(())
}

/// The addresses no health check may reach whatever the allow list says: the API server's
/// (as this process reaches it: the `kubernetes` Service's ClusterIP in a cluster) and this
/// replica's own. A host name in the API server URL is resolved once, at start.
async fn protected_addresses(config: &kube::Config, own: &[IpAddr]) -> Vec<(IpAddr, String)> {
    let mut protected: Vec<(IpAddr, String)> = own
        .iter()
        .map(|ip| (*ip, "this operator's own address".to_owned()))
        .collect();
    let host = config
        .cluster_url
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = config.cluster_url.port_u16().unwrap_or(443);
    let api_server: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|addresses| addresses.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    protected.extend(
        api_server
            .into_iter()
            .map(|ip| (ip, "the API server's address".to_owned())),
    );
    protected
}
