//! Active health checks against real HTTP, HTTPS and TCP servers on loopback that the
//! test turns on and off, with the operator running under the chart's ServiceAccount.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use mvdns_api::{CheckResult, MultiValueRecordSet, MultiValueRecordSetStatus, ValueStatus};
use mvdns_tests::dns::{Ask, RunningDns, answer_data, wait_answer};
use mvdns_tests::endpoints::{Behaviour, Endpoint};
use mvdns_tests::operator::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);
/// Every operator reconciles every namespace's record sets: tests that run one take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ok() -> Behaviour {
    Behaviour::Respond(200, "all ok".into())
}

fn checked_value(endpoint: &Endpoint, check: Value) -> Value {
    let mut check = check;
    check["port"] = json!(endpoint.port());
    check["intervalSeconds"] = json!(5);
    json!({"value": endpoint.ip(), "healthCheck": check})
}

fn value<'a>(status: &'a MultiValueRecordSetStatus, ip: &str) -> Option<&'a ValueStatus> {
    status.values.iter().find(|v| v.value == ip)
}

fn result_of(status: &MultiValueRecordSetStatus, ip: &str) -> Option<CheckResult> {
    value(status, ip).and_then(|v| v.check.as_ref()).map(|c| c.last_result)
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn checks_follow_real_endpoints() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("checks").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op-checks", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let web = format!("web.checks.{}.example.internal.", ns.name);
    let ask = Ask::new(&web, RecordType::A);
    let served = |m: &Message| answer_data(m).contains(&"127.0.0.2".to_owned());

    let mut flapping = Endpoint::start("127.0.0.2", ok(), false).await?;
    let steady = Endpoint::start("127.0.0.3", ok(), false).await?;
    let degraded = Endpoint::start("127.0.0.4", Behaviour::Respond(200, "status: degraded".into()), false).await?;
    let silent = Endpoint::start("127.0.0.5", Behaviour::Silent, false).await?;
    let https = Endpoint::start("127.0.0.6", ok(), true).await?;
    let https_verified = Endpoint::start("127.0.0.7", ok(), true).await?;
    let inverted = Endpoint::start("127.0.0.8", ok(), false).await?;

    let threshold = 2;
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": web, "type": "A", "values": [
            checked_value(&flapping, json!({"type": "HTTP", "path": "/healthz", "failureThreshold": threshold})),
            checked_value(&steady, json!({"type": "TCP", "failureThreshold": 1})),
        ]}),
    )
    .await?;
    apply_record_set(
        &env,
        &ns.name,
        "kinds",
        json!({"name": format!("kinds.checks.{}.example.internal.", ns.name), "type": "A", "values": [
            checked_value(&degraded, json!({"type": "HTTP", "searchString": "ok", "failureThreshold": 1})),
            checked_value(&silent, json!({"type": "HTTP", "responseTimeoutSeconds": 1, "failureThreshold": 1})),
            checked_value(&https, json!({"type": "HTTPS", "searchString": "ok", "failureThreshold": 1})),
            checked_value(&https_verified, json!({"type": "HTTPS", "verifyCertificate": true, "failureThreshold": 1})),
            checked_value(&inverted, json!({"type": "TCP", "invert": true, "failureThreshold": 1})),
        ]}),
    )
    .await?;
    let sets: kube::Api<MultiValueRecordSet> = ns.api();

    // A new check is healthy and Pending until its first result (Route 53's rule).
    let fresh = wait_status(&sets, "web", LIMIT, |s| s.total_count == 2).await?;
    assert!(fresh.values.iter().all(|v| v.healthy), "{:?}", fresh.values);

    // searchString, silent server, TLS without and with verification, invert.
    let kinds = wait_status(&sets, "kinds", LIMIT, |s| {
        ["127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"]
            .iter()
            .all(|ip| result_of(s, ip).is_some_and(|r| r != CheckResult::Pending))
    })
    .await?;
    let health = |ip: &str| {
        value(&kinds, ip).map(|v| {
            (
                v.healthy,
                v.check.clone().and_then(|c| c.last_error).unwrap_or_default(),
            )
        })
    };
    let (healthy, error) = health("127.0.0.4").unwrap_or_default();
    assert!(
        !healthy && error.contains("\"ok\" not in the first 5120 bytes"),
        "searchString: {error}"
    );
    let (healthy, error) = health("127.0.0.5").unwrap_or_default();
    assert!(
        !healthy && error.contains("no complete response"),
        "silent server: {error}"
    );
    assert_eq!(
        health("127.0.0.6").map(|h| h.0),
        Some(true),
        "self-signed HTTPS passes without verification"
    );
    let (healthy, error) = health("127.0.0.7").unwrap_or_default();
    assert!(
        !healthy && error.contains("TLS handshake"),
        "verification refuses a self-signed certificate: {error}"
    );
    let (healthy, error) = health("127.0.0.8").unwrap_or_default();
    assert!(!healthy && error.contains("inverted"), "invert: {error}");

    // The flapping endpoint leaves after `threshold` failures and returns after as many successes.
    wait_status(&sets, "web", LIMIT, |s| {
        result_of(s, "127.0.0.2") == Some(CheckResult::Success)
    })
    .await?;
    wait_answer(dns.address, &ask, LIMIT, served).await?;
    flapping.set(Behaviour::Respond(503, "down".into())).await?;
    let failed_at = Instant::now();
    // The value leaves the DNS answers; then the status shows why.
    wait_answer(dns.address, &ask, LIMIT, |m| !served(m) && !m.answers.is_empty()).await?;
    let to_dns_unhealthy = failed_at.elapsed();
    let down = wait_status(&sets, "web", LIMIT, |s| {
        value(s, "127.0.0.2").is_some_and(|v| !v.healthy)
    })
    .await?;
    let to_unhealthy = failed_at.elapsed();
    let check = value(&down, "127.0.0.2")
        .and_then(|v| v.check.clone())
        .unwrap_or_else(|| panic!("check state"));
    assert_eq!(
        (check.last_result, check.consecutive),
        (CheckResult::Failure, threshold)
    );
    assert!(check.last_error.unwrap_or_default().contains("HTTP status 503"));
    assert!(check.last_change.is_some());
    assert_eq!(down.healthy_count, 1, "the steady endpoint stays");

    flapping.set(Behaviour::Down).await?; // refused connections count as failures too
    tokio::time::sleep(Duration::from_secs(6)).await;
    let still_down = sets.get("web").await?.status.unwrap_or_default();
    let error = value(&still_down, "127.0.0.2")
        .and_then(|v| v.check.clone())
        .and_then(|c| c.last_error)
        .unwrap_or_default();
    assert!(error.contains("cannot connect"), "{error}");

    flapping.set(ok()).await?;
    let recovered_at = Instant::now();
    wait_status(&sets, "web", LIMIT, |s| {
        value(s, "127.0.0.2").is_some_and(|v| v.healthy)
    })
    .await?;
    let to_healthy = recovered_at.elapsed();
    wait_answer(dns.address, &ask, LIMIT, served).await?;
    let to_dns_healthy = recovered_at.elapsed();
    println!(
        "endpoint failure -> unhealthy in status {to_unhealthy:?}, gone from DNS answers {to_dns_unhealthy:?}; \
         recovery -> healthy in status {to_healthy:?}, back in DNS answers {to_dns_healthy:?} \
         (interval 5 s, threshold {threshold}; Route 53 needs interval x threshold = 30-90 s, plus TTL)"
    );

    // Flips were announced as Events (published right after the status write).
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let announced = |notes: &[(String, String)], reason: &str| {
        // kube folds repeated events of one reason on one object into a series whose
        // note is the latest, so only the value is checked; the 503 is asserted on status.
        notes.iter().any(|(r, n)| r == reason && n.contains("127.0.0.2"))
    };
    let mut notes = Vec::new();
    for _ in 0..100 {
        let list = events.list(&Default::default()).await?.items;
        notes = list
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect();
        if announced(&notes, "ValueUnhealthy") && announced(&notes, "ValueHealthy") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        announced(&notes, "ValueUnhealthy") && announced(&notes, "ValueHealthy"),
        "{notes:?}"
    );

    // Probes stop with their record set.
    let metrics_before = metric_value(
        &operator.health.metrics.encode(),
        "mvdns_operator_probe_results_total{outcome=\"healthy\"}",
    );
    assert!(metrics_before > 0.0, "{}", operator.health.metrics.encode());
    sets.delete("kinds", &Default::default()).await?;
    sets.delete("web", &Default::default()).await?;
    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// A tenant asks for health checks on addresses inside the operator's reach: a loopback
