//! Big record sets against the real control plane: more values than one
//! `MultiValueRecordSlice` holds are written into slices by the operator (under the
//! chart's operator ServiceAccount) and served from them by the DNS server (under the
//! chart's read-only DNS ServiceAccount), asked by a real DNS client over UDP.
//!
//! The values come from EndpointSlices written by hand for Services without a selector:
//! 300 endpoints in three requests, where 300 KWOK pods would take minutes to create.
//! Their addresses are in the test pod range 10.244.0.0/16, above the KWOK nodes'
//! blocks; they are answer data only and never contacted.
//!
//! The tests take turns (`SERIAL`): each runs a cluster-wide operator or none (one
//! writes statuses by hand, which a running operator would overwrite), and one of them
//! stops the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mvdns_api::slice::{RECORD_SET_LABEL, SLICE_CAPACITY};
use mvdns_api::{MultiValueRecordSet, MultiValueRecordSlice};
use mvdns_tests::dns::*;
use mvdns_tests::operator::*;
use mvdns_tests::*;
use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(60);

/// Queries that see every one of 300 values with certainty for a fair picker: a given
/// value is missed by 2,000 answers of 8 with probability (1 - 8/300)^2000, about e^-54.
const QUERIES_TO_SEE_ALL: usize = 2000;

/// `count` addresses `10.244.<block>.<1..>`.
fn addresses(block: u8, count: u8) -> Vec<String> {
    (1..=count).map(|host| format!("10.244.{block}.{host}")).collect()
}

/// An EndpointSlice of the selector-less Service `service`, written by hand: every
/// address an endpoint, ready unless it is in `not_ready`.
fn endpoint_slice(name: &str, service: &str, addresses: &[String], not_ready: &BTreeSet<String>) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": !not_ready.contains(a)}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    })
}

/// A Service without a selector, whose EndpointSlices the test writes, and a record
/// set `name` over it; `slices` EndpointSlices `<name>-<i>` of 100 endpoints each, from
/// the blocks `first_block..`. Returns every address.
async fn service_with_endpoints(
    env: &TestEnv,
    ns: &TestNamespace,
    name: &str,
    first_block: u8,
    slices: u8,
) -> Result<Vec<String>> {
    let services: Api<Service> = ns.api();
    let service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
    }))?;
    services.create(&Default::default(), &service).await?;
    let mut all = Vec::new();
    for i in 0..slices {
        let block = addresses(first_block + i, 100);
        write_endpoint_slice(ns, &format!("{name}-{i}"), name, &block, &BTreeSet::new()).await?;
        all.extend(block);
    }
    let fqdn = format!("{name}.{}.example.internal.", ns.name);
    apply_record_set(
        env,
        &ns.name,
        name,
        json!({"name": fqdn, "type": "A", "serviceRef": {"name": name}}),
    )
    .await?;
    Ok(all)
}

async fn write_endpoint_slice(
    ns: &TestNamespace,
    name: &str,
    service: &str,
    addresses: &[String],
    not_ready: &BTreeSet<String>,
) -> Result<()> {
    let api: Api<EndpointSlice> = ns.api();
    let slice = endpoint_slice(name, service, addresses, not_ready);
    api.patch(name, &PatchParams::apply("mvdns-tests").force(), &Patch::Apply(slice))
        .await?;
    Ok(())
}

/// Asks `ask` up to `queries` times and returns every value answered.
async fn values_answered(
    server: SocketAddr,
    ask: &Ask,
    queries: usize,
    want: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..queries {
        let response = udp(server, ask).await?;
        if response.metadata.response_code != ResponseCode::NoError {
            bail!("{}: {response}", response.metadata.response_code);
        }
        seen.extend(answer_data(&response));
        if &seen == want {
            break;
        }
    }
    Ok(seen)
}

