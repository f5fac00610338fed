//! Convergence: the time from a pod's readiness change to the DNS answers changing, for
//! mvdns (operator -> status -> every DNS replica) and, in the same run over the same
//! pods, for CoreDNS's kubernetes plugin on a headless Service (kubelet stand-in ->
//! EndpointSlice controller -> CoreDNS). A measurement, not a test:
//!
//!   hack/bench-convergence.sh [PODS] [FLIPS]
//!
//! PODS simulated pods in 100 record sets (the background load every watcher carries),
//! plus 8 "probe" pods behind one record set and one headless Service, whose readiness
//! is flipped FLIPS times. Each flip is timed from just before the readiness change is
//! written until the answer of every mvdns replica (two) and of CoreDNS reflects it;
//! they are polled every 2 ms over UDP.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use mvdns_tests::dns::{Ask, RunningDns, answer_data, udp};
use mvdns_tests::operator::{RunningOperator, apply_record_set, metric_value};
use mvdns_tests::*;
use serde_json::json;

const SETS: usize = 100;
const PROBES: usize = 8;

#[tokio::main]
async fn main() -> Result<()> {
    // RUST_LOG=mvdns_operator=debug shows the operator's decisions with timestamps.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let flips: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let coredns =
        std::env::var("MVDNS_COREDNS").context("MVDNS_COREDNS: the CoreDNS binary (hack/coredns-build.sh)")?;

    let env = TestEnv::get()?;
    let admin = env.admin_client().await?;
    install_crd(&admin).await?;
    let ns = TestNamespace::new(&env, &admin, "conv").await?;
    install_chart_rbac(&env, &ns.name).await?;
    let pod_api: Api<Pod> = ns.api();

    eprintln!("creating {pods} background pods in {SETS} record sets and {PROBES} probe pods");
    let background: Vec<PodSpec> = (0..pods)
        .map(|i| {
            PodSpec::new(format!("bg-{i}"))
                .label("set", &format!("s{}", i % SETS))
                .on_node(&format!("kwok-node-{}", i % 3))
        })
        .collect();
    create_many(&pod_api, &background).await?;
    let probes: Vec<PodSpec> = (0..PROBES)
        .map(|i| {
            PodSpec::new(format!("probe-{i}"))
                .label("probe", "yes")
                .on_node(&format!("kwok-node-{}", i % 3))
        })
        .collect();
    let probe_pods = create_ready_pods(&pod_api, &probes).await?;
    for i in 0..SETS {
        let spec = json!({"name": format!("s{i}.{}.example.internal.", ns.name), "type": "A", "podSelector": {"matchLabels": {"set": format!("s{i}")}}});
        apply_record_set(&env, &ns.name, &format!("s{i}"), spec).await?;
    }
    let name = format!("probe.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "probe",
        json!({"name": name, "type": "A", "podSelector": {"matchLabels": {"probe": "yes"}}}),
    )
    .await?;
    let services: Api<Service> = ns.api();
    let headless: Service = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"clusterIP": "None", "selector": {"probe": "yes"}, "ports": [{"name": "http", "port": 80}]},
    }))?;
    services.create(&PostParams::default(), &headless).await?;

    let operator = RunningOperator::start(&env, &ns.name, "conv", 15).await?;
    let replicas = [
        RunningDns::start(&env, &ns.name, &["example.internal."]).await?,
        RunningDns::start(&env, &ns.name, &["example.internal."]).await?,
    ];
    for replica in &replicas {
        replica.wait_synced().await?;
    }
    let (coredns_address, mut coredns_process) = start_coredns(&env, &coredns).await?;

    let all: BTreeSet<String> = probe_pods.iter().filter_map(pod_ip).map(String::from).collect();
    let mvdns_ask = Ask::new(&name, RecordType::A);
    let coredns_ask = Ask::new(&format!("probe.{}.svc.cluster.local.", ns.name), RecordType::A);
    let servers: Vec<(SocketAddr, &Ask)> = replicas
        .iter()
        .map(|r| (r.address, &mvdns_ask))
        .chain([(coredns_address, &coredns_ask)])
        .collect();
    wait_all(&servers, &all, Duration::from_secs(60))
        .await
        .context("initial answers")?;
    // Every record set has its first status before the flips, so that the write count
    // below is the flips' alone.
    let sets: Api<mvdns_api::MultiValueRecordSet> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(120);
    while sets
        .list(&Default::default())
        .await?
        .items
        .iter()
        .any(|s| s.status.as_ref().is_none_or(|st| st.values.is_empty()))
    {
        if Instant::now() > deadline {
            bail!("not every record set got a status within 120s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("all answers complete; flipping probe pods {flips} times");

    let writes_before = metric_value(&operator.health.metrics.encode(), "mvdns_operator_status_writes_total");
    let (mut mvdns_times, mut coredns_times) = (Vec::new(), Vec::new());
    let mut ready: Vec<bool> = vec![true; PROBES];
    for flip in 0..flips {
        // Down then up again, one pod at a time: never all down (where Route 53's
        // fail-open would answer the unhealthy ones).
        let i = (flip / 2) % PROBES;
        ready[i] = !ready[i];
        let expected: BTreeSet<String> = probe_pods
            .iter()
            .zip(&ready)
            .filter(|(_, r)| **r)
            .filter_map(|(p, _)| pod_ip(p).map(String::from))
            .collect();
        let started = Instant::now();
        tracing::debug!(flip, pod = i, ready = ready[i], "flipping");
        let patch =
            json!({"metadata": {"annotations": {"mvdns.io/test-ready": if ready[i] { "true" } else { "false" }}}});
        pod_api
            .patch(&format!("probe-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let done = wait_all(&servers, &expected, Duration::from_secs(30)).await?;
        mvdns_times.push(done[0].max(done[1]) - started);
        coredns_times.push(done[2] - started);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes = metric_value(&operator.health.metrics.encode(), "mvdns_operator_status_writes_total") - writes_before;

    let text = operator.health.metrics.encode();
    let reconcile_ms = 1000.0 * metric_value(&text, "mvdns_operator_reconcile_duration_seconds_sum")
        / metric_value(&text, "mvdns_operator_reconcile_duration_seconds_count");
    println!(
        "pods={pods} record_sets={} flips={flips} status_writes={writes} mean_reconcile_ms={reconcile_ms:.1}",
        SETS + 1
    );
    println!("{}", summary("mvdns (both replicas)", &mut mvdns_times));
    println!("{}", summary("CoreDNS kubernetes plugin", &mut coredns_times));

    let _ = coredns_process.kill().await;
    for replica in replicas {
        replica.stop().await;
    }
    operator.stop().await;
    Ok(())
}

/// Creates pods without waiting for each: KWOK makes them Ready meanwhile.
async fn create_many(pods: &Api<Pod>, specs: &[PodSpec]) -> Result<()> {
    for chunk in specs.chunks(50) {
        let creates = chunk.iter().map(|spec| async move {
            pods.create(&PostParams::default(), &spec.to_pod()?).await?;
            anyhow::Ok(())
        });
        futures::future::try_join_all(creates).await?;
    }
    Ok(())
}

/// Polls every server every 2 ms until its answer is exactly `expected`; returns when
/// each one first got there.
async fn wait_all(
    servers: &[(SocketAddr, &Ask)],
    expected: &BTreeSet<String>,
    limit: Duration,
) -> Result<Vec<Instant>> {
    let deadline = Instant::now() + limit;
    let mut done: Vec<Option<Instant>> = vec![None; servers.len()];
    while done.iter().any(Option::is_none) {
        for (slot, (address, ask)) in done.iter_mut().zip(servers) {
            if slot.is_some() {
                continue;
            }
            // A server still starting (CoreDNS waits for its first list) does not answer yet.
            let Ok(answer) = udp(*address, ask).await else { continue };
            if answer_data(&answer).into_iter().collect::<BTreeSet<_>>() == *expected {
                *slot = Some(Instant::now());
            }
        }
        if Instant::now() > deadline {
            let mut last = Vec::new();
            for (address, ask) in servers {
                let answer = udp(*address, ask).await.map(|a| answer_data(&a));
                last.push(format!("{address}: {answer:?}"));
            }
            bail!("answers did not converge within {limit:?} to {expected:?}; last: {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(done.into_iter().flatten().collect())
}

/// CoreDNS with the kubernetes plugin (no cache, as the comparison is about the data
/// path) on a free loopback port, reading the API server with the admin kubeconfig.
async fn start_coredns(env: &TestEnv, binary: &str) -> Result<(SocketAddr, tokio::process::Child)> {
    let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let corefile = format!(
        ".:{port} {{\n    bind 127.0.0.1\n    kubernetes cluster.local {{\n        kubeconfig {}\n        ttl 0\n    }}\n}}\n",
        env.admin_kubeconfig().display()
    );
    let path = env.dir.join("convergence.Corefile");
    std::fs::write(&path, corefile)?;
    let child = tokio::process::Command::new(binary)
        .arg("-conf")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.join("convergence-coredns.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting CoreDNS")?;
    Ok(((Ipv4Addr::LOCALHOST, port).into(), child))
}

fn summary(label: &str, times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    format!(
        "{label:28} p50 {:7.1} ms  p90 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}
