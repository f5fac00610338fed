//! Convergence: the time from a pod's readiness change to the DNS answers changing, for
//! mvdns (operator -> status -> every DNS replica) and, in the same run over the same
//! pods, for CoreDNS's kubernetes plugin on a headless Service (kubelet stand-in ->
//! EndpointSlice controller -> CoreDNS). A measurement, not a test:
//!
//!   hack/bench-convergence.sh [PODS] [FLIPS] [CHURN]
//!
//! PODS simulated pods in 100 record sets (the background load every watcher carries),
//! plus 8 "probe" pods behind one record set and one headless Service, whose readiness
//! is flipped FLIPS times. Each flip is timed from just before the readiness change is
//! written until the answer of every DNS replica reflects it: two mvdns replicas and two
//! CoreDNS replicas (the chart's default and kubeadm's, so the yardstick means the same
//! on both paths). Each replica is polled on its own loop every 1 ms over UDP; the time
//! the first replica of each path got there is reported too. A watch on the probe
//! record set and one on the Service's EndpointSlices time the middle hop of each path
//! (status written, slice written), so the note can say where the time goes.
//!
//! Every part is its own process, as in a cluster: the operator and the DNS replicas
//! are the release binaries (`MVDNS_BIN_DIR`, set by the script) under the chart's
//! ServiceAccounts, CoreDNS is CoreDNS. After the flips the run measures the processes
//! (RSS, CPU) and then a churn: CHURN readiness flips per second over the background pods
//! for 10 s, counting the operator's status writes per second.
//!
//! Output: human lines, and `RESULT key=value ...` lines that `hack/bench.sh` collects.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mvdns_tests::bench::*;
use mvdns_tests::dns::Ask;
use mvdns_tests::operator::{apply_record_set, metric_value};
use mvdns_tests::process::{Process, free_port, proc_status_kib};
use mvdns_tests::*;
use serde_json::json;