/// Asks until the values answered over [`QUERIES_TO_SEE_ALL`] queries are exactly
/// `want`: every value served, and none other (at most `limit`).
async fn wait_served(server: SocketAddr, ask: &Ask, want: &BTreeSet<String>, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let seen = values_answered(server, ask, QUERIES_TO_SEE_ALL, want).await?;
        if &seen == want {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            let missing: Vec<_> = want.difference(&seen).take(5).collect();
            let extra: Vec<_> = seen.difference(want).take(5).collect();
            bail!(
                "after {limit:?}: {} values answered of {} wanted; missing {missing:?}, extra {extra:?}",
                seen.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each answer holds `answers` values, all of them in `allowed`.
fn answers_within(answers: usize, allowed: BTreeSet<String>) -> impl Fn(&Message) -> bool + Send + 'static {
    move |m| {
        let values = answer_data(m);
        m.metadata.response_code == ResponseCode::NoError
            && values.len() == answers
            && values.iter().all(|v| allowed.contains(v))
    }
}

/// The record set's slices, by name, with their resourceVersions and value counts.
async fn slice_versions(ns: &TestNamespace, record_set: &str) -> Result<BTreeMap<String, (String, usize)>> {
    let api: Api<MultiValueRecordSlice> = ns.api();
    let selector = format!("{RECORD_SET_LABEL}={record_set}");
    let listed = api.list(&kube::api::ListParams::default().labels(&selector)).await?;
    Ok(listed
        .items
        .into_iter()
        .map(|s| {
            let name = s.metadata.name.unwrap_or_default();
            let version = s.metadata.resource_version.unwrap_or_default();
            (name, (version, s.spec.values.len()))
        })
        .collect())
}

/// Writes a record set's status by hand (merged into what is there), as an operator would.
async fn write_status(sets: &Api<MultiValueRecordSet>, name: &str, status: Value) -> Result<()> {
    let patch = json!({"status": status});
    sets.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// A slice that claims `record_set` but is not its (another namespace, or another
/// uid): kept by a finalizer, since the garbage collector deletes a dependent whose
/// owner does not exist.
async fn forge_slice(ns: &TestNamespace, name: &str, record_set: &str, uid: &str, values: &[String]) -> Result<()> {
    let api: Api<MultiValueRecordSlice> = ns.api();
    let values: Vec<Value> = values
        .iter()
        .map(|v| json!({"value": v, "healthy": true, "source": "pod/forged"}))
        .collect();
    let slice = json!({
        "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSlice",
        "metadata": {
            "name": name,
            "labels": {RECORD_SET_LABEL: record_set},
            "finalizers": ["mvdns-tests/keep"],
            "ownerReferences": [{"apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
                                 "name": record_set, "uid": uid, "controller": true}],
        },
        "spec": {"recordSet": record_set, "values": values},
    });
    api.create(&Default::default(), &serde_json::from_value(slice)?).await?;
    Ok(())
}

async fn release_forged_slice(ns: &TestNamespace, name: &str) -> Result<()> {
    let api: Api<MultiValueRecordSlice> = ns.api();
    let patch = json!({"metadata": {"finalizers": null}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// 300 values in one record set: the operator writes three slices of at most 100 and a
/// status with the counts and no values; every value is served; a flip rewrites only the
/// slice that holds the value and is followed by the answers; slices forged in another
/// namespace, or in the same one for another uid, are never served.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn a_big_name_is_served_whole_from_slices_and_follows_flips() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("slices-big").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let all = service_with_endpoints(&env, &ns, "big", 251, 3).await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    let status = wait_status(&sets, "big", LIMIT, |s| s.healthy_count == 300 && s.slices.is_some()).await?;
    assert_eq!(status.slices, Some(3), "{status:?}");
    assert!(status.values.is_empty(), "a sliced status keeps the summary only");
    let slices = slice_versions(&ns, "big").await?;
    assert_eq!(slices.len(), 3, "{slices:?}");
    assert!(slices.values().all(|(_, n)| *n <= SLICE_CAPACITY), "{slices:?}");
    assert_eq!(slices.values().map(|(_, n)| n).sum::<usize>(), 300);

    // Forgeries: one in another namespace with the record set's uid, one in its own
    // namespace with another uid.
    let uid = sets.get("big").await?.metadata.uid.unwrap_or_default();
    let forger = TestNamespace::new(&env, &env.admin_client().await?, "slices-forger").await?;
    let forged = addresses(249, 20);
    forge_slice(&forger, "big-0", "big", &uid, &forged[..10]).await?;
    forge_slice(
        &ns,
        "big-forged",
        "big",
        "00000000-0000-0000-0000-000000000000",
        &forged[10..],
    )
    .await?;

    let fqdn = format!("big.{}.example.internal.", ns.name);
    let ask = Ask::new(&fqdn, RecordType::A);
    let want: BTreeSet<String> = all.iter().cloned().collect();
    let took = wait_served(dns.address, &ask, &want, LIMIT).await?;
    println!("300 values from 3 slices served whole ({took:?} to see them all)");

    // One endpoint of the third EndpointSlice goes unready.
    let flipped = all[250].clone();
    let before = slice_versions(&ns, "big").await?;
    let flipped_at = Instant::now();
    write_endpoint_slice(&ns, "big-2", "big", &all[200..], &BTreeSet::from([flipped.clone()])).await?;
    let mut without = want.clone();
    without.remove(&flipped);
    wait_served(dns.address, &ask, &without, LIMIT).await?;
    println!(
        "a flip in a 300-value name left the answers after {:?}",
        flipped_at.elapsed()
    );
    let after = slice_versions(&ns, "big").await?;
    let rewritten: Vec<&String> = after
        .iter()
        .filter(|(name, version)| before.get(*name) != Some(version))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        rewritten.len(),
        1,
        "one slice rewritten per flip: {before:?} -> {after:?}"
    );
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let status = sets.get("big").await?.status.unwrap_or_default();
    assert_eq!((status.healthy_count, status.total_count), (299, 300));

    // And back.
    write_endpoint_slice(&ns, "big-2", "big", &all[200..], &BTreeSet::new()).await?;
    wait_served(dns.address, &ask, &want, LIMIT).await?;

    release_forged_slice(&forger, "big-0").await?;
    release_forged_slice(&ns, "big-forged").await?;
    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// The DNS server's rule for a record set moving into slices, with no operator and the
/// writes made by hand in the worst order (the status that counts three slices before
/// the third exists): the last complete state (80 values from the status) is served
/// until all three slices are there, also while the API server is stopped in the
/// middle; then all 300 are.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn the_last_complete_state_is_served_until_every_slice_is_there_and_through_an_outage() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("slices-outage").await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let fqdn = format!("moving.{}.example.internal.", ns.name);
    let selector = json!({"matchLabels": {"app": "nothing-selects-this"}});
    apply_record_set(
        &env,
        &ns.name,
        "moving",
        json!({"name": fqdn, "type": "A", "podSelector": selector}),
    )
    .await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    let uid = sets.get("moving").await?.metadata.uid.unwrap_or_default();
    let value = |v: &String| json!({"value": v, "healthy": true, "source": "pod/by-hand"});
    let old: Vec<String> = addresses(248, 80);
    write_status(
        &sets,
        "moving",
        json!({"healthyCount": 80, "totalCount": 80, "values": old.iter().map(value).collect::<Vec<_>>()}),
    )
    .await?;
    let ask = Ask::new(&fqdn, RecordType::A);
    let old_set: BTreeSet<String> = old.iter().cloned().collect();
    wait_served(dns.address, &ask, &old_set, LIMIT).await?;

    // Two of three slices, then the status that counts three.
    let new: Vec<String> = (251..=253).flat_map(|block| addresses(block, 100)).collect();
    let slices: Api<MultiValueRecordSlice> = ns.api();
    let write_slice = async |i: usize| -> Result<()> {
        let values: Vec<Value> = new[i * 100..(i + 1) * 100].iter().map(value).collect();
        let slice = json!({
            "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSlice",
            "metadata": {"name": format!("moving-{i}"), "labels": {RECORD_SET_LABEL: "moving"},
                         "ownerReferences": [{"apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
                                              "name": "moving", "uid": uid, "controller": true}]},
            "spec": {"recordSet": "moving", "values": values},
        });
        slices
            .create(&Default::default(), &serde_json::from_value(slice)?)
            .await?;
        Ok(())
    };
    write_slice(0).await?;
    write_slice(1).await?;
    write_status(
        &sets,
        "moving",
        json!({"healthyCount": 300, "totalCount": 300, "values": null, "slices": 3}),
    )
    .await?;
    // The DNS server has the status once it serves a change made after it: one watch
    // delivers record-set events in the order of their writes.
    let marker = format!("marker.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "marker",
        json!({"name": marker, "type": "A", "podSelector": selector}),
    )
    .await?;
    let marked = json!({"healthyCount": 1, "totalCount": 1, "values": [value(&"10.244.247.1".to_owned())]});
    write_status(&sets, "marker", marked).await?;
    let marker_ask = Ask::new(&marker, RecordType::A);
    wait_answer(dns.address, &marker_ask, LIMIT, |m| answer_data(m) == ["10.244.247.1"]).await?;
    // Until the third slice, the 80 old values stay the answers.
    let stop = Arc::new(AtomicBool::new(false));
    let asking = keep_asking(
        dns.address,
        ask.clone(),
        stop.clone(),
        answers_within(8, old_set.clone()),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.testenv_command("apiserver-stop").await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    env.testenv_command("apiserver-start").await?;
    // The controller-manager serves new namespaces again before the next test starts.
    drop(TestNamespace::new(&env, &env.admin_client().await?, "slices-after-outage").await?);
    stop.store(true, Ordering::Release);
    let seen = asking.await?;
    println!(
        "{} queries while 2 of 3 slices existed (10 s of it with the API server stopped), {} wrong",
        seen.queries,
        seen.wrong.len()
    );
    assert!(seen.queries > 100, "{seen:?}");
    assert!(
        seen.wrong.is_empty(),
        "{} wrong, first: {}",
        seen.wrong.len(),
        seen.wrong[0]
    );

    // The third slice completes the new state.
    write_slice(2).await?;
    let new_set: BTreeSet<String> = new.iter().cloned().collect();
    wait_served(dns.address, &ask, &new_set, LIMIT).await?;
    dns.stop().await;
    Ok(())
}

/// An upgrade from the status feed: a record set whose status holds 150 values (as an
/// operator before slices wrote it) is served from its status; the new operator moves
/// it into two slices, and no answer is wrong or empty on the way.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn an_upgrade_from_the_status_feed_loses_no_answer() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("slices-upgrade").await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let mut all = service_with_endpoints(&env, &ns, "legacy", 251, 1).await?;
    let extra: Vec<String> = addresses(252, 50);
    write_endpoint_slice(&ns, "legacy-1", "legacy", &extra, &BTreeSet::new()).await?;
    all.extend(extra);
    let sets: Api<MultiValueRecordSet> = ns.api();
    let values: Vec<Value> = all
        .iter()
        .map(|v| json!({"value": v, "healthy": true, "source": "endpoint/legacy"}))
        .collect();
    write_status(
        &sets,
        "legacy",
        json!({"healthyCount": 150, "totalCount": 150, "values": values}),
    )
    .await?;
    let fqdn = format!("legacy.{}.example.internal.", ns.name);
    let ask = Ask::new(&fqdn, RecordType::A);
    let want: BTreeSet<String> = all.iter().cloned().collect();
    wait_served(dns.address, &ask, &want, LIMIT).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let asking = keep_asking(dns.address, ask.clone(), stop.clone(), answers_within(8, want.clone()));
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let status = wait_status(&sets, "legacy", LIMIT, |s| s.slices.is_some()).await?;
    assert_eq!(status.slices, Some(2), "{status:?}");
    wait_served(dns.address, &ask, &want, LIMIT).await?;
    stop.store(true, Ordering::Release);
    let seen = asking.await?;
    println!(
        "{} queries while the operator moved 150 values from the status into slices, {} wrong",
        seen.queries,
        seen.wrong.len()
    );
    assert!(
        seen.wrong.is_empty(),
        "{} wrong, first: {}",
        seen.wrong.len(),
        seen.wrong[0]
    );
    assert_eq!(slice_versions(&ns, "legacy").await?.len(), 2);
    dns.stop().await;
    operator.stop().await;
    Ok(())
}
