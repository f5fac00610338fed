//! The operator against the real control plane, running under the ServiceAccount and
//! RBAC the chart creates (a missing permission fails these tests).
//!
//! Each test runs its own cluster-wide operator, so the tests of this file take turns
//! (`SERIAL`); test binaries run one after another, so no other operator is running.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use mvdns_api::MultiValueRecordSet;
use mvdns_tests::operator::*;
use mvdns_tests::*;
use serde_json::json;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn status_follows_pod_readiness() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("op-pods").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op-a", 15).await?;
    let pods: Api<Pod> = ns.api();
    let specs: Vec<_> = (0..12)
        .map(|i| {
            PodSpec::new(format!("web-{i}"))
                .label("app", "web")
                .on_node(&format!("kwok-node-{}", i % 3))
        })
        .collect();
    let created = create_ready_pods(&pods, &specs).await?;
    let mut pod_ips: Vec<String> = created.iter().filter_map(pod_ip).map(String::from).collect();
    pod_ips.sort();
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": format!("web.ops.{}.example.internal.", ns.name), "type": "A", "podSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await?;

    let sets: Api<MultiValueRecordSet> = ns.api();
    let all = wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 12).await?;
    let mut served = healthy_values(&all);
    served.sort();
    assert_eq!(served, pod_ips, "every ready pod's IP is a healthy value");
    assert_eq!(
        (condition(&all, "Ready").as_str(), condition(&all, "Degraded").as_str()),
        ("True", "False")
    );
    assert!(all.observed_generation.is_some());

    for i in 0..3 {
        set_pod_ready(&pods, &format!("web-{i}"), false).await?;
    }
    let degraded = wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 9).await?;
    assert_eq!(
        (degraded.total_count, condition(&degraded, "Degraded").as_str()),
        (12, "True")
    );
    let unhealthy: Vec<_> = degraded
        .values
        .iter()
        .filter(|v| !v.healthy)
        .map(|v| v.source.as_str())
        .collect();
    assert_eq!(unhealthy.len(), 3);
    assert!(
        unhealthy
            .iter()
            .all(|s| ["pod/web-0", "pod/web-1", "pod/web-2"].contains(s)),
        "{unhealthy:?}"
    );

    for i in 3..12 {
        set_pod_ready(&pods, &format!("web-{i}"), false).await?;
    }
    let none = wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 0).await?;
    assert_eq!((none.total_count, condition(&none, "Ready").as_str()), (12, "False"));

    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let gone = wait_status(&sets, "web", LIMIT, |s| s.total_count == 0).await?;
    assert!(gone.values.is_empty());

    // Transitions were announced as Events, each once.
    let events: Api<Event> = ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "BecameHealthy").count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| *r == "AllUnhealthy").count(),
        1,
        "{reasons:?}"
    );

    // The metrics the admin port serves.
    let metrics = operator.health.metrics.encode();
    assert!(metrics.contains("mvdns_operator_leader 1"), "{metrics}");
    let writes = metric_value(&metrics, "mvdns_operator_status_writes_total");
    assert!(
        (4.0..=40.0).contains(&writes),
        "a few coalesced writes, not one per event: {writes}"
    );
    let gauge = format!(
        "mvdns_operator_healthy_values{{namespace=\"{}\",name=\"web\"}} 0",
        ns.name
    );
    assert!(metrics.contains(&gauge), "{metrics}");
    operator.stop().await;
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn dual_stack_srv_and_static_values() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("op-kinds").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op-a", 15).await?;
    let pods: Api<Pod> = ns.api();
    let specs: Vec<_> = (0..3)
        .map(|i| PodSpec::new(format!("api-{i}")).label("app", "api").port("http", 8080))
        .collect();
    let created = create_ready_pods(&pods, &specs).await?;
    let selector = json!({"matchLabels": {"app": "api"}});
    apply_record_set(
        &env,
        &ns.name,
        "v6",
        json!({"name": format!("api.kinds.{}.example.internal.", ns.name), "type": "AAAA", "podSelector": selector,
        "values": [{"value": "2001:DB8::10"}]}),
    )
    .await?;
    apply_record_set(
        &env,
        &ns.name,
        "v4",
        json!({"name": format!("api.kinds.{}.example.internal.", ns.name), "type": "A", "podSelector": selector,
        "values": [{"value": "192.0.2.10", "setIdentifier": "vm-1"}]}),
    )
    .await?;
    apply_record_set(
        &env,
        &ns.name,
        "srv",
        json!({"name": format!("_http._tcp.api.kinds.{}.example.internal.", ns.name), "type": "SRV",
        "podSelector": selector, "port": "http"}),
    )
    .await?;
    apply_record_set(
        &env,
        &ns.name,
        "srv-missing-port",
        json!({"name": format!("_x._tcp.api.kinds.{}.example.internal.", ns.name), "type": "SRV",
        "podSelector": selector, "port": "grpc"}),
    )
    .await?;

    let sets: Api<MultiValueRecordSet> = ns.api();
    let v6 = wait_status(&sets, "v6", LIMIT, |s| s.healthy_count == 4).await?;
    let v6_values = healthy_values(&v6);
    assert!(
        v6_values.contains(&"2001:db8::10".to_string()),
        "static value, canonical form: {v6_values:?}"
    );
    for pod in &created {
        let ips = pod.status.as_ref().and_then(|s| s.pod_ips.clone()).unwrap_or_default();
        let v6_ip = ips
            .iter()
            .find(|ip| ip.ip.contains(':'))
            .context("dual-stack pod has an IPv6 address")?;
        assert!(v6_values.contains(&v6_ip.ip), "{} in {v6_values:?}", v6_ip.ip);
    }
    let v4 = wait_status(&sets, "v4", LIMIT, |s| s.healthy_count == 4).await?;
    assert!(
        v4.values
            .iter()
            .any(|v| v.value == "192.0.2.10" && v.source == "static/vm-1")
    );
    assert!(
        v4.values
            .iter()
            .filter(|v| v.source.starts_with("pod/"))
            .all(|v| !v.value.contains(':')),
        "A takes IPv4 only"
    );

    let srv = wait_status(&sets, "srv", LIMIT, |s| s.healthy_count == 3).await?;
    assert!(
        srv.values.iter().all(|v| v.port == Some(8080)),
        "named port resolved: {:?}",
        srv.values
    );
    let missing = wait_status(&sets, "srv-missing-port", LIMIT, |s| {
        condition(s, "InvalidSpec") == "True"
    })
    .await?;
    let message = condition_message(&missing, "InvalidSpec");
    assert!(message.contains("named port \"grpc\""), "{message}");
    assert_eq!(missing.total_count, 0);
    operator.stop().await;
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn the_oldest_namespace_owns_a_name() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns: first } = fixture("op-owner").await?;
    let second = TestNamespace::new(&env, &env.admin_client().await?, "op-claimant").await?;
    let operator = RunningOperator::start(&env, &first.name, "op-a", 15).await?;
    let spec = |ip: &str| json!({"name": format!("shared.owner.{}.example.internal.", first.name), "type": "A", "values": [{"value": ip}]});
    apply_record_set(&env, &first.name, "web", spec("192.0.2.1")).await?;
    // Creation timestamps have one-second resolution: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply_record_set(&env, &second.name, "web", spec("192.0.2.2")).await?;

    let old_sets: Api<MultiValueRecordSet> = first.api();
    let young_sets: Api<MultiValueRecordSet> = second.api();
    let young = wait_status(&young_sets, "web", LIMIT, |s| condition(s, "Conflict") == "True").await?;
    assert_eq!(condition(&young, "Ready"), "False", "a conflicting set is not served");
    let message = condition_message(&young, "Conflict");
    assert!(message.contains(&first.name), "the winner is named: {message}");
    let old = wait_status(&old_sets, "web", LIMIT, |s| condition(s, "Ready") == "True").await?;
    assert_eq!(condition(&old, "Conflict"), "False");

    old_sets.delete("web", &DeleteParams::default()).await?;
    let taken_over = wait_status(&young_sets, "web", LIMIT, |s| condition(s, "Conflict") == "False").await?;
    assert_eq!(condition(&taken_over, "Ready"), "True");
    operator.stop().await;
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn standby_takes_over_when_the_leader_dies() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("op-leader").await?;
    let lease_seconds = 4;
    let leader = RunningOperator::start(&env, &ns.name, "op-leader", lease_seconds).await?;
    let pods: Api<Pod> = ns.api();
    create_ready_pods(
        &pods,
        &[
            PodSpec::new("db-0").label("app", "db"),
            PodSpec::new("db-1").label("app", "db"),
        ],
    )
    .await?;
    apply_record_set(
        &env,
        &ns.name,
        "db",
        json!({"name": format!("db.leader.{}.example.internal.", ns.name), "type": "A", "podSelector": {"matchLabels": {"app": "db"}}}),
    )
    .await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    wait_status(&sets, "db", LIMIT, |s| s.healthy_count == 2).await?;

    let standby = RunningOperator::start(&env, &ns.name, "op-standby", lease_seconds).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the standby is waiting, not writing
    leader.kill();
    let killed_at = Instant::now();
    set_pod_ready(&pods, "db-0", false).await?;
    wait_status(&sets, "db", LIMIT, |s| s.healthy_count == 1).await?;
    let takeover = killed_at.elapsed();
    assert!(takeover < Duration::from_secs(lease_seconds * 3), "took {takeover:?}");
    println!("standby took over and wrote status {takeover:?} after the leader died (lease {lease_seconds}s)");

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = ns.api();
    let holder = leases.get("mvdns-operator").await?.spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("op-standby"));
    standby.stop().await;
    let released = leases.get("mvdns-operator").await?.spec.and_then(|s| s.holder_identity);
    assert_eq!(released, None, "graceful shutdown releases the lease");
    Ok(())
}

