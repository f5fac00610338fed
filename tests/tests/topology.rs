//! Zone-aware answers (`topology: PreferSameZone`) on the real control plane: KWOK nodes
//! in zones a, b and c, the operator recording each pod's zone from its node, the DNS
//! server finding the client's zone from EDNS Client Subnet or from its source address
//! (node addresses and pod CIDRs). The test control plane gives kwok-node-<i> the pod
//! CIDR 10.244.<16 i>.0/20.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use mvdns_api::MultiValueRecordSet;
use mvdns_tests::dns::*;
use mvdns_tests::operator::*;
use mvdns_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// A Node object standing for a host whose address is `address` (no kubelet behind it):
/// queries from that address come from its zone.
async fn client_node(env: &TestEnv, name: &str, zone: &str, address: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(env.admin_client().await?);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone, "mvdns.io/test": "true"}},
        "spec": {"taints": [{"key": "mvdns.io/test-client", "effect": "NoSchedule"}]},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": address}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn answers_prefer_the_clients_zone_and_fall_back_safely() -> Result<()> {
    let Fixture { env, ns } = fixture("topo").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let node_name = format!("client-{}", ns.name);
    client_node(&env, &node_name, "zone-a", "127.0.0.9").await?;
    let result = scenario(&env, &ns).await;
    let nodes: Api<Node> = Api::all(env.admin_client().await?);
    let _ = nodes.delete(&node_name, &DeleteParams::default()).await;
    operator.stop().await;
    result
}

async fn scenario(env: &TestEnv, ns: &TestNamespace) -> Result<()> {
    let dns = RunningDns::start(env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    // Six pods per zone: kwok-node-<i> is in ZONES[i].
    let specs: Vec<PodSpec> = (0..18)
        .map(|i| {
            PodSpec::new(format!("web-{i}"))
                .label("app", "web")
                .on_node(&format!("kwok-node-{}", i % 3))
        })
        .collect();
    let pods = create_ready_pods(&pod_api, &specs).await?;
    let mut zone_by_ip: BTreeMap<String, &str> = BTreeMap::new();
    for (i, pod) in pods.iter().enumerate() {
        zone_by_ip.insert(pod_ip(pod).unwrap_or_default().to_owned(), ZONES[i % 3]);
    }
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "topology": "PreferSameZone", "podSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await?;

    // The operator records each value's zone from its pod's node.
    let sets: Api<MultiValueRecordSet> = ns.api();
    let status = wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 18).await?;
    for value in &status.values {
        assert_eq!(
            value.zone.as_deref(),
            zone_by_ip.get(&value.value).copied(),
            "{value:?}"
        );
    }
    let zones_in = |answer: &hickory_proto::op::Message| -> BTreeSet<&str> {
        answer_data(answer)
            .iter()
            .filter_map(|ip| zone_by_ip.get(ip).copied())
            .collect()
    };
    let ask = Ask::new(&name, RecordType::A);
    let from_node_a: IpAddr = "127.0.0.9".parse()?;
    // The DNS server learns the client node's zone from its Node watch.
    wait_answer(dns.address, &ask.clone().from_subnet("10.244.0.0", 24), LIMIT, |m| {
        m.answers.len() == 6
    })
    .await?;

    // Zone a has 6 healthy values (>= half an answer): a client in zone a gets only
    // those, whether found by its source address or by ECS; ECS overrides the source.
    let mut same_zone = 0usize;
    let mut total = 0usize;
    for _ in 0..200 {
        let by_source = udp_from(from_node_a, dns.address, &ask).await?;
        assert_eq!(by_source.answers.len(), 6);
        assert_eq!(zones_in(&by_source), BTreeSet::from(["zone-a"]));
        same_zone += answer_data(&by_source)
            .iter()
            .filter(|ip| zone_by_ip.get(*ip) == Some(&"zone-a"))
            .count();
        total += by_source.answers.len();
    }
    let by_ecs = udp(dns.address, &ask.clone().from_subnet("10.244.0.0", 24)).await?;
    assert_eq!(zones_in(&by_ecs), BTreeSet::from(["zone-a"]));
    let scope = by_ecs
        .edns
        .as_ref()
        .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet).cloned());
    assert!(scope.is_some(), "ECS is echoed");
    let overridden = udp_from(from_node_a, dns.address, &ask.clone().from_subnet("10.244.16.0", 24)).await?;
    assert_eq!(
        zones_in(&overridden),
        BTreeSet::from(["zone-b"]),
        "ECS wins over the source address"
    );
    println!("client in zone a: {same_zone} of {total} answered values from zone a");

    // An unknown client (127.0.0.1 is no node's address) gets plain uniform selection.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..300 {
        for ip in answer_data(&udp(dns.address, &ask).await?) {
            *seen.entry(ip).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 18, "every value appears for an unknown client");
    let share_a = f64::from(
        seen.iter()
            .filter(|(ip, _)| zone_by_ip.get(*ip) == Some(&"zone-a"))
            .map(|(_, c)| *c)
            .sum::<u32>(),
    ) / f64::from(seen.values().sum::<u32>());
    // 2400 picks, p = 1/3 each for zone a: sd ~ 0.0096; 0.25..0.42 is about 9 sd.
    assert!(
        (0.25..0.42).contains(&share_a),
        "unknown client: zone a share {share_a:.3}"
    );

    // Zone a loses four pods: its two survivors are fewer than half an answer, so both
    // stay and the answer is filled from zones b and c.
    for i in [0, 3, 6, 9] {
        set_pod_ready(&pod_api, &format!("web-{i}"), false).await?;
    }
    wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 14).await?;
    let topped_up = wait_answer(dns.address, &ask.clone().from_subnet("10.244.0.0", 24), LIMIT, |m| {
        answer_data(m)
            .iter()
            .filter(|ip| zone_by_ip.get(*ip) == Some(&"zone-a"))
            .count()
            == 2
            && m.answers.len() == 8
    })
    .await?;
    assert!(zones_in(&topped_up).len() >= 2);
    // All of zone a down: clients there get values from b and c only.
    for i in [12, 15] {
        set_pod_ready(&pod_api, &format!("web-{i}"), false).await?;
    }
    let elsewhere = wait_answer(dns.address, &ask.clone().from_subnet("10.244.0.0", 24), LIMIT, |m| {
        !zones_in(m).contains("zone-a") && m.answers.len() == 8
    })
    .await?;
    assert!(zones_in(&elsewhere).is_subset(&BTreeSet::from(["zone-b", "zone-c"])));
    dns.stop().await;
    Ok(())
}
