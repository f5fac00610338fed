//! What the benchmarks (`tests/examples/convergence.rs`, `tests/examples/big_name.rs`)
//! share: timing answers until they change, CoreDNS beside mvdns, the API server's own
//! figures, and percentiles. Measurements, never assertions.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use crate::dns::{Ask, UdpAsker, answer_data};
use crate::{PodSpec, TestEnv};

/// How often each DNS server is asked while a flip converges.
pub const POLL: Duration = Duration::from_millis(1);

/// Creates pods 50 at a time without waiting for each: KWOK makes them Ready meanwhile.
/// Says how far it is every `report_every` pods (0: never).
pub async fn create_many(pods: &Api<Pod>, specs: &[PodSpec], report_every: usize) -> Result<()> {
    for (i, chunk) in specs.chunks(50).enumerate() {
        let creates = chunk.iter().map(|spec| async move {
            pods.create(&PostParams::default(), &spec.to_pod()?).await?;
            anyhow::Ok(())
        });
        futures::future::try_join_all(creates).await?;
        let done = (i + 1) * 50;
        if report_every > 0 && done % report_every == 0 {
            eprintln!("  {done} of {} pods created", specs.len());
        }
    }
    Ok(())
}

/// Polls every server, each on its own loop, every millisecond until its answer is
/// exactly `expected`; returns when each one first got there. The loops run side by
/// side, so one server's time does not include waiting on another's reply.
pub async fn wait_all(
    servers: &[(SocketAddr, &Ask)],
    expected: &BTreeSet<String>,
    limit: Duration,
) -> Result<Vec<Instant>> {
    let deadline = Instant::now() + limit;
    let loops = servers
        .iter()
        .map(|(address, ask)| until_answer(*address, ask, expected, deadline));
    futures::future::try_join_all(loops).await
}

/// Asks one server every `POLL` until its answer is exactly `expected`.
async fn until_answer(
    address: SocketAddr,
    ask: &Ask,
    expected: &BTreeSet<String>,
    deadline: Instant,
) -> Result<Instant> {
    let asker = UdpAsker::new(address).await?;
    loop {
        // A server still starting (CoreDNS waits for its first list) does not answer yet.
        let answer = asker.ask(ask).await;
        if let Ok(answer) = &answer
            && answer_data(answer).into_iter().collect::<BTreeSet<_>>() == *expected
        {
            tracing::debug!(%address, "answer converged");
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let last = answer.map(|a| answer_data(&a));
            bail!("{address} did not answer {expected:?} in time; last: {last:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// CoreDNS with the kubernetes plugin (no cache, as the comparison is about the data
/// path) on a free loopback port, reading the API server with the admin kubeconfig.
/// Replica `name` has its own Corefile and log in the control plane's directory.
pub async fn start_coredns(env: &TestEnv, binary: &str, name: &str) -> Result<(SocketAddr, tokio::process::Child)> {
    let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let corefile = format!(
        ".:{port} {{\n    bind 127.0.0.1\n    kubernetes cluster.local {{\n        kubeconfig {}\n        ttl 0\n    }}\n}}\n",
        env.admin_kubeconfig().display()
    );
    let path = env.dir.join(format!("{name}.Corefile"));
    std::fs::write(&path, corefile)?;
    let child = tokio::process::Command::new(binary)
        .arg("-conf")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.join(format!("{name}.log")))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting CoreDNS")?;
    Ok(((Ipv4Addr::LOCALHOST, port).into(), child))
}

/// The first and the last of some replicas' times.
pub fn first_and_last(times: &[Instant]) -> Option<[Instant; 2]> {
    Some([*times.iter().min()?, *times.iter().max()?])
}

/// p50, p90, p99 and the maximum, in milliseconds (nearest rank).
pub fn percentiles(times: &mut [Duration]) -> [f64; 4] {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    [at(0.5), at(0.9), at(0.99), at(1.0)]
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A histogram's sum and count (or a counter's value, as `sum`), summed over the series
/// whose line contains every filter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean {
    pub sum: f64,
    pub count: f64,
}

impl Mean {
    pub fn of(text: &str, filters: &[&str]) -> Self {
        let mut mean = Self::default();
        for line in text.lines().filter(|l| filters.iter().all(|f| l.contains(f))) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            let name = series.split('{').next().unwrap_or_default();
            if name.ends_with("_sum") {
                mean.sum += value;
            } else if name.ends_with("_count") {
                mean.count += value;
            }
        }
        mean
    }

    /// The mean in milliseconds of what was observed after `before`.
    pub fn since(&self, before: &Self) -> f64 {
        1000.0 * (self.sum - before.sum) / (self.count - before.count)
    }

    /// The sum of what was observed after `before` (bytes, for a size histogram).
    pub fn sum_since(&self, before: &Self) -> f64 {
        self.sum - before.sum
    }
}

/// The API server's metrics text, read with the admin client.
pub async fn apiserver_metrics(admin: &kube::Client) -> Result<String> {
    Ok(admin
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await?)
}