const SETS: usize = 100;
const PROBES: usize = 8;
/// DNS replicas on each path: the chart's default for mvdns, and kubeadm's for CoreDNS,
/// so that "every replica answers" means the same on both.
const REPLICAS: usize = 2;

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
    let flips: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(400);
    let churn_per_second: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
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
    create_many(&pod_api, &background, 2000).await?;
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

    let operator = Process::operator(&env, &ns.name, "conv", 15).await?;
    let mut replicas = Vec::new();
    let mut replica_addresses = Vec::new();
    for i in 0..REPLICAS {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let replica = Process::dns(&env, &ns.name, &format!("dns-{i}"), &["example.internal."], address).await?;
        replica.wait_ready(Duration::from_secs(120)).await?;
        replicas.push(replica);
        replica_addresses.push(address);
    }
    let mut coredns_addresses = Vec::new();
    let mut coredns_processes = Vec::new();
    for i in 0..REPLICAS {
        let (address, process) = start_coredns(&env, &coredns, &format!("convergence-coredns-{i}")).await?;
        coredns_addresses.push(address);
        coredns_processes.push(process);
    }
    let status_seen = watch_probe_status(&env, &ns.name).await?;
    let slice_seen = watch_probe_slices(&env, &ns.name).await?;
    let pods_seen = watch_probe_pods(&env, &ns.name).await?;

    let all: BTreeSet<String> = probe_pods.iter().filter_map(pod_ip).map(String::from).collect();
    let mvdns_ask = Ask::new(&name, RecordType::A);
    let coredns_ask = Ask::new(&format!("probe.{}.svc.cluster.local.", ns.name), RecordType::A);
    let servers: Vec<(SocketAddr, &Ask)> = replica_addresses
        .iter()
        .map(|address| (*address, &mvdns_ask))
        .chain(coredns_addresses.iter().map(|address| (*address, &coredns_ask)))
        .collect();
    wait_all(&servers, &all, Duration::from_secs(60))
        .await
        .context("initial answers")?;
    // Every record set has its complete status (every pod Ready and listed) before the
    // flips, so that the write count below is the flips' alone: with 10,000 pods KWOK
    // is still reporting pods Ready for a while after every set has some status.
    let sets: Api<mvdns_api::MultiValueRecordSet> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed = sets.list(&Default::default()).await?.items;
        let healthy: usize = listed
            .iter()
            .map(|s| s.status.as_ref().map_or(0, |st| st.healthy_count as usize))
            .sum();
        if listed.len() == SETS + 1 && healthy == pods + PROBES {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the record sets list {healthy} healthy values of {} after 300 s",
                pods + PROBES
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("all answers complete; flipping probe pods {flips} times");

    let writes_before = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total");
    let reconciles_before = Mean::of(
        &operator.metrics().await?,
        &["mvdns_operator_reconcile_duration_seconds"],
    );
    let api_before = apiserver_write_means(&admin).await?;
    let (mut mvdns_times, mut coredns_times) = (Vec::new(), Vec::new());
    let (mut mvdns_first_times, mut coredns_first_times) = (Vec::new(), Vec::new());
    let (mut status_times, mut slice_times, mut pod_times) = (Vec::new(), Vec::new(), Vec::new());
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
        let (mvdns_done, coredns_done) = done.split_at(REPLICAS);
        let [mvdns_first, mvdns_every] = first_and_last(mvdns_done).context("no mvdns replica")?;
        let [coredns_first, coredns_every] = first_and_last(coredns_done).context("no CoreDNS replica")?;
        mvdns_times.push(mvdns_every - started);
        mvdns_first_times.push(mvdns_first - started);
        coredns_times.push(coredns_every - started);
        coredns_first_times.push(coredns_first - started);
        // The middle hops: when the watches first saw the new set (they are at least as
        // quick as the answers, which depend on them).
        tokio::time::sleep(Duration::from_millis(200)).await;
        status_times
            .push(first_seen(&status_seen, started, &expected).context("status never showed the flip")? - started);
        slice_times
            .push(first_seen(&slice_seen, started, &expected).context("no EndpointSlice showed the flip")? - started);
        pod_times.push(first_seen(&pods_seen, started, &expected).context("no pod watch showed the flip")? - started);
    }
    let writes = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total") - writes_before;

    // Where the operator's time goes during the flips: a reconcile (which includes the
    // status write), and the API server's own time for that write against the
    // EndpointSlice controller's.
    let reconcile_ms = Mean::of(
        &operator.metrics().await?,
        &["mvdns_operator_reconcile_duration_seconds"],
    )
    .since(&reconciles_before);
    let api_after = apiserver_write_means(&admin).await?;
    let status_write_ms = api_after[0].since(&api_before[0]);
    let slice_write_ms = api_after[1].since(&api_before[1]);
    println!(
        "pods={pods} record_sets={} flips={flips} status_writes={writes} mean_reconcile_ms={reconcile_ms:.1} \
         apiserver_status_apply_ms={status_write_ms:.1} apiserver_endpointslice_write_ms={slice_write_ms:.1}",
        SETS + 1
    );
    let rows = [
        ("mvdns", "mvdns (every replica)", &mut mvdns_times),
        ("mvdns_first", "  first replica", &mut mvdns_first_times),
        ("mvdns_status", "  of which: status written", &mut status_times),
        ("coredns", "CoreDNS (every replica)", &mut coredns_times),
        ("coredns_first", "  first replica", &mut coredns_first_times),
        ("coredns_slice", "  of which: EndpointSlice", &mut slice_times),
        ("pod_ready", "both: pod Ready written", &mut pod_times),
    ];
    for (key, label, times) in rows {
        let [p50, p90, p99, max] = percentiles(times);
        println!("{label:28} p50 {p50:7.1} ms  p90 {p90:7.1} ms  p99 {p99:7.1} ms  max {max:7.1} ms");
        println!(
            "RESULT convergence pods={pods} path={key} flips={flips} p50_ms={p50:.1} p90_ms={p90:.1} p99_ms={p99:.1} max_ms={max:.1} status_writes={writes}"
        );
    }

    // The processes at this size: every value listed and served.
    let probe_status = status_bytes(&sets, "probe").await?;
    let set_status = status_bytes(&sets, "s0").await?;
    let coredns_rss = coredns_processes[0]
        .id()
        .map_or(Ok(0), |pid| proc_status_kib(pid, "VmRSS:"))?;
    let served = metric_value(&replicas[0].metrics().await?, "mvdns_dns_values_served");
    println!(
        "RESULT resources pods={pods} values_served={served} operator_rss_mib={:.1} operator_peak_rss_mib={:.1} operator_cpu_s={:.2} dns_rss_mib={:.1} dns_peak_rss_mib={:.1} dns_cpu_s={:.2} coredns_rss_mib={:.1} status_bytes_s0={set_status} status_bytes_probe={probe_status}",
        mib(operator.rss_kib()?),
        mib(operator.peak_rss_kib()?),
        operator.cpu_seconds()?,
        mib(replicas[0].rss_kib()?),
        mib(replicas[0].peak_rss_kib()?),
        replicas[0].cpu_seconds()?,
        mib(coredns_rss),
    );

    churn(&pod_api, pods, churn_per_second, &operator, &replicas[0]).await?;

    for mut coredns in coredns_processes {
        let _ = coredns.kill().await;
    }
    for replica in replicas {
        replica.stop().await?;
    }
    operator.stop().await?;
    Ok(())
}