/// address outside the allowed block, the API server's address (where, in a cluster, the
/// operator's admin port would be the next target), a cloud's instance metadata. None is
/// probed or served; the condition and a Warning Event name each rule; the allowed value
/// next to them is probed as usual.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn checks_on_refused_addresses_send_nothing_and_are_not_served() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("refused").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op-refused", 15).await?;
    let sets: kube::Api<MultiValueRecordSet> = ns.api();
    // What a probe would reach if the policy let it through.
    let outside_block = tokio::net::TcpListener::bind("127.0.0.100:0").await?;
    let api_server_address = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let allowed = Endpoint::start("127.0.0.3", ok(), false).await?;
    let tcp_check = |port: u16| json!({"type": "TCP", "port": port, "intervalSeconds": 5, "failureThreshold": 1});
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": format!("web.refused.{}.example.internal.", ns.name), "type": "A", "values": [
            {"value": "127.0.0.100", "healthCheck": tcp_check(outside_block.local_addr()?.port())},
            {"value": "127.0.0.1", "healthCheck": {"type": "HTTP", "port": api_server_address.local_addr()?.port(),
                                                   "searchString": "secret", "intervalSeconds": 5}},
            {"value": "169.254.169.254", "healthCheck": {"type": "HTTP", "port": 80, "path": "/latest/meta-data/"}},
            checked_value(&allowed, json!({"type": "HTTP", "failureThreshold": 1})),
        ]}),
    )
    .await?;

    let status = wait_status(&sets, "web", LIMIT, |s| {
        condition(s, "ProbeRefused") == "True" && result_of(s, "127.0.0.3") == Some(CheckResult::Success)
    })
    .await?;
    let served: Vec<&str> = status.values.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(
        served,
        ["127.0.0.3"],
        "only the allowed value is in status, so only it is served"
    );
    assert_eq!((status.healthy_count, status.total_count), (1, 1));
    let message = condition_message(&status, "ProbeRefused");
    for rule in [
        "spec.values[0] (127.0.0.100): 127.0.0.100 is loopback: refused by default",
        "spec.values[1] (127.0.0.1): 127.0.0.1 is the API server's address",
        "spec.values[2] (169.254.169.254): 169.254.169.254 is link-local",
    ] {
        assert!(message.contains(rule), "{rule:?} not in {message:?}");
    }

    // Two intervals and their jitter later, nothing has connected to either listener.
    let quiet = Duration::from_secs(12);
    let (outside, api) = tokio::join!(
        tokio::time::timeout(quiet, outside_block.accept()),
        tokio::time::timeout(quiet, api_server_address.accept()),
    );
    assert!(outside.is_err(), "a refused check connected to 127.0.0.100");
    assert!(api.is_err(), "a refused check connected to the API server's address");

    let events: kube::Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let refused_events = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ProbeRefused") && e.type_.as_deref() == Some("Warning"))
        .count();
    assert_eq!(refused_events, 1, "one Warning Event when the condition turned True");
    let refusals = metric_value(
        &operator.health.metrics.encode(),
        "mvdns_operator_probe_results_total{outcome=\"refused\"}",
    );
    assert!(refusals >= 3.0, "{}", operator.health.metrics.encode());
    operator.stop().await;
    Ok(())
}

