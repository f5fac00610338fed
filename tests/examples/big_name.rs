//! One big name: a record set over PODS pods, beside CoreDNS's kubernetes plugin on a
//! headless Service of the same pods, in the same run. A measurement, not a test:
//!
//!   hack/bench-big-name.sh [PODS] [FLIPS] [CHURN] [MAX_STATUS_VALUES]
//!
//! MAX_STATUS_VALUES is the operator's `--max-status-values`: the default (100) serves
//! the name from MultiValueRecordSlices; a bound above PODS keeps every value in the
//! status (the status feed before slices), for the old-against-new table.
//!
//! Every pod is a value of the one name and an endpoint of the one Service, but only 8
//! ("probe" pods) are Ready; the others are annotated unready (KWOK, standing in for
//! the kubelet, reports them so). Both paths carry all PODS values end to end (the
//! operator's status or slices hold every value with its health, as EndpointSlices hold
//! every endpoint with its conditions), while an answer holds exactly the ready ones:
//! so a flip of one probe pod is seen in every answer, on both paths, and its time is
//! the time a change takes through a name of PODS values. (What an answer costs to pick
//! from 10,000 healthy values is hack/bench-dns.sh's "8 of 10,000" row.)
//!
//! Each flip is timed from just before the readiness change is written until every DNS
//! replica's answer reflects it (two of each, polled every 1 ms over UDP). Around the
//! flips the run reads the API server's own figures: request body bytes written per flip
//! (record sets and slices for mvdns, EndpointSlices for CoreDNS) and watch-event bytes
//! sent to the watchers of mvdns's objects; and the CPU each process used per flip.
//! Then a churn: CHURN readiness changes per second over the unready pods for 10 s.
//!
//! Output: human lines, and `RESULT key=value ...` lines that `hack/bench.sh` collects.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use mvdns_api::MultiValueRecordSet;
use mvdns_tests::bench::*;
use mvdns_tests::dns::Ask;
use mvdns_tests::operator::{apply_record_set, metric_value};
use mvdns_tests::process::{Process, cpu_seconds_of, free_port, proc_status_kib};
use mvdns_tests::*;
use serde_json::json;

const PROBES: usize = 8;
/// DNS replicas on each path (the chart's default for mvdns, kubeadm's for CoreDNS).
const REPLICAS: usize = 2;
const CHURN_SECONDS: u32 = 10;

/// The API server's figures that a flip moves, read before and after.
#[derive(Clone, Copy, Debug, Default)]
struct ApiBytes {
    /// Request bodies written for record sets (status) and their slices.
    mvdns_written: Mean,
    /// Request bodies the EndpointSlice controller wrote.
    endpointslices_written: Mean,
    /// Watch events sent for record sets and slices (to every DNS replica).
    mvdns_watched: Mean,
}

impl ApiBytes {
    async fn read(admin: &kube::Client) -> Result<Self> {
        let text = apiserver_metrics(admin).await?;
        let body = "apiserver_request_body_size_bytes_";
        let watch = "apiserver_watch_events_sizes_";
        let sum = |a: Mean, b: Mean| Mean {
            sum: a.sum + b.sum,
            count: a.count + b.count,
        };
        Ok(Self {
            mvdns_written: sum(
                Mean::of(&text, &[body, "resource=\"multivaluerecordsets\""]),
                Mean::of(&text, &[body, "resource=\"multivaluerecordslices\""]),
            ),
            endpointslices_written: Mean::of(&text, &[body, "resource=\"endpointslices\""]),
            mvdns_watched: sum(
                Mean::of(&text, &[watch, "resource=\"multivaluerecordsets\""]),
                Mean::of(&text, &[watch, "resource=\"multivaluerecordslices\""]),
            ),
        })
    }
}