/// The size of a record set's status as JSON, in bytes.
async fn status_bytes(sets: &Api<mvdns_api::MultiValueRecordSet>, name: &str) -> Result<usize> {
    let set = sets.get(name).await?;
    Ok(serde_json::to_vec(&set.status)?.len())
}

/// CHURN readiness flips per second over the background pods for 10 s (each pod flipped
/// at most once, so the flips are changes): the operator's status writes per second,
/// the flips per write, and the CPU the operator and one DNS replica used meanwhile.
async fn churn(pods: &Api<Pod>, background: usize, per_second: u32, operator: &Process, dns: &Process) -> Result<()> {
    const SECONDS: u32 = 10;
    if per_second == 0 || background == 0 {
        return Ok(());
    }
    let total = usize::try_from(per_second * SECONDS)?.min(background);
    let writes_before = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total");
    let (operator_cpu, dns_cpu) = (operator.cpu_seconds()?, dns.cpu_seconds()?);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut patches = tokio::task::JoinSet::new();
    for i in 0..total {
        ticks.tick().await;
        let pods = pods.clone();
        // Spread over the record sets: pod i is in set i mod 100.
        let name = format!("bg-{i}");
        patches.spawn(async move {
            let patch = json!({"metadata": {"annotations": {TEST_READY_ANNOTATION: "false"}}});
            pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
        });
        while patches.len() > 32 {
            patches.join_next().await.context("patch task")???;
        }
    }
    while let Some(done) = patches.join_next().await {
        done??;
    }
    let sent_in = started.elapsed();
    // Let the last window and KWOK's last updates pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let writes = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total") - writes_before;
    let flips_per_second = total as f64 / sent_in.as_secs_f64();
    println!(
        "churn: {total} flips in {:.1} s ({flips_per_second:.0}/s): {writes} status writes ({:.1}/s, {:.2} per flip); operator CPU {:.0}%, DNS CPU {:.0}%",
        sent_in.as_secs_f64(),
        writes / elapsed,
        writes / total as f64,
        100.0 * (operator.cpu_seconds()? - operator_cpu) / elapsed,
        100.0 * (dns.cpu_seconds()? - dns_cpu) / elapsed,
    );
    println!(
        "RESULT churn pods={background} flips={total} flips_per_s={flips_per_second:.0} status_writes={writes} writes_per_s={:.1} writes_per_flip={:.2} operator_cpu_pct={:.0} dns_cpu_pct={:.0} operator_rss_mib={:.1}",
        writes / elapsed,
        writes / total as f64,
        100.0 * (operator.cpu_seconds()? - operator_cpu) / elapsed,
        100.0 * (dns.cpu_seconds()? - dns_cpu) / elapsed,
        mib(operator.rss_kib()?),
    );
    Ok(())
}