/// Time from a readiness change (the kubelet's, here KWOK's, status write) to the
/// operator's status write, over 100 flips. Prints the figures; asserts correctness.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn readiness_to_status_latency() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("op-latency").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op-a", 15).await?;
    let pods: Api<Pod> = ns.api();
    let specs: Vec<_> = (0..4)
        .map(|i| PodSpec::new(format!("app-{i}")).label("app", "lat"))
        .collect();
    create_ready_pods(&pods, &specs).await?;
    apply_record_set(
        &env,
        &ns.name,
        "lat",
        json!({"name": format!("lat.{}.example.internal.", ns.name), "type": "A", "podSelector": {"matchLabels": {"app": "lat"}}}),
    )
    .await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    wait_status(&sets, "lat", LIMIT, |s| s.healthy_count == 4).await?;

    let mut latencies = Vec::new();
    for flip in 0..100 {
        let ready = flip % 2 == 1;
        let expected = if ready { 4 } else { 3 };
        let pod = set_pod_ready(&pods, "app-0", ready).await?; // returns once the pod status changed
        let changed_at = Instant::now();
        wait_status(&sets, "lat", LIMIT, |s| s.healthy_count == expected).await?;
        latencies.push(changed_at.elapsed());
        drop(pod);
    }
    latencies.sort();
    println!(
        "readiness -> status over {} flips: median {:?}, p90 {:?}, worst {:?} (polling every 50 ms, coalescing window 100 ms)",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1]
    );
    operator.stop().await;
    Ok(())
}