/// Listeners on one port at each of `addresses` that accept and count every connection:
/// the port, and the arrival times by address.
async fn counting_listeners(addresses: &[String]) -> Result<(u16, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let mut port = 0;
    for address in addresses {
        let listener = tokio::net::TcpListener::bind((address.as_str(), port)).await?;
        port = listener.local_addr()?.port();
        let (arrivals, address) = (arrivals.clone(), address.clone());
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
                if let Ok(mut arrivals) = arrivals.lock() {
                    arrivals.entry(address.clone()).or_default().push(Instant::now());
                }
            }
        });
    }
    Ok((port, arrivals))
}

type Arrivals = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<Instant>>>>;

/// Connections that arrived at `addresses` after `since`, each address's in order.
fn arrivals_since(arrivals: &Arrivals, addresses: &[String], since: Instant) -> Vec<Vec<Instant>> {
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    addresses
        .iter()
        .map(|address| {
            let times = arrivals.get(address).map(Vec::as_slice).unwrap_or_default();
            times.iter().copied().filter(|t| *t >= since).collect()
        })
        .collect()
}

/// One tenant floods: 40 checked values every 5 s (8 probes/s) against a cap of 30 checks
/// and 2 probes/s per namespace, plus a check on a block kept for another namespace. The
/// other tenant has two checks and the block's owner. The flood is held to its caps, says
/// so in its conditions, and the other namespace's checks keep their interval.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn a_namespace_is_held_to_its_caps_and_its_blocks() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns: flood_ns } = fixture("flood").await?;
    let calm_ns = mvdns_tests::TestNamespace::new(&env, &env.admin_client().await?, "calm").await?;
    let (flood, calm) = (flood_ns.name.clone(), calm_ns.name.clone());
    // Within the tests' allowed blocks (127.0.0.2-63): the flood on .2-.41, the calm
    // tenant on .42-.43, and 127.0.0.48/29 kept for the calm namespace.
    let flood_addresses: Vec<String> = (2..42).map(|i| format!("127.0.0.{i}")).collect();
    let calm_addresses: Vec<String> = vec!["127.0.0.42".into(), "127.0.0.43".into()];
    let restricted = ["127.0.0.49".to_owned(), "127.0.0.50".to_owned()];
    let everything: Vec<String> = flood_addresses
        .iter()
        .chain(&calm_addresses)
        .chain(&restricted)
        .cloned()
        .collect();
    let (port, arrivals) = counting_listeners(&everything).await?;
    let rule = format!("127.0.0.48/29={calm}");
    let operator = RunningOperator::start_with(&env, &flood, "op-tenants", 15, |config| {
        config.tenant_limits.max_checks_per_namespace = 30;
        config.tenant_limits.probes_per_second_per_namespace = 2.0;
        config.probe_policy = test_probe_policy()
            .with_namespace_rules(std::slice::from_ref(&rule))
            .expect("a valid rule");
    })
    .await?;
    let tcp_value = |address: &String| json!({"value": address, "healthCheck": {"type": "TCP", "port": port, "intervalSeconds": 5, "failureThreshold": 1}});
    let flood_values: Vec<Value> = flood_addresses.iter().chain(&restricted[..1]).map(tcp_value).collect();
    let calm_values: Vec<Value> = calm_addresses.iter().chain(&restricted[1..]).map(tcp_value).collect();
    apply_record_set(
        &env,
        &flood,
        "flood",
        json!({"name": format!("flood.{flood}.example.internal."), "type": "A", "values": flood_values}),
    )
    .await?;
    apply_record_set(
        &env,
        &calm,
        "calm",
        json!({"name": format!("calm.{calm}.example.internal."), "type": "A", "values": calm_values}),
    )
    .await?;

    let flood_sets: kube::Api<MultiValueRecordSet> = flood_ns.api();
    let calm_sets: kube::Api<MultiValueRecordSet> = calm_ns.api();
    let flood_status = wait_status(&flood_sets, "flood", LIMIT, |s| {
        condition(s, "ProbeRefused") == "True" && condition(s, "ProbeThrottled") == "True"
    })
    .await?;
    let refused = condition_message(&flood_status, "ProbeRefused");
    assert!(refused.contains("already runs 30 health checks"), "{refused}");
    assert!(
        refused.contains(&format!("127.0.0.49 may be probed only from namespaces {calm}")),
        "{refused}"
    );
    let throttled = condition_message(&flood_status, "ProbeThrottled");
    assert!(throttled.contains("ask for 6.0 probes per second"), "{throttled}");
    assert_eq!(
        flood_status.total_count, 30,
        "the capped and the refused values are not served"
    );
    let calm_status = wait_status(&calm_sets, "calm", LIMIT, |s| {
        s.values.len() == 3
            && s.values
                .iter()
                .all(|v| v.check.as_ref().is_some_and(|c| c.last_result == CheckResult::Success))
    })
    .await?;
    assert_eq!(condition(&calm_status, "ProbeRefused"), "False");
    assert_eq!(condition(&calm_status, "ProbeThrottled"), "False");

    // Fifteen seconds of counting, once every check has started.
    let window = Duration::from_secs(15);
    let since = Instant::now();
    tokio::time::sleep(window).await;
    let flood_probes: usize = arrivals_since(&arrivals, &flood_addresses, since)
        .iter()
        .map(Vec::len)
        .sum();
    let per_second = flood_probes as f64 / window.as_secs_f64();
    eprintln!(
        "the flooding namespace: {flood_probes} probes in {window:?} ({per_second:.2}/s; cap 2/s, asked for 6/s)"
    );
    assert!(flood_probes > 0, "the capped namespace is still probed");
    assert!(
        per_second <= 2.0 * 1.25,
        "{per_second:.2} probes/s from a namespace capped at 2/s"
    );
    let capped_addresses = &flood_addresses[30..];
    let capped_probes: usize = arrivals_since(&arrivals, capped_addresses, since)
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(capped_probes, 0, "a value beyond the check cap is never probed");
    assert!(
        arrivals_since(&arrivals, &restricted[..1], since)[0].is_empty(),
        "the block kept for {calm} was probed from {flood}"
    );
    for (address, times) in calm_addresses.iter().chain(&restricted[1..]).zip(arrivals_since(
        &arrivals,
        &calm_addresses
            .iter()
            .chain(&restricted[1..])
            .cloned()
            .collect::<Vec<_>>(),
        since,
    )) {
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        eprintln!(
            "the calm namespace's {address}: {} probes, gaps {gaps:.1?} s",
            times.len()
        );
        assert!(times.len() >= 2, "{address}: {} probes in {window:?}", times.len());
        assert!(
            gaps.iter().all(|gap| *gap < 6.5),
            "{address} kept its 5 s interval: {gaps:?}"
        );
    }
    let delayed = metric_value(&operator.health.metrics.encode(), "mvdns_operator_probes_delayed_total");
    assert!(delayed > 0.0, "{}", operator.health.metrics.encode());
    operator.stop().await;
    Ok(())
}