/// The API server's handling time of the operator's status applies and of the
/// EndpointSlice controller's slice writes (`apiserver_request_duration_seconds`).
async fn apiserver_write_means(admin: &kube::Client) -> Result<[Mean; 2]> {
    let text = apiserver_metrics(admin).await?;
    let duration = "apiserver_request_duration_seconds_";
    Ok([
        Mean::of(
            &text,
            &[duration, "resource=\"multivaluerecordsets\"", "subresource=\"status\""],
        ),
        Mean::of(&text, &[duration, "resource=\"endpointslices\"", "verb=\"PUT\""]),
    ])
}

/// Sets of ready addresses as a watch saw them, with the time each arrived.
type Seen = Arc<Mutex<Vec<(Instant, BTreeSet<String>)>>>;

/// The first time at or after `since` that a watch saw exactly `expected`.
fn first_seen(seen: &Seen, since: Instant, expected: &BTreeSet<String>) -> Option<Instant> {
    let seen = seen.lock().ok()?;
    seen.iter()
        .find(|(at, set)| *at >= since && set == expected)
        .map(|(at, _)| *at)
}

/// Records every healthy set the probe record set's status shows.
async fn watch_probe_status(env: &TestEnv, namespace: &str) -> Result<Seen> {
    let api: Api<mvdns_api::MultiValueRecordSet> = Api::namespaced(env.admin_client().await?, namespace);
    let config = watcher::Config::default().fields("metadata.name=probe");
    record(
        "status",
        watcher(api, config).applied_objects(),
        |set: &mvdns_api::MultiValueRecordSet| {
            set.status
                .iter()
                .flat_map(|s| &s.values)
                .filter(|v| v.healthy)
                .map(|v| v.value.clone())
                .collect()
        },
    )
}

/// Records the set of ready probe pods' IPs after each pod event: when KWOK (standing in
/// for the kubelet) wrote the readiness change, the start both paths share.
async fn watch_probe_pods(env: &TestEnv, namespace: &str) -> Result<Seen> {
    let api: Api<Pod> = Api::namespaced(env.admin_client().await?, namespace);
    let config = watcher::Config::default().labels("probe=yes");
    let (store, writer) = kube::runtime::reflector::store();
    let events = watcher(api, config).reflect(writer).applied_objects();
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if event.is_ok()
                && let Ok(mut sink) = sink.lock()
            {
                let ready: BTreeSet<String> = store
                    .state()
                    .iter()
                    .filter(|p| is_pod_ready(p))
                    .filter_map(|p| pod_ip(p).map(String::from))
                    .collect();
                tracing::debug!(ready = ready.len(), "watch saw probe pods");
                sink.push((Instant::now(), ready));
            }
        }
    });
    Ok(seen)
}

/// Records every set of ready endpoints the probe Service's EndpointSlice shows.
async fn watch_probe_slices(env: &TestEnv, namespace: &str) -> Result<Seen> {
    let api: Api<EndpointSlice> = Api::namespaced(env.admin_client().await?, namespace);
    let config = watcher::Config::default().labels("kubernetes.io/service-name=probe");
    record(
        "endpointslice",
        watcher(api, config).applied_objects(),
        |slice: &EndpointSlice| {
            slice
                .endpoints
                .iter()
                .flatten()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                .flat_map(|e| e.addresses.iter().cloned())
                .collect()
        },
    )
}

fn record<K, S>(what: &'static str, events: S, ready: fn(&K) -> BTreeSet<String>) -> Result<Seen>
where
    K: Send + 'static,
    S: futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
{
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Ok(object) = event
                && let Ok(mut sink) = sink.lock()
            {
                let ready = ready(&object);
                tracing::debug!(ready = ready.len(), "watch saw {what}");
                sink.push((Instant::now(), ready));
            }
        }
    });
    Ok(seen)
}