/// With `rbac.scope=namespaces` the chart gives the operator a Role in each listed
/// namespace and nothing cluster-wide but Node metadata; the operator, given the same list,
/// watches those namespaces only: a record set there gets its status, one elsewhere is
/// left alone.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn a_namespace_scoped_operator_works_with_its_roles_alone() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let env = TestEnv::get()?;
    let client = env.admin_client().await?;
    install_crd(&client).await?;
    let release = TestNamespace::new(&env, &client, "scoped").await?;
    let apps = TestNamespace::new(&env, &client, "scoped-apps").await?;
    let other = TestNamespace::new(&env, &client, "scoped-other").await?;
    let namespaces = format!("rbac.namespaces={{{}}}", apps.name);
    install_chart_rbac_with(
        &env,
        &release.name,
        &["--set", "rbac.scope=namespaces", "--set", &namespaces],
    )
    .await?;
    let account = format!(
        "--as=system:serviceaccount:{}:{}",
        release.name,
        chart_service_account(&release.name, "operator")
    );
    let can = |verb: &'static str, resource: &'static str, scope: String| {
        let (env, account) = (env.clone(), account.clone());
        async move {
            let (allowed, _, _) = env
                .kubectl_status(&["auth", "can-i", verb, resource, &account, &scope])
                .await?;
            anyhow::Ok(allowed)
        }
    };
    assert!(
        !can("list", "pods", "--all-namespaces".into()).await?,
        "no cluster-wide pod list"
    );
    assert!(can("list", "pods", format!("--namespace={}", apps.name)).await?);
    assert!(
        !can(
            "list",
            "multivaluerecordsets.mvdns.io",
            format!("--namespace={}", other.name)
        )
        .await?
    );

    let scoped = vec![apps.name.clone()];
    let operator = RunningOperator::start_with(&env, &release.name, "op-scoped", 15, |config| {
        config.namespaces = scoped;
    })
    .await?;
    let pods: Api<Pod> = apps.api();
    let ready = create_ready_pods(&pods, &spread_pods("web", 3, "web")).await?;
    for (ns, name) in [(&apps.name, "served"), (&other.name, "elsewhere")] {
        apply_record_set(
            &env,
            ns,
            name,
            json!({"name": format!("{name}.{ns}.example.internal."), "type": "A",
                   "podSelector": {"matchLabels": {"app": "web"}}}),
        )
        .await?;
    }
    let served: Api<MultiValueRecordSet> = apps.api();
    let status = wait_status(&served, "served", LIMIT, |s| s.healthy_count == 3).await?;
    let values: std::collections::BTreeSet<String> = status.values.iter().map(|v| v.value.clone()).collect();
    assert_eq!(values, pod_ips(&ready));
    // Given time to act, the operator has not touched the record set it may not watch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elsewhere: Api<MultiValueRecordSet> = other.api();
    assert!(
        elsewhere.get("elsewhere").await?.status.is_none(),
        "a namespace it does not watch"
    );
    operator.stop().await;
    Ok(())
}