/// CPU seconds used so far by the operator, one mvdns replica and one CoreDNS replica.
fn cpu_now(operator: &Process, dns: &Process, coredns_pid: u32) -> Result<[f64; 3]> {
    Ok([
        operator.cpu_seconds()?,
        dns.cpu_seconds()?,
        cpu_seconds_of(coredns_pid)?,
    ])
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let mut args = std::env::args().skip(1);
    let pods: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000)
        .max(PROBES);
    let flips: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let churn_per_second: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let max_status_values: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let feed = if pods > max_status_values { "slices" } else { "status" };
    let coredns =
        std::env::var("MVDNS_COREDNS").context("MVDNS_COREDNS: the CoreDNS binary (hack/coredns-build.sh)")?;

    let env = TestEnv::get()?;
    let admin = env.admin_client().await?;
    install_crd(&admin).await?;
    remove_earlier_runs(&admin).await?;
    let ns = TestNamespace::new(&env, &admin, "big").await?;
    install_chart_rbac(&env, &ns.name).await?;
    let pod_api: Api<Pod> = ns.api();

    // Pods spread over every KWOK node: each hands out addresses from its own /20 and
    // reuses them when it runs out, so PODS distinct values need PODS / 4,094 nodes.
    let nodes: Vec<String> = Api::<Node>::all(admin.clone())
        .list(&ListParams::default().labels("type=kwok"))
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    anyhow::ensure!(
        nodes.len() * 4094 >= pods,
        "{pods} pods need {} KWOK nodes (MVDNS_KWOK_NODES), there are {}",
        pods.div_ceil(4094),
        nodes.len()
    );
    eprintln!(
        "creating {pods} pods behind one name on {} KWOK nodes ({PROBES} of them Ready)",
        nodes.len()
    );
    let specs: Vec<PodSpec> = (0..pods)
        .map(|i| {
            let spec = PodSpec::new(if i < PROBES {
                format!("probe-{i}")
            } else {
                format!("bg-{}", i - PROBES)
            })
            .label("app", "big")
            .on_node(&nodes[i % nodes.len()]);
            if i < PROBES {
                spec
            } else {
                spec.annotation(TEST_READY_ANNOTATION, "false")
            }
        })
        .collect();
    let started = Instant::now();
    create_many(&pod_api, &specs, 5000).await?;
    eprintln!("{pods} pods created in {:.0} s", started.elapsed().as_secs_f64());

    let name = format!("big.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "big",
        json!({"name": name, "type": "A", "podSelector": {"matchLabels": {"app": "big"}}}),
    )
    .await?;
    let services: Api<Service> = ns.api();
    let headless: Service = serde_json::from_value(json!({
        "metadata": {"name": "big"},
        "spec": {"clusterIP": "None", "selector": {"app": "big"}, "ports": [{"name": "http", "port": 80}]},
    }))?;
    services.create(&PostParams::default(), &headless).await?;

    let operator = Process::operator_with_args(
        &env,
        &ns.name,
        "big",
        15,
        &["--max-status-values", &max_status_values.to_string()],
    )
    .await?;
    let mut replicas = Vec::new();
    let mut replica_addresses = Vec::new();
    for i in 0..REPLICAS {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let replica = Process::dns(&env, &ns.name, &format!("dns-{i}"), &["example.internal."], address).await?;
        replica.wait_ready(Duration::from_secs(300)).await?;
        replicas.push(replica);
        replica_addresses.push(address);
    }
    let mut coredns_addresses = Vec::new();
    let mut coredns_processes = Vec::new();
    for i in 0..REPLICAS {
        let (address, process) = start_coredns(&env, &coredns, &format!("big-coredns-{i}")).await?;
        coredns_addresses.push(address);
        coredns_processes.push(process);
    }
    let coredns_pid = coredns_processes[0].id().context("CoreDNS exited")?;

    // Settled: every pod listed in the name, the 8 probes healthy (KWOK is still
    // reporting the others unready for a while after they are created).
    let sets: Api<MultiValueRecordSet> = ns.api();
    let limit = Duration::from_secs(120 + (pods / 100) as u64);
    let deadline = Instant::now() + limit;
    let mut next_report = Instant::now() + Duration::from_secs(15);
    loop {
        let status = sets.get("big").await?.status.unwrap_or_default();
        if status.total_count as usize == pods && status.healthy_count as usize == PROBES {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after {limit:?} the name lists {} values ({} healthy) of {pods} ({PROBES} healthy)",
            status.total_count,
            status.healthy_count
        );
        if Instant::now() > next_report {
            eprintln!(
                "  waiting for the name to settle: {} values listed, {} healthy",
                status.total_count, status.healthy_count
            );
            next_report += Duration::from_secs(15);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut probe_pods = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        probe_pods.push(pod_api.get(&format!("probe-{i}")).await?);
    }
    let all: BTreeSet<String> = probe_pods.iter().filter_map(pod_ip).map(String::from).collect();
    let mvdns_ask = Ask::new(&name, RecordType::A);
    let coredns_ask = Ask::new(&format!("big.{}.svc.cluster.local.", ns.name), RecordType::A);
    let servers: Vec<(SocketAddr, &Ask)> = replica_addresses
        .iter()
        .map(|address| (*address, &mvdns_ask))
        .chain(coredns_addresses.iter().map(|address| (*address, &coredns_ask)))
        .collect();
    wait_all(&servers, &all, limit).await.context("initial answers")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = sets.get("big").await?.status.unwrap_or_default();
    let status_bytes = serde_json::to_vec(&stored)?.len();
    eprintln!(
        "settled after {:.0} s: {pods} values ({feed} feed, {} slices, status {status_bytes} bytes); flipping {flips} times",
        started.elapsed().as_secs_f64(),
        stored.slices.unwrap_or(0)
    );

    let writes_before = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total");
    let bytes_before = ApiBytes::read(&admin).await?;
    let cpu_before = cpu_now(&operator, &replicas[0], coredns_pid)?;
    let (mut mvdns_times, mut coredns_times) = (Vec::new(), Vec::new());
    let (mut mvdns_first_times, mut coredns_first_times) = (Vec::new(), Vec::new());
    let mut ready = [true; PROBES];
    for flip in 0..flips {
        // Down then up again, one pod at a time: never all down.
        let i = (flip / 2) % PROBES;
        ready[i] = !ready[i];
        let expected: BTreeSet<String> = probe_pods
            .iter()
            .zip(&ready)
            .filter(|(_, r)| **r)
            .filter_map(|(p, _)| pod_ip(p).map(String::from))
            .collect();
        let flipped_at = Instant::now();
        let patch =
            json!({"metadata": {"annotations": {TEST_READY_ANNOTATION: if ready[i] { "true" } else { "false" }}}});
        pod_api
            .patch(&format!("probe-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let done = wait_all(&servers, &expected, Duration::from_secs(60)).await?;
        let (mvdns_done, coredns_done) = done.split_at(REPLICAS);
        let [mvdns_first, mvdns_every] = first_and_last(mvdns_done).context("no mvdns replica")?;
        let [coredns_first, coredns_every] = first_and_last(coredns_done).context("no CoreDNS replica")?;
        mvdns_times.push(mvdns_every - flipped_at);
        mvdns_first_times.push(mvdns_first - flipped_at);
        coredns_times.push(coredns_every - flipped_at);
        coredns_first_times.push(coredns_first - flipped_at);
        if (flip + 1) % 25 == 0 {
            eprintln!("  {} of {flips} flips", flip + 1);
        }
        // Past the operator's coalescing window (100 ms) before the next flip, as in
        // tests/examples/convergence.rs: a flip within the window of the last write
        // waits for it, and the figure would be the window's, not the name's.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The writes of the last flip have all landed once its answers changed.
    let bytes_after = ApiBytes::read(&admin).await?;
    let cpu_after = cpu_now(&operator, &replicas[0], coredns_pid)?;
    let writes = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total") - writes_before;
    let per_flip = |after: &Mean, before: &Mean| after.sum_since(before) / flips as f64;
    let written = per_flip(&bytes_after.mvdns_written, &bytes_before.mvdns_written);
    let slices_written = per_flip(
        &bytes_after.endpointslices_written,
        &bytes_before.endpointslices_written,
    );
    let watched = per_flip(&bytes_after.mvdns_watched, &bytes_before.mvdns_watched);
    let cpu_ms: Vec<f64> = (0..3)
        .map(|k| 1000.0 * (cpu_after[k] - cpu_before[k]) / flips as f64)
        .collect();
    let [m50, _, m99, mmax] = percentiles(&mut mvdns_times);
    let [mf50, _, mf99, _] = percentiles(&mut mvdns_first_times);
    let [c50, _, c99, cmax] = percentiles(&mut coredns_times);
    let [cf50, _, cf99, _] = percentiles(&mut coredns_first_times);
    println!(
        "{pods} values, {feed} feed: mvdns every replica p50 {m50:.1} ms p99 {m99:.1} ms (first p50 {mf50:.1} p99 {mf99:.1}); \
         CoreDNS p50 {c50:.1} ms p99 {c99:.1} ms (first p50 {cf50:.1} p99 {cf99:.1})"
    );
    println!(
        "  per flip: mvdns wrote {written:.0} bytes ({:.2} writes), watchers got {watched:.0} bytes; \
         the EndpointSlice controller wrote {slices_written:.0} bytes; CPU ms: operator {:.1}, DNS {:.1}, CoreDNS {:.1}",
        writes / flips as f64,
        cpu_ms[0],
        cpu_ms[1],
        cpu_ms[2]
    );
    let rss = |kib: Result<u64>| kib.map(mib).unwrap_or(0.0);
    println!(
        "RESULT bigname pods={pods} feed={feed} flips={flips} mvdns_p50_ms={m50:.1} mvdns_p99_ms={m99:.1} mvdns_max_ms={mmax:.1} \
         mvdns_first_p50_ms={mf50:.1} mvdns_first_p99_ms={mf99:.1} coredns_p50_ms={c50:.1} coredns_p99_ms={c99:.1} \
         coredns_max_ms={cmax:.1} coredns_first_p50_ms={cf50:.1} coredns_first_p99_ms={cf99:.1} \
         bytes_per_flip={written:.0} watch_bytes_per_flip={watched:.0} endpointslice_bytes_per_flip={slices_written:.0} \
         operator_cpu_ms_per_flip={:.1} dns_cpu_ms_per_flip={:.1} coredns_cpu_ms_per_flip={:.1} \
         operator_rss_mib={:.1} dns_rss_mib={:.1} coredns_rss_mib={:.1} status_bytes={status_bytes} slices={}",
        cpu_ms[0],
        cpu_ms[1],
        cpu_ms[2],
        rss(operator.rss_kib()),
        rss(replicas[0].rss_kib()),
        rss(proc_status_kib(coredns_pid, "VmRSS:")),
        stored.slices.unwrap_or(0),
    );

    churn(
        &admin,
        &pod_api,
        pods - PROBES,
        churn_per_second,
        &operator,
        &replicas[0],
        coredns_pid,
        feed,
    )
    .await?;

    for mut coredns in coredns_processes {
        let _ = coredns.kill().await;
    }
    for replica in replicas {
        replica.stop().await?;
    }
    operator.stop().await?;
    Ok(())
}

/// Deletes the namespaces of earlier runs (a run's namespace is deleted as it ends,
/// which the API server finishes in the background, and an interrupted run leaves its
/// own) and waits until they are gone: every watcher here is cluster-wide, and an old
/// name's thousands of pods going away would be counted against this run.
async fn remove_earlier_runs(admin: &kube::Client) -> Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let started = Instant::now();
    let mut next_report = started;
    loop {
        let earlier: Vec<String> = namespaces
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .filter(|n| n.starts_with("big-"))
            .collect();
        if earlier.is_empty() {
            return Ok(());
        }
        for name in &earlier {
            let _ = namespaces.delete(name, &Default::default()).await;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "the namespaces of earlier runs are still there after 15 minutes: {earlier:?}"
        );
        if Instant::now() >= next_report {
            eprintln!("waiting for the namespaces of earlier runs to go: {earlier:?}");
            next_report += Duration::from_secs(15);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `per_second` readiness changes per second for 10 s (unready pods turn Ready, each
/// once): the writes and bytes per second on each path, and the CPU each process used.
#[allow(clippy::too_many_arguments)]
async fn churn(
    admin: &kube::Client,
    pods: &Api<Pod>,
    unready: usize,
    per_second: u32,
    operator: &Process,
    dns: &Process,
    coredns_pid: u32,
    feed: &str,
) -> Result<()> {
    if per_second == 0 || unready == 0 {
        return Ok(());
    }
    let total = usize::try_from(per_second * CHURN_SECONDS)?.min(unready);
    eprintln!("churn: {total} readiness changes at {per_second}/s");
    let writes_before = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total");
    let bytes_before = ApiBytes::read(admin).await?;
    let cpu_before = cpu_now(operator, dns, coredns_pid)?;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut patches = tokio::task::JoinSet::new();
    for i in 0..total {
        ticks.tick().await;
        let pods = pods.clone();
        let name = format!("bg-{i}");
        patches.spawn(async move {
            let patch = json!({"metadata": {"annotations": {TEST_READY_ANNOTATION: "true"}}});
            pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
        });
        while patches.len() > 32 {
            patches.join_next().await.context("patch task")???;
        }
    }
    while let Some(done) = patches.join_next().await {
        done??;
    }
    let sent_in = started.elapsed().as_secs_f64();
    // Let the last window and KWOK's last updates pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let writes = metric_value(&operator.metrics().await?, "mvdns_operator_status_writes_total") - writes_before;
    let bytes_after = ApiBytes::read(admin).await?;
    let cpu_after = cpu_now(operator, dns, coredns_pid)?;
    let per_second_of = |after: &Mean, before: &Mean| after.sum_since(before) / elapsed;
    let written = per_second_of(&bytes_after.mvdns_written, &bytes_before.mvdns_written);
    let slices_written = per_second_of(
        &bytes_after.endpointslices_written,
        &bytes_before.endpointslices_written,
    );
    let pct: Vec<f64> = (0..3)
        .map(|k| 100.0 * (cpu_after[k] - cpu_before[k]) / elapsed)
        .collect();
    println!(
        "churn: {total} changes in {sent_in:.1} s: mvdns {writes} writes, {:.0} KB/s written ({:.0} bytes per change); \
         EndpointSlices {:.0} KB/s; CPU: operator {:.0}%, DNS {:.0}%, CoreDNS {:.0}%",
        written / 1000.0,
        written * elapsed / total as f64,
        slices_written / 1000.0,
        pct[0],
        pct[1],
        pct[2]
    );
    println!(
        "RESULT bigchurn pods={} feed={feed} changes={total} changes_per_s={:.0} writes={writes} \
         bytes_per_s={written:.0} bytes_per_change={:.0} endpointslice_bytes_per_s={slices_written:.0} \
         operator_cpu_pct={:.0} dns_cpu_pct={:.0} coredns_cpu_pct={:.0}",
        unready + PROBES,
        total as f64 / sent_in,
        written * elapsed / total as f64,
        pct[0],
        pct[1],
        pct[2]
    );
    Ok(())
}
